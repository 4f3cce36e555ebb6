package logstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"

	"github.com/logferry/logferry/shared/dockerlog"
)

// Read returns the container's frames selected by cfg, encoded as the
// daemon's ReadLogs response body expects. A container with no copy gives
// an empty stream.
//
// The stream is read on the caller's goroutine: Read starts no goroutine.
// A follower blocks in Read until the Writer appends, the last Writer
// closes (then Read returns io.EOF after the rest), ctx is cancelled
// (ctx.Err()), or Close is called from another goroutine (ErrClosed). The
// caller must Close the stream; Close waits for a Read in progress to
// return and releases the files. Read returns what is ready without waiting
// for more, so a caller that flushes after each Read sends a follower every
// line as it is written.
func (s *Store) Read(ctx context.Context, containerID string, cfg ReadConfig) (io.ReadCloser, error) {
	if err := validID(containerID); err != nil {
		return nil, err
	}
	r := &reader{s: s, cl: s.acquire(containerID), ctx: ctx, done: make(chan struct{}), since: cfg.Since, until: cfg.Until}
	if err := r.open(cfg); err != nil {
		r.release()
		return nil, fmt.Errorf("logstore: reading the copy of %s: %w", containerID, err)
	}
	return r, nil
}

// segment is one file's part of the stream, oldest first.
type segment struct {
	f      *os.File      // nil for a follow segment, whose source owns its files
	src    io.Reader     // a section of f, or follow
	follow *followSource // the last segment, when following a live Writer
	skip   int           // lines to leave out at the start (Tail)
}

type reader struct {
	s         *Store
	ctx       context.Context
	done      chan struct{} // closed by Close
	closeOnce sync.Once

	mu           sync.Mutex // held by Read and by Close's release
	cl           *containerLog
	segs         []segment
	dec          *dockerlog.FrameDecoder // of segs[0]
	frame        dockerlog.Frame
	since, until time.Time
	out          []byte // encoded frames not yet returned: out[outOff:]
	outOff       int
	err          error // the stream's end: io.EOF or why it stopped
	closed       bool
}

var _ io.ReadCloser = (*reader)(nil)

// snapFile is a file opened under cl.mu with the size that was readable then.
type snapFile struct {
	f    *os.File
	size int64
}

// open takes the snapshot the stream starts from and applies Tail.
func (r *reader) open(cfg ReadConfig) error {
	files, sess, pos, err := r.snapshot(cfg)
	if err != nil {
		return err
	}
	closeFiles := func(fs []snapFile) {
		for _, sf := range fs {
			if sf.f != nil {
				sf.f.Close()
			}
		}
	}
	follow := cfg.Follow && sess != nil
	start, skip := 0, 0
	if cfg.Tail > 0 {
		need := cfg.Tail
		for i := len(files) - 1; i >= 0; i-- {
			if files[i].f == nil {
				continue
			}
			n, err := countLines(r.ctx, files[i])
			if err != nil {
				closeFiles(files)
				return err
			}
			if n >= need {
				start, skip = i, n-need
				break
			}
			need -= n
		}
		closeFiles(files[:start])
	}
	for i, sf := range files[start:] {
		seg := segment{f: sf.f}
		if i == 0 {
			seg.skip = skip
		}
		last := start+i == len(files)-1
		switch {
		case last && follow:
			// The current file: read on past the snapshot as it grows.
			var off int64
			if cfg.Tail == 0 {
				off = pos.size
			}
			fs := newFollowSource(r, sess, pos, sf.f, off)
			seg.f, seg.src, seg.follow = nil, fs, fs
		case sf.f == nil:
			continue
		default:
			seg.src = io.NewSectionReader(sf.f, 0, sf.size)
		}
		r.segs = append(r.segs, seg)
	}
	return nil
}

// snapshot opens, under cl.mu, every file the stream may need, oldest
// first, the current file last (with a nil f if it does not exist). With
// Tail 0 only a follower needs a file: the current one.
func (r *reader) snapshot(cfg ReadConfig) (files []snapFile, sess *session, pos position, err error) {
	cl := r.cl
	cl.mu.Lock()
	defer cl.mu.Unlock()
	sess, pos = cl.sess, cl.pos
	if cfg.Tail == 0 && !(cfg.Follow && sess != nil) {
		return nil, sess, pos, nil
	}
	defer func() {
		if err != nil {
			for _, sf := range files {
				if sf.f != nil {
					sf.f.Close()
				}
			}
			files = nil
		}
	}()
	if cfg.Tail != 0 {
		idx, err := rotatedFiles(cl.dir)
		if err != nil {
			return nil, nil, pos, err
		}
		// Only the unbroken chain .1, .2, ... belongs to this copy.
		n := uint64(0)
		for _, i := range idx {
			if i == n+1 {
				n = i
			}
		}
		for ; n >= 1; n-- {
			f, err := os.Open(cl.fileName(n))
			if err != nil {
				return files, nil, pos, err
			}
			files = append(files, snapFile{f: f})
			st, err := f.Stat()
			if err != nil {
				return files, nil, pos, err
			}
			files[len(files)-1].size = st.Size()
		}
	}
	cur := snapFile{}
	f, err := os.Open(cl.fileName(0))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return files, nil, pos, err
	default:
		cur.f = f
		if sess != nil {
			// The Writer's position, not the file's size: a frame being
			// written is not readable yet.
			cur.size = pos.size
		} else {
			st, err := f.Stat()
			if err != nil {
				f.Close()
				return files, nil, pos, err
			}
			cur.size = st.Size()
		}
	}
	return append(files, cur), sess, pos, nil
}

// countLines counts the lines of a file's snapshot, as the stream will
// decode them.
func countLines(ctx context.Context, sf snapFile) (int, error) {
	dec := dockerlog.NewFrameDecoder(io.NewSectionReader(sf.f, 0, sf.size), maxFrame)
	var f dockerlog.Frame
	n := 0
	for i := 0; ; i++ {
		if i%4096 == 0 && ctx.Err() != nil {
			return 0, ctx.Err()
		}
		err := dec.Decode(&f)
		switch {
		case err == nil:
			if f.EndsLine() {
				n++
			}
		case errors.Is(err, io.EOF):
			return n, nil
		case isFrameError(err):
		default:
			return 0, err
		}
	}
}

// isFrameError reports a decoding error the decoder recovers from.
func isFrameError(err error) bool {
	return errors.Is(err, dockerlog.ErrCorruptFrame) || errors.Is(err, dockerlog.ErrFrameTooLarge) ||
		errors.Is(err, dockerlog.ErrTruncatedFrame)
}

// Read fills p with whole or partial encoded frames.
func (r *reader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, ErrClosed
	}
	if r.outOff == len(r.out) {
		if r.err != nil {
			return 0, r.err
		}
		if len(p) == 0 {
			return 0, nil
		}
		r.out, r.outOff = r.out[:0], 0
		r.fill(len(p))
		if len(r.out) == 0 {
			return 0, r.err
		}
	}
	n := copy(p, r.out[r.outOff:])
	r.outOff += n
	return n, nil
}

// fill encodes frames into r.out until it holds want bytes, the next frame
// would have to be waited for, or the stream ends (r.err is then set).
func (r *reader) fill(want int) {
	for len(r.out) < want {
		if len(r.out) > 0 && !r.ready() {
			return
		}
		if err := r.ctx.Err(); err != nil {
			r.end(err)
			return
		}
		select {
		case <-r.done:
			r.end(ErrClosed)
			return
		default:
		}
		if !r.next() {
			return
		}
		f := &r.frame
		if !r.since.IsZero() || !r.until.IsZero() {
			t := time.Unix(0, f.TimeNano)
			if !r.since.IsZero() {
				if t.Before(r.since) {
					continue
				}
				// As Docker does: times need not be monotonic, so once a
				// frame is at or after since, later ones are all sent.
				r.since = time.Time{}
			}
			if !r.until.IsZero() && t.After(r.until) {
				r.end(io.EOF)
				return
			}
		}
		r.out = dockerlog.AppendFrame(r.out, f)
	}
}

// next decodes the stream's next frame into r.frame, skipping what Tail
// leaves out and what is corrupt. It returns false at the end (r.err set).
func (r *reader) next() bool {
	for len(r.segs) > 0 {
		seg := &r.segs[0]
		if r.dec == nil {
			r.dec = dockerlog.NewFrameDecoder(seg.src, maxFrame)
		}
		err := r.dec.Decode(&r.frame)
		switch {
		case err == nil:
			if seg.skip > 0 {
				if r.frame.EndsLine() {
					seg.skip--
				}
				continue
			}
			return true
		case errors.Is(err, io.EOF):
			r.closeSegment()
		case errors.Is(err, dockerlog.ErrTruncatedFrame):
			// The plugin was killed while writing; the next Decode ends the
			// file.
			r.s.stats.tornTails.Add(1)
		case isFrameError(err):
			r.s.stats.corruptFrames.Add(1)
		default:
			r.end(err)
			return false
		}
	}
	r.end(io.EOF)
	return false
}

// closeSegment drops segs[0], counting what its decoder skipped.
func (r *reader) closeSegment() {
	if r.dec != nil {
		r.s.stats.skippedBytes.Add(uint64(r.dec.SkippedBytes()))
		r.dec = nil
	}
	seg := r.segs[0]
	if seg.f != nil {
		seg.f.Close()
	}
	if seg.follow != nil {
		seg.follow.close()
	}
	r.segs = r.segs[1:]
}

// end ends the stream with err and releases everything but the frames
// still in r.out. Called with r.mu held.
func (r *reader) end(err error) {
	if r.err == nil {
		r.err = err
	}
	r.release()
}

// release closes the files and lets the store forget the container.
func (r *reader) release() {
	for len(r.segs) > 0 {
		r.closeSegment()
	}
	if r.cl != nil {
		r.s.release(r.cl)
		r.cl = nil
	}
}

// Close ends the stream, waking a Read blocked in another goroutine.
func (r *reader) Close() error {
	r.closeOnce.Do(func() { close(r.done) })
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	r.end(ErrClosed)
	return nil
}
