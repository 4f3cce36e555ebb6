// Package positions owns the sidecar's durable read positions: per
// container, the log file it was reading (by identity, so that it is found
// again after rotation or compression) and the offset after the last line
// Loki acknowledged, all in one file written atomically.
package positions

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/logferry/logferry/shared/atomicfile"
)

// FileName is the positions file's name inside the store's directory.
const FileName = "positions"

// legacyTempPrefix named the temporary files of Flush before it used
// package atomicfile; Open removes leftovers of a Flush that a crash
// interrupted under either name.
const legacyTempPrefix = ".positions-"

// ErrInvalid is returned by Set for an id or a position that cannot be
// stored.
var ErrInvalid = errors.New("invalid position")

// Options change how Open treats the file it finds.
type Options struct {
	// ResetCorrupt makes Open move a corrupt positions file aside, to
	// <file>.corrupt-<UTC time>, and start empty instead of failing. Every
	// container then starts over from its oldest log file (or as the
	// tailer's configuration says), so lines may be sent twice: Loki's log
	// queries hide an exact duplicate, its metric queries count it.
	ResetCorrupt bool
}

// Store holds every container's position in memory; Flush writes them all
// to one file. It is safe for concurrent use.
type Store struct {
	path      string
	recovered string

	mu      sync.Mutex
	m       map[string]Position
	version uint64 // bumped by every change
	flushed uint64 // version last written

	flushMu sync.Mutex // one Flush at a time, so that renames happen in version order
}

// Open loads dir/positions, creating dir if needed; a missing file is an
// empty store. A corrupt file is an error wrapping ErrCorrupt that names it,
// unless opts.ResetCorrupt is set.
func Open(dir string, opts Options) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("positions directory: %w", err)
	}
	s := &Store{path: filepath.Join(dir, FileName), m: map[string]Position{}}
	if err := removeTemps(dir); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("positions file %s: %w", s.path, err)
	}
	m, err := Parse(b)
	if err == nil {
		s.m = m
		return s, nil
	}
	if !opts.ResetCorrupt {
		return nil, fmt.Errorf("positions file %s: %w (move it away, or start with positions reset, to begin empty)", s.path, err)
	}
	aside := fmt.Sprintf("%s.corrupt-%s", s.path, time.Now().UTC().Format("20060102T150405.000000000Z"))
	if rerr := os.Rename(s.path, aside); rerr != nil {
		return nil, fmt.Errorf("positions file %s: %w; moving it aside: %w", s.path, err, rerr)
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return nil, fmt.Errorf("positions directory %s: %w", dir, err)
	}
	s.recovered = aside
	return s, nil
}

// removeTemps removes the temporary files of Flushes a crash interrupted:
// those of package atomicfile and those of earlier versions.
func removeTemps(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("positions directory: %w", err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), legacyTempPrefix) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("positions directory: removing an interrupted write: %w", err)
			}
		}
	}
	if err := atomicfile.RemoveTemps(dir); err != nil {
		return fmt.Errorf("positions directory: removing an interrupted write: %w", err)
	}
	return nil
}

// Path is the positions file.
func (s *Store) Path() string { return s.path }

// Recovered is where Open moved a corrupt file (Options.ResetCorrupt), or "".
func (s *Store) Recovered() string { return s.recovered }

// Get returns id's position.
func (s *Store) Get(id string) (Position, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.m[id]
	return p, ok
}

// Set records id's position in memory; Flush makes it durable. Setting the
// position already held is not a change.
func (s *Store) Set(id string, p Position) error {
	if err := validate(id, p); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.m[id]; ok && old == p {
		return nil
	}
	s.m[id] = p
	s.version++
	return nil
}

func validate(id string, p Position) error {
	switch {
	case !ValidID(id):
		return fmt.Errorf("%w: id %q (empty or longer than %d bytes)", ErrInvalid, id, maxIDLen)
	case p.Offset < 0:
		return fmt.Errorf("%w: negative offset %d", ErrInvalid, p.Offset)
	case p.File.FingerprintLen < 0 || p.File.FingerprintLen > FingerprintSize:
		return fmt.Errorf("%w: fingerprint length %d", ErrInvalid, p.File.FingerprintLen)
	case p.File.FingerprintLen == 0 && p.File.Fingerprint != [16]byte{}:
		return fmt.Errorf("%w: fingerprint of no bytes", ErrInvalid)
	}
	return nil
}

// Delete forgets id (its container is gone).
func (s *Store) Delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[id]; ok {
		delete(s.m, id)
		s.version++
	}
}

// Len returns how many containers have a position.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// IDs returns the ids with a position, in no order: the caller deletes those
// of containers that no longer exist.
func (s *Store) IDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.m))
	for id := range s.m {
		ids = append(ids, id)
	}
	return ids
}

// Flush writes every position to the file if anything changed since the
// last Flush: a temporary file in the same directory, fsync, rename over
// the file, fsync of the directory. A crash at any point leaves either the
// old or the new file whole. On error the changes stay pending.
func (s *Store) Flush() error {
	_, err := s.FlushChanged()
	return err
}

// FlushChanged is Flush, and reports whether it wrote the file (false:
// nothing changed since the last write).
func (s *Store) FlushChanged() (bool, error) {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()

	s.mu.Lock()
	if s.version == s.flushed {
		s.mu.Unlock()
		return false, nil
	}
	version := s.version
	b := Encode(s.m)
	s.mu.Unlock()

	if err := atomicfile.Write(s.path, b, atomicfile.Options{}); err != nil {
		return false, fmt.Errorf("positions file %s: %w", s.path, err)
	}
	s.mu.Lock()
	s.flushed = version
	s.mu.Unlock()
	return true, nil
}
