package logstore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/logferry/logferry/shared/dockerlog"
)

// cleanName is written by the last Writer.Close with the current file's
// size and removed by Open: its absence means the previous writer may have
// been killed in the middle of a frame, and Open checks the file.
const cleanName = "clean"

// errFrameTooLarge is returned for a frame whose fields other than the line
// alone exceed max-size.
var errFrameTooLarge = errors.New("frame does not fit in max-size")

// Writer appends one container's frames to its copy.
//
// Each frame is written with one write(2) of its whole encoding, with no
// buffering in user space, as Docker's json-file and local drivers write
// each message: followers are woken as soon as Write returns, and a plugin
// killed at any moment leaves at most the frame being written torn, which
// the next Open cuts off and readers skip. The cost is one system call per
// line into the page cache; nothing is synced to disk.
//
// A Writer is meant for one goroutine, but Write and Close are safe to call
// concurrently. Several Writers may be open on one container, as when a
// restarted container's new stream starts while the old one is still
// draining its FIFO: they share the files, each frame lands whole, and
// followers end when the last one closes.
type Writer struct {
	s      *Store
	cl     *containerLog
	closed bool // guarded by cl.wmu
}

// Open starts or continues the copy of a container, appending to the files
// a previous Writer (or process) left. cfg applies from now on: files beyond
// the new max-file are removed.
func (s *Store) Open(containerID string, cfg Config) (*Writer, error) {
	if err := validID(containerID); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cl := s.acquire(containerID)
	cl.wmu.Lock()
	defer cl.wmu.Unlock()
	cl.cfg = cfg
	if cl.handles == 0 {
		if err := s.openFiles(cl); err != nil {
			s.release(cl)
			return nil, fmt.Errorf("logstore: opening the copy of %s: %w", containerID, err)
		}
		cl.mu.Lock()
		cl.pos.size = cl.size
		cl.sess = &session{closed: make(chan struct{})}
		cl.mu.Unlock()
	} else if err := s.trimRotated(cl); err != nil {
		s.release(cl)
		return nil, fmt.Errorf("logstore: opening the copy of %s: %w", containerID, err)
	}
	cl.handles++
	return &Writer{s: s, cl: cl}, nil
}

// openFiles opens the current file for appending, cutting off a torn tail,
// and removes rotated files beyond max-file. Called with cl.wmu held.
func (s *Store) openFiles(cl *containerLog) error {
	if err := os.MkdirAll(cl.dir, dirPerm); err != nil {
		return err
	}
	cl.mu.Lock()
	err := s.trimRotatedLocked(cl)
	cl.mu.Unlock()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(cl.dir, currentName), os.O_RDWR|os.O_CREATE|os.O_APPEND, filePerm)
	if err != nil {
		return err
	}
	size, err := s.repair(cl.dir, f)
	if err != nil {
		f.Close()
		return err
	}
	cl.file, cl.size = f, size
	return nil
}

// repair returns the length of f's whole frames, truncating f to it if the
// last one is torn. A clean marker with f's size spares reading the file.
func (s *Store) repair(dir string, f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := st.Size()
	marker := filepath.Join(dir, cleanName)
	b, err := os.ReadFile(marker)
	clean := err == nil && strings.TrimSpace(string(b)) == strconv.FormatInt(size, 10)
	// Removed before the first write: a crash from now on leaves no marker.
	if err := os.Remove(marker); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, err
	}
	if clean || size == 0 {
		return size, nil
	}
	valid, err := wholeFrames(io.NewSectionReader(f, 0, size), size)
	if err != nil {
		return 0, err
	}
	if valid < size {
		if err := f.Truncate(valid); err != nil {
			return 0, err
		}
		s.stats.repairedBytes.Add(uint64(size - valid))
	}
	return valid, nil
}

// wholeFrames returns where the torn frame at the end of r starts (size if
// there is none). Corrupt frames before it are left for readers to skip.
func wholeFrames(r io.Reader, size int64) (int64, error) {
	dec := dockerlog.NewFrameDecoder(r, maxFrame)
	var f dockerlog.Frame
	for {
		before := dec.SkippedBytes()
		err := dec.Decode(&f)
		switch {
		case err == nil, errors.Is(err, dockerlog.ErrCorruptFrame), errors.Is(err, dockerlog.ErrFrameTooLarge):
		case errors.Is(err, io.EOF):
			return size, nil
		case errors.Is(err, dockerlog.ErrTruncatedFrame):
			// The decoder counts the bytes left at the end as skipped.
			return size - (dec.SkippedBytes() - before), nil
		default:
			return 0, err
		}
	}
}

// trimRotated removes rotated files beyond max-file and finds how many are
// left. Called with cl.wmu held.
func (s *Store) trimRotated(cl *containerLog) error {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return s.trimRotatedLocked(cl)
}

func (s *Store) trimRotatedLocked(cl *containerLog) error {
	idx, err := rotatedFiles(cl.dir)
	if err != nil {
		return err
	}
	keep := uint64(cl.cfg.MaxFile - 1)
	cl.rotated = 0
	for _, n := range idx {
		switch {
		case n > keep:
			if err := os.Remove(cl.fileName(n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		case n == cl.rotated+1:
			cl.rotated = n
		}
	}
	return nil
}

// Write appends f as one frame. A line that would take the frame past
// max-size or the 1 MB frame cap is cut (on a UTF-8 character boundary) and
// counted. f is not retained.
func (w *Writer) Write(f *dockerlog.Frame) error { return w.write(f, false) }

// Buffer is Write without the system call: the frame is kept until Flush
// (or until more than flushAt bytes wait, a rotation needs them out, or the
// writer closes), so a caller that drains a FIFO writes what one read
// brought in one write(2). Followers see buffered frames only once flushed.
func (w *Writer) Buffer(f *dockerlog.Frame) error { return w.write(f, true) }

// Flush writes the frames Buffer kept.
func (w *Writer) Flush() error {
	cl := w.cl
	cl.wmu.Lock()
	defer cl.wmu.Unlock()
	if w.closed {
		return ErrClosed
	}
	return w.flushLocked()
}

// flushAt bounds the bytes Buffer keeps before it writes them itself.
const flushAt = 64 << 10

func (w *Writer) flushLocked() error {
	cl := w.cl
	if len(cl.pend) == 0 || cl.file == nil {
		return nil
	}
	err := w.writeOut(cl.pend)
	if cap(cl.pend) > 2*flushAt {
		cl.pend = nil // an idle stream keeps no big buffer
	} else {
		cl.pend = cl.pend[:0]
	}
	return err
}

// writeOut appends b to the current file with one write(2) and publishes
// the new end to followers.
func (w *Writer) writeOut(b []byte) error {
	cl := w.cl
	n, err := cl.file.Write(b)
	if err != nil {
		w.s.stats.writeErrors.Add(1)
		// Cut partly written frames off; if even that fails, account for
		// their bytes so the position stays the file's end (readers skip
		// them).
		if n > 0 && cl.file.Truncate(cl.size) != nil {
			cl.size += int64(n)
			w.publish()
		}
		return fmt.Errorf("logstore: writing the copy of %s: %w", cl.id, err)
	}
	cl.size += int64(n)
	w.publish()
	return nil
}

func (w *Writer) write(f *dockerlog.Frame, buffered bool) error {
	cl := w.cl
	cl.wmu.Lock()
	defer cl.wmu.Unlock()
	if w.closed {
		return ErrClosed
	}
	limit := min(cl.cfg.MaxSize, maxFrame)
	cl.buf = dockerlog.AppendFrame(cl.buf[:0], f)
	if int64(len(cl.buf)) > limit {
		if err := cl.fit(f, limit); err != nil {
			w.s.stats.writeErrors.Add(1)
			return err
		}
		w.s.stats.truncatedLines.Add(1)
	}
	used := cl.size + int64(len(cl.pend))
	if cl.file == nil || (used > 0 && used+int64(len(cl.buf)) > cl.cfg.MaxSize) {
		if err := w.flushLocked(); err != nil {
			return err
		}
		if err := w.s.rotate(cl); err != nil {
			w.s.stats.writeErrors.Add(1)
			return fmt.Errorf("logstore: rotating the copy of %s: %w", cl.id, err)
		}
	}
	if buffered {
		cl.pend = append(cl.pend, cl.buf...)
		if len(cl.pend) >= flushAt {
			return w.flushLocked()
		}
		return nil
	}
	if err := w.flushLocked(); err != nil {
		return err
	}
	return w.writeOut(cl.buf)
}

// publish makes the written frames visible to readers and wakes followers.
func (w *Writer) publish() {
	cl := w.cl
	cl.mu.Lock()
	cl.pos.size = cl.size
	cl.notify()
	cl.mu.Unlock()
}

// fit re-encodes f into cl.buf with its line cut so the frame takes at most
// limit bytes. A shorter line never needs a longer length prefix, so one cut
// is enough.
func (cl *containerLog) fit(f *dockerlog.Frame, limit int64) error {
	g := *f
	keep := len(g.Line) - int(int64(len(cl.buf))-limit)
	if keep < 0 {
		return fmt.Errorf("logstore: %d-byte frame: %w", len(cl.buf), errFrameTooLarge)
	}
	for keep > 0 && !utf8.RuneStart(g.Line[keep]) {
		keep--
	}
	g.Line = g.Line[:keep]
	cl.buf = dockerlog.AppendFrame(cl.buf[:0], &g)
	return nil
}

// rotate starts a new current file: the rename chain of json-file
// (container.log -> .1 -> .2 ..., the oldest past max-file overwritten), or
// with max-file 1 a removal. It also reopens the current file after an
// earlier failure left none. Called with cl.wmu held; the renames happen
// under cl.mu, so readers see either the old set of files or the new one.
func (s *Store) rotate(cl *containerLog) error {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.file != nil {
		err := cl.file.Close()
		cl.file = nil
		if err != nil {
			return err
		}
		if err := cl.shift(); err != nil {
			return err
		}
		// Followers holding the old file read it to its end, then move on.
		cl.pos = position{rotation: cl.pos.rotation + 1}
		cl.size = 0
		cl.notify()
	}
	f, err := os.OpenFile(cl.fileName(0), os.O_RDWR|os.O_CREATE|os.O_APPEND, filePerm)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	// Normally 0; after a failed shift, the file that stayed in place.
	cl.file, cl.size = f, st.Size()
	cl.pos.size = cl.size
	return nil
}

// shift renames the files one place down the chain. Called with cl.mu held.
func (cl *containerLog) shift() error {
	keep := uint64(cl.cfg.MaxFile - 1)
	if keep == 0 {
		if err := os.Remove(cl.fileName(0)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	top := min(cl.rotated+1, keep)
	for n := top; n >= 1; n-- {
		if err := os.Rename(cl.fileName(n-1), cl.fileName(n)); err != nil {
			return err
		}
	}
	cl.rotated = top
	return nil
}

// Close ends this Writer. The last one to close closes the file, marks it
// clean for the next Open, and ends the followers of the container.
func (w *Writer) Close() error {
	cl := w.cl
	cl.wmu.Lock()
	if w.closed {
		cl.wmu.Unlock()
		return nil
	}
	flushErr := w.flushLocked()
	w.closed = true
	cl.handles--
	var err error
	if cl.handles == 0 {
		if cl.file != nil {
			err = cl.file.Close()
			if err == nil {
				err = os.WriteFile(filepath.Join(cl.dir, cleanName), []byte(strconv.FormatInt(cl.size, 10)), filePerm)
			}
			cl.file = nil
		}
		cl.mu.Lock()
		cl.sess.end = cl.pos
		close(cl.sess.closed)
		cl.sess = nil
		cl.notify()
		cl.mu.Unlock()
	}
	cl.wmu.Unlock()
	w.s.release(cl)
	if err != nil {
		return fmt.Errorf("logstore: closing the copy of %s: %w", cl.id, err)
	}
	return flushErr
}
