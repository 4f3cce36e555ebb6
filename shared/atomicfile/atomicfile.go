// Package atomicfile owns replacing a small file so that a crash or a power
// cut leaves either the old content or the new, never a mix or nothing:
// write a temporary file beside it, fsync it, rename it over the old one,
// fsync the directory.
package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
)

// TempPrefix starts the name of every temporary file Write creates, so that
// a caller can remove those a crash left behind (see RemoveTemps).
const TempPrefix = ".atomic-"

// Options change how Write replaces a file. The zero value is the safe one.
type Options struct {
	// Perm is the new file's permission bits; 0 means 0o600.
	Perm os.FileMode
	// NoSync skips both fsyncs: the rename is still atomic for readers and
	// for a killed process, but a power cut may lose the new content.
	NoSync bool
}

// Write replaces path with data atomically.
func Write(path string, data []byte, o Options) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, TempPrefix+filepath.Base(path)+"-*.tmp")
	if err != nil {
		return err
	}
	perm := o.Perm
	if perm == 0 {
		perm = 0o600
	}
	_, werr := tmp.Write(data)
	var serr error
	if !o.NoSync {
		serr = tmp.Sync()
	}
	perr := tmp.Chmod(perm)
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, perr, cerr); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if o.NoSync {
		return nil
	}
	return SyncDir(dir)
}

// SyncDir makes the directory's entries (created, renamed and removed
// files) durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// RemoveTemps removes the temporary files of interrupted Writes in dir.
func RemoveTemps(dir string) error {
	matches, err := filepath.Glob(filepath.Join(dir, TempPrefix+"*.tmp"))
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range matches {
		if err := os.Remove(m); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
