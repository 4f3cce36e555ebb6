//go:build !linux

package tail

import (
	"os"
	"path/filepath"
)

// openLogFile opens path, a file of a container's log, for reading, or
// refuses it (ErrRefused), as on Linux (see open_linux.go) but checking the
// paths with lstat before the open: a rename between the two can defeat
// the symlink checks. Docker's json-file logs are on Linux hosts; this is
// for building and testing elsewhere.
func openLogFile(path string) (*os.File, error) {
	dir := filepath.Dir(path)
	if fi, err := os.Lstat(dir); err == nil && !fi.IsDir() {
		return nil, dirRefusal(path, dir, fi.Mode())
	}
	before, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if err := checkRegular(path, before.Mode()); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil {
		err = checkRegular(path, fi.Mode())
	}
	if err == nil && !os.SameFile(before, fi) {
		err = errChanged // renamed or replaced between lstat and open: look again
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
