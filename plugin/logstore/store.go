// Package logstore owns the plugin's local copy of each container's lines,
// the one `docker logs` reads: size-bounded, rotated files of daemon frames
// per container, one Writer each, and any number of readers that can follow
// the Writer as it appends.
package logstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/logferry/logferry/shared/dockerlog"
)

var (
	// ErrInvalidContainerID is returned for an id that cannot name a
	// directory of its own.
	ErrInvalidContainerID = errors.New("invalid container id")
	// ErrWriterOpen is returned by Remove for a container with an open
	// Writer.
	ErrWriterOpen = errors.New("the container's local copy is open for writing")
	// ErrClosed is returned by a Writer or reader used after Close.
	ErrClosed = errors.New("local copy closed")
)

// On-disk layout: <dir>/<containerID>/container.log, then container.log.1
// (newest rotated) up to container.log.<max-file - 1>, as json-file names
// its files. Each file is a sequence of daemon frames.
const (
	currentName = "container.log"
	dirPerm     = 0o750
	filePerm    = 0o640
)

// maxFrame is the largest frame the store writes and reads, header
// included: Docker's local driver has the same 1 MB cap (maxMsgLen in moby
// daemon/logger/local/read.go). Longer lines are cut when written.
const maxFrame = dockerlog.DefaultMaxFrame

// Store is the root directory of every container's copy. Writers and readers
// of one process share it: it holds the per-container state through which a
// Writer wakes the readers following it.
type Store struct {
	dir   string
	stats counters

	mu   sync.Mutex
	logs map[string]*containerLog // only while a Writer or a reader holds it
}

// New returns a Store keeping its copies under dir, which it creates.
func New(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("logstore: no directory given")
	}
	if err := os.MkdirAll(dir, dirPerm); err != nil {
		return nil, fmt.Errorf("logstore: %w", err)
	}
	return &Store{dir: dir, logs: map[string]*containerLog{}}, nil
}

// position is how far a container's copy has been written: the number of
// rotations so far and the size of the current file. A reader that reached
// a position has every frame written before it.
type position struct {
	rotation uint64
	size     int64
}

// session is one Writer's lifetime; followers end with the session they
// started in, as Docker's followers end with the LogFile they read.
type session struct {
	closed chan struct{} // closed by Writer.Close
	end    position      // final position, set before closed is closed
}

// containerLog is the shared state of one container's copy.
//
// wmu serialises everything that changes the files: writes, rotations,
// opening and closing. mu guards what readers look at; a rotation renames
// files under it, so the files a reader opens under mu always match pos.
// Lock order: wmu, then mu, then Store.mu.
type containerLog struct {
	id   string
	dir  string
	refs int // Writers and readers holding it; guarded by Store.mu

	wmu     sync.Mutex
	handles int      // open Writers
	cfg     Config   // of the latest Open
	file    *os.File // current file; nil when none is open
	size    int64    // bytes in file, whole frames only
	rotated uint64   // container.log.1 .. .rotated exist
	buf     []byte   // one encoded frame, reused
	pend    []byte   // frames Buffer kept for one write(2) at Flush

	mu      sync.Mutex
	pos     position
	sess    *session      // nil when no Writer is open
	changed chan struct{} // closed and replaced when pos changes and waiting is set
	waiting bool
}

// notify wakes every follower waiting on the current changed channel. A
// channel is only replaced when someone took it, so writing with nobody
// following allocates nothing. Called with cl.mu held.
func (cl *containerLog) notify() {
	if cl.waiting {
		close(cl.changed)
		cl.changed = make(chan struct{})
		cl.waiting = false
	}
}

// waitChan returns the channel closed at the next change. Called with cl.mu
// held.
func (cl *containerLog) waitChan() <-chan struct{} {
	cl.waiting = true
	return cl.changed
}

// fileName returns the name of the file rotated n times ago (0 = current).
func (cl *containerLog) fileName(n uint64) string {
	if n == 0 {
		return filepath.Join(cl.dir, currentName)
	}
	return filepath.Join(cl.dir, currentName+"."+strconv.FormatUint(n, 10))
}

// acquire returns the container's state, creating it, and counts a holder.
func (s *Store) acquire(id string) *containerLog {
	s.mu.Lock()
	defer s.mu.Unlock()
	cl, ok := s.logs[id]
	if !ok {
		cl = &containerLog{id: id, dir: filepath.Join(s.dir, id), changed: make(chan struct{})}
		s.logs[id] = cl
	}
	cl.refs++
	return cl
}

// release drops a holder; the last one deletes the entry, so the map holds
// only containers being written or read.
func (s *Store) release(cl *containerLog) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cl.refs--
	if cl.refs == 0 {
		delete(s.logs, cl.id)
	}
}

// validID keeps an id to one path element of ordinary characters. Docker's
// are 64 hex digits.
func validID(id string) error {
	if id == "" || len(id) > 128 || id[0] == '.' {
		return fmt.Errorf("%w: %q", ErrInvalidContainerID, id)
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return fmt.Errorf("%w: %q", ErrInvalidContainerID, id)
		}
	}
	return nil
}

// Remove deletes a container's copy, for a container that was removed (the
// caller keeps it with keep-file). Readers already streaming it finish from
// the files they hold open. A container with an open Writer is refused with
// ErrWriterOpen; a container with no copy is not an error.
func (s *Store) Remove(containerID string) error {
	if err := validID(containerID); err != nil {
		return err
	}
	cl := s.acquire(containerID)
	defer s.release(cl)
	cl.wmu.Lock()
	defer cl.wmu.Unlock()
	if cl.handles > 0 {
		return fmt.Errorf("logstore: removing %s: %w", containerID, ErrWriterOpen)
	}
	// Under mu, so no reader is between listing and opening the files.
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if err := os.RemoveAll(cl.dir); err != nil {
		return fmt.Errorf("logstore: removing %s: %w", containerID, err)
	}
	return nil
}

// Prune removes the copy of every container for which keep returns false,
// for the cleanup at startup of copies whose containers are gone. Entries
// that are not a container's directory are left alone; a container with an
// open Writer is kept and reported.
func (s *Store) Prune(keep func(containerID string) bool) error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("logstore: %w", err)
	}
	var errs []error
	for _, e := range entries {
		id := e.Name()
		if !e.IsDir() || validID(id) != nil || keep(id) {
			continue
		}
		if err := s.Remove(id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Stats counts what the store had to repair or leave out. Every field only
// grows; export them as counters.
type Stats struct {
	// CorruptFrames is frames readers skipped as corrupt or too large.
	CorruptFrames uint64
	// TornTails is files readers found ending inside a frame: the plugin
	// was killed in the middle of a write.
	TornTails uint64
	// SkippedBytes is bytes readers discarded for the two reasons above.
	SkippedBytes uint64
	// RepairedBytes is torn-tail bytes Open cut off a file before
	// appending to it.
	RepairedBytes uint64
	// TruncatedLines is lines cut so their frame fits in max-size and the
	// 1 MB frame cap.
	TruncatedLines uint64
	// WriteErrors is frames a Writer failed to write (disk full, ...).
	WriteErrors uint64
	// MissedFiles is rotated files a follower could not read because it
	// fell more than max-file rotations behind.
	MissedFiles uint64
}

type counters struct {
	corruptFrames, tornTails, skippedBytes, repairedBytes atomic.Uint64
	truncatedLines, writeErrors, missedFiles              atomic.Uint64
}

// Stats returns the counters so far.
func (s *Store) Stats() Stats {
	c := &s.stats
	return Stats{
		CorruptFrames:  c.corruptFrames.Load(),
		TornTails:      c.tornTails.Load(),
		SkippedBytes:   c.skippedBytes.Load(),
		RepairedBytes:  c.repairedBytes.Load(),
		TruncatedLines: c.truncatedLines.Load(),
		WriteErrors:    c.writeErrors.Load(),
		MissedFiles:    c.missedFiles.Load(),
	}
}

// rotatedFiles returns the indexes n >= 1 of the container.log.n files in
// dir, sorted ascending. A missing directory has none.
func rotatedFiles(dir string) ([]uint64, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []uint64
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), currentName+".")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(rest, 10, 64)
		if err != nil || n == 0 || strconv.FormatUint(n, 10) != rest {
			continue
		}
		out = append(out, n)
	}
	// os.ReadDir sorts by name, which puts 10 before 2.
	slices.Sort(out)
	return out, nil
}
