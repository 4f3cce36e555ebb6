package logstore

import (
	"errors"
	"io"
	"os"
)

// Following: the last segment of a reader with ReadConfig.Follow reads on
// past the snapshot it started from, as the container's Writer appends and
// rotates, until that Writer's session ends.
//
// The contract: a followSource belongs to one reader and is used only on
// the goroutine that calls the reader's Read, under reader.mu. It takes the
// Writer's position and opens the files of new rotations under
// containerLog.mu, which it never holds while it reads a file or waits. It
// waits on the containerLog's change channel, the session's end, the
// reader's context and the reader's Close (which closes reader.done before
// it takes reader.mu), nothing else. Lock order: reader.mu, then
// containerLog.mu (store.go gives the order of the locks below it).

// ready reports whether the next frame can be had without waiting for the
// Writer. It may say no when the decoder has one buffered: the frame is
// then returned by the next Read instead of this one.
func (r *reader) ready() bool {
	if len(r.segs) == 0 || r.segs[0].follow == nil {
		return true
	}
	return r.segs[0].follow.ready()
}

// followSource is the byte stream of a live Writer's files from a position
// on: the rest of the file it started in, then each file rotation created,
// growing as the Writer appends. Its Read waits for the Writer; it returns
// io.EOF once the Writer's session ended and everything it wrote was read.
// Only the reader's goroutine uses it (under reader.mu).
type followSource struct {
	r    *reader
	sess *session
	// files[0] is read from off. Every file but the last was rotated out
	// and is read to its end; the last is the file of rotation rot, read up
	// to limit. A nil file (not found) gives nothing.
	files []*os.File
	off   int64
	rot   uint64
	limit int64
	ended bool // the session is over and limit is final
}

// newFollowSource follows the Writer of sess from off in f, the current
// file at pos (nil when the Writer had none yet).
func newFollowSource(r *reader, sess *session, pos position, f *os.File, off int64) *followSource {
	return &followSource{r: r, sess: sess, files: []*os.File{f}, off: off, rot: pos.rotation, limit: pos.size}
}

// ready reports whether Read has bytes without waiting.
func (fs *followSource) ready() bool {
	return fs.ended || len(fs.files) > 1 || fs.off < fs.limit
}

func (fs *followSource) Read(p []byte) (int, error) {
	for {
		switch {
		case len(fs.files) > 1:
			if f := fs.files[0]; f != nil {
				n, err := f.ReadAt(p, fs.off)
				fs.off += int64(n)
				if n > 0 {
					return n, nil
				}
				if err != nil && !errors.Is(err, io.EOF) {
					return 0, err
				}
				f.Close()
			}
			fs.files, fs.off = fs.files[1:], 0
			continue
		case len(fs.files) == 1 && fs.off < fs.limit:
			f := fs.files[0]
			if f == nil {
				fs.off = fs.limit
				continue
			}
			n, err := f.ReadAt(p[:min(int64(len(p)), fs.limit-fs.off)], fs.off)
			fs.off += int64(n)
			if n > 0 {
				return n, nil
			}
			if err == nil || errors.Is(err, io.EOF) {
				// Shorter than the Writer wrote: cut by someone else.
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		case fs.ended:
			return 0, io.EOF
		}
		if err := fs.wait(); err != nil {
			return 0, err
		}
	}
}

// wait returns once the Writer has written past what fs knows of, rotated,
// or ended its session, or with the reason to stop.
func (fs *followSource) wait() error {
	cl := fs.r.cl
	for {
		cl.mu.Lock()
		target, live := cl.pos, true
		select {
		case <-fs.sess.closed:
			target, live = fs.sess.end, false
		default:
		}
		switch {
		case target.rotation != fs.rot:
			fs.advance(cl, target)
			cl.mu.Unlock()
			return nil
		case target.size > fs.limit:
			fs.limit = target.size
			if len(fs.files) == 1 && fs.files[0] == nil {
				// The Writer had no file when we started; it has one now.
				fs.files[0] = fs.openAge(cl, cl.pos.rotation-fs.rot)
			}
			cl.mu.Unlock()
			return nil
		case !live:
			fs.ended = true
			cl.mu.Unlock()
			return nil
		}
		ch := cl.waitChan()
		cl.mu.Unlock()
		select {
		case <-ch:
		case <-fs.sess.closed:
		case <-fs.r.ctx.Done():
			return fs.r.ctx.Err()
		case <-fs.r.done:
			return ErrClosed
		}
	}
}

// advance queues the files of the rotations since fs.rot up to target,
// which are now named by how many rotations ago they were made. Files
// rotated away already (a follower more than max-file files behind) are
// counted as missed. Called with cl.mu held.
func (fs *followSource) advance(cl *containerLog, target position) {
	for k := fs.rot + 1; k <= target.rotation; k++ {
		fs.files = append(fs.files, fs.openAge(cl, cl.pos.rotation-k))
	}
	fs.rot, fs.limit = target.rotation, target.size
}

// openAge opens the file made age rotations ago, or returns nil and counts
// it missed. Called with cl.mu held.
func (fs *followSource) openAge(cl *containerLog, age uint64) *os.File {
	f, err := os.Open(cl.fileName(age))
	if err != nil {
		fs.r.s.stats.missedFiles.Add(1)
		return nil
	}
	return f
}

func (fs *followSource) close() {
	for _, f := range fs.files {
		if f != nil {
			f.Close()
		}
	}
	fs.files = nil
}
