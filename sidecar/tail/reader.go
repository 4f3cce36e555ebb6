package tail

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
)

// lineReader reads the file being read to its end and frames its bytes
// into json-file lines, each passed to line with the file offsets it spans.
// Where a line cannot be used it resynchronises at the next newline, and
// says why through skip: a line longer than the largest buffer
// (MaxRawLine), or a saved offset that is not at a line start. It holds a
// read buffer only while it holds part of a line: most tailers are idle,
// and an idle one holds none. It knows nothing of rotation, tokens or JSON.
// It belongs to Run's goroutine.
type lineReader struct {
	size   int       // a read's size, and the buffer's to begin with
	maxRaw int       // the largest buffer
	files  *logFiles // told of a .gz that does not decompress
	line   func(raw []byte, start, end int64) error
	skip   func(reason, what string)
	// pin is called after every read that found data: reading a long
	// backlog takes a while, and rotations go on meanwhile.
	pin func() error
	// afterRead, a test hook, is called after each read with the offset
	// reached.
	afterRead func(off int64)

	buf        []byte
	start, end int // unconsumed bytes: buf[start:end]
	scan       int // buf[start:scan] holds no newline
	skipping   bool
	// expectNL: the file was opened one byte before the offset to resume
	// at, which must be a newline (see openSource).
	expectNL bool
	// quietResync skips without a word what precedes the first newline (a
	// start at the end of the live file cuts into a line being written).
	quietResync bool
}

// reset starts on another file, or on the same one from its start.
func (r *lineReader) reset(expectNL bool) {
	r.start, r.end, r.scan = 0, 0, 0
	r.skipping, r.expectNL = false, expectNL
}

// torn reports that bytes of an unterminated line are held (not being
// skipped): a file that ends here tore a line.
func (r *lineReader) torn() bool { return r.end > r.start && !r.skipping }

// held is how many bytes read are not consumed yet.
func (r *lineReader) held() int64 { return int64(r.end - r.start) }

// readAll reads src to its end, delivering every complete line. progress
// reports that bytes were read.
func (r *lineReader) readAll(ctx context.Context, src *source) (progress bool, err error) {
	defer r.idle()
	for {
		n, room, rerr := r.fill(src.r)
		if n > 0 {
			progress = true
			src.eof = false
			src.off += int64(n)
			if err := r.lines(src.off); err != nil {
				return progress, err
			}
			// A read that filled the buffer reads on into a backlog:
			// look for rotations meanwhile. A shorter one reached the
			// end, and the caller looks before its next read.
			if n == room {
				if err := r.pin(); err != nil {
					return progress, err
				}
			}
		}
		if r.afterRead != nil {
			r.afterRead(src.off)
		}
		switch {
		case rerr == io.EOF || n == 0 && rerr == nil:
			src.eof = true
			return progress, nil
		case rerr == nil && n < room && src.zr == nil:
			// A regular file (nothing else is opened) gave less than
			// asked: that was its end, and another read now would find
			// nothing (one system call saved per read on the grid).
			src.eof = true
			return progress, nil
		case rerr != nil && src.zr != nil:
			r.files.brokenGzip(src, rerr)
			src.r = bytes.NewReader(nil)
			src.eof = true
			return progress, nil
		case rerr != nil:
			return progress, fmt.Errorf("reading %s: %w", src.path, rerr)
		}
		if err := ctx.Err(); err != nil {
			return progress, err
		}
	}
}

// fill reads once from src into the buffer; room is what it asked for.
func (r *lineReader) fill(src io.Reader) (n, room int, err error) {
	if r.buf == nil {
		r.buf = getBuffer(min(followRead, r.size))
	}
	if r.end == len(r.buf) {
		r.makeRoom()
	}
	room = len(r.buf) - r.end
	n, err = src.Read(r.buf[r.end:])
	r.end += n
	return n, room, err
}

// makeRoom frees space at the end of a full buffer.
func (r *lineReader) makeRoom() {
	if len(r.buf) < r.size {
		// The first read's small buffer filled: a backlog, or a long
		// line. Read on in reads of the full size.
		big := getBuffer(r.size)
		n := copy(big, r.buf[r.start:r.end])
		putBuffer(r.buf)
		r.buf = big
		r.scan -= r.start
		r.start, r.end = 0, n
		return
	}
	if r.start > 0 {
		n := copy(r.buf, r.buf[r.start:r.end])
		r.scan -= r.start
		r.start, r.end = 0, n
		return
	}
	if len(r.buf) < r.maxRaw {
		grown := make([]byte, min(2*len(r.buf), r.maxRaw))
		copy(grown, r.buf[:r.end])
		putBuffer(r.buf)
		r.buf = grown
		return
	}
	// One line fills the largest buffer: drop it up to its newline.
	if !r.skipping {
		r.skip(reasonTooLong, "a line longer than the maximum")
	}
	r.skipping = true
	r.start, r.end, r.scan = 0, 0, 0
}

// lines passes the complete lines in the buffer to line; off is the file
// offset just after the buffer's last byte.
func (r *lineReader) lines(off int64) error {
	if r.expectNL {
		if r.end == r.start {
			return nil
		}
		r.expectNL = false
		if r.buf[r.start] == '\n' {
			r.start++
			r.scan = r.start
		} else {
			r.skipping = true
			if !r.quietResync {
				r.skip(reasonBadPosition, "a saved position that is not at a line start")
			}
		}
	}
	r.quietResync = false
	for {
		i := bytes.IndexByte(r.buf[r.scan:r.end], '\n')
		if i < 0 {
			r.scan = r.end
			return nil
		}
		nl := r.scan + i
		raw := r.buf[r.start : nl+1]
		lineEnd := off - int64(r.end-nl-1)
		lineStart := lineEnd - int64(len(raw))
		r.start, r.scan = nl+1, nl+1
		if r.skipping {
			r.skipping = false
			continue
		}
		if err := r.line(raw, lineStart, lineEnd); err != nil {
			return err
		}
	}
}

// idle gives the buffer back when it holds nothing that is still needed.
func (r *lineReader) idle() {
	if r.start == r.end && !r.skipping && !r.expectNL {
		r.release()
	}
}

// release gives the buffer back, with what it holds.
func (r *lineReader) release() {
	if r.buf != nil {
		putBuffer(r.buf)
		r.buf = nil
		r.start, r.end, r.scan = 0, 0, 0
	}
}

// followRead is the size of a readAll's first read. A tailer following
// a file at a steady rate finds a few KiB at each look (25 containers at
// 100 lines/s: about 2 KiB per 100 ms), and tailers look at the same
// instants, so each of them holds its buffer at the same time: with a
// buffer of the full read size each, the read buffers were 7.2-8.5 MB of
// the sidecar's 17.5-21 MB live heap in a 30-minute soak (run l,
// 2026-12-07), and grew to 11.7 MB in a 15-minute one with an outage
// every 3 minutes. A read that fills it moves on to the full size
// (makeRoom), so a backlog is still read in reads of ReadBuffer bytes.
const followRead = 32 << 10

// Read buffers of the default sizes are pooled: most tailers are idle most
// of the time, and an idle tailer with no partial line holds none.
var (
	bufPool    = sync.Pool{New: func() any { b := make([]byte, DefaultReadBuffer); return &b }}
	followPool = sync.Pool{New: func() any { b := make([]byte, followRead); return &b }}
)

func getBuffer(size int) []byte {
	switch size {
	case DefaultReadBuffer:
		return *bufPool.Get().(*[]byte)
	case followRead:
		return *followPool.Get().(*[]byte)
	}
	return make([]byte, size)
}

// putBuffer gives a buffer of a pooled size back to its pool.
func putBuffer(b []byte) {
	switch len(b) {
	case DefaultReadBuffer:
		bufPool.Put(&b)
	case followRead:
		followPool.Put(&b)
	}
}
