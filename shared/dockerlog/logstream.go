package dockerlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

var (
	// ErrCorruptStream is returned (wrapped, with the reason) for logs-stream
	// bytes that are not a frame header or do not start with a timestamp.
	// The decoder skips them: the caller counts the error and calls Next
	// again.
	ErrCorruptStream = errors.New("corrupt logs stream")
	// ErrDaemonError wraps the text of an error the daemon wrote into the
	// logs stream (a systemerr frame, or in TTY form a line starting "Error
	// grabbing logs: "). The stream goes on after it.
	ErrDaemonError = errors.New("daemon reported a logs error")
)

const (
	muxHeaderSize = 8
	// dockerChunkSize is the size of every chunk but the last of a line the
	// daemon split (its copier's default buffer). The TTY form has no
	// framing, so a chunk boundary is recognised only by this size followed
	// by the next chunk's timestamp.
	dockerChunkSize = 16 << 10
	// maxTimestampLen bounds the search for the space after a timestamp;
	// the daemon's own are 30 bytes ("2006-01-02T15:04:05.000000000Z").
	maxTimestampLen = 64
	// minLogStreamFrame keeps the cap above what the daemon legitimately
	// sends: a 16 KiB chunk, its timestamp, a space and a newline.
	minLogStreamFrame = dockerChunkSize + maxTimestampLen + 2
	// daemonErrorPrefix starts the error text the daemon writes into a
	// logs stream when reading the logs fails.
	daemonErrorPrefix = "Error grabbing logs: "
)

// StreamMessage is one message of an Engine API logs stream.
type StreamMessage struct {
	// Stream is SourceStdout or SourceStderr; always SourceStdout in the
	// TTY form, which has only one stream.
	Stream string
	// TimeNano is the message's timestamp (for every chunk of a split line,
	// the daemon repeats the first chunk's).
	TimeNano int64
	// Line is the message text without its timestamp and trailing '\n'. It
	// aliases the decoder's buffer and is valid until the next call to Next.
	Line []byte
	// Partial reports a chunk of a longer line: more of it follows in the
	// next message of the same stream. Feed it to a Joiner with ends =
	// !Partial. The last message of a stream that ended mid-line is also
	// Partial.
	Partial bool
}

// LogStreamDecoder reads the body of GET /containers/{id}/logs requested with
// timestamps=true. Without a TTY the body is multiplexed: frames with an
// 8-byte header (stream byte, three zero bytes, big-endian payload size), one
// message per frame. With a TTY it is the raw messages back to back.
//
// Every message is a timestamp, a space and the text; text ending in '\n' is
// a whole line, text without is a chunk of a longer one. Decoding allocates
// nothing once the buffer has grown to the largest message.
//
// Garbage does not stop the decoder: after ErrCorruptStream or
// ErrFrameTooLarge the next Next skips to the next plausible frame header
// (multiplexed) or past the next newline (TTY).
//
// The TTY form has no framing, so two of its cases are guesses. A chunk of a
// split line is recognised by its size, exactly 16 KiB (the daemon's default
// chunk; drivers that chunk differently are not recognised and their chunks
// arrive glued to the next timestamp), followed by a timestamp. And a line
// the container left unfinished when it stopped is glued to the message
// that follows it, if any. TTY text also keeps the '\r' the terminal puts
// before each '\n'.
type LogStreamDecoder struct {
	r        io.Reader
	tty      bool
	maxFrame int
	buf      []byte
	start    int // first unconsumed byte in buf
	end      int // end of valid data in buf
	err      error
	resync   bool
	skipped  int64

	// chunkSize is dockerChunkSize; tests lower it to reach the chunk
	// logic with small inputs.
	chunkSize int

	// TTY form: a message longer than maxFrame is returned in pieces, and
	// the pieces after the first carry no timestamp of their own.
	cont     bool
	contTime int64
}

// NewLogStreamDecoder returns a decoder reading a logs stream from r, in TTY
// form when tty is set. maxFrame caps a frame's payload (in TTY form, a
// message's text; longer text is returned in Partial pieces); maxFrame <= 0
// means DefaultMaxFrame, and values under 16 KiB plus a timestamp are raised
// to that, which the daemon legitimately sends.
func NewLogStreamDecoder(r io.Reader, tty bool, maxFrame int) *LogStreamDecoder {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	maxFrame = max(maxFrame, minLogStreamFrame)
	return &LogStreamDecoder{r: r, tty: tty, maxFrame: maxFrame, chunkSize: dockerChunkSize, buf: make([]byte, 32<<10)}
}

// SkippedBytes returns how many bytes the decoder has discarded as garbage
// (bad frames, bad lines, and the bytes skipped to find the next good one).
func (d *LogStreamDecoder) SkippedBytes() int64 { return d.skipped }

// Next reads the next message into m. It returns io.EOF at a clean end of
// stream, ErrTruncatedFrame when the stream ends inside a frame header or
// payload, a read error of the underlying reader as is, and otherwise an
// error wrapping ErrCorruptStream, ErrFrameTooLarge or ErrDaemonError after
// which the caller may call Next again.
func (d *LogStreamDecoder) Next(m *StreamMessage) error {
	*m = StreamMessage{}
	if d.tty {
		return d.nextTTY(m)
	}
	return d.nextMux(m)
}

func (d *LogStreamDecoder) nextMux(m *StreamMessage) error {
	if d.resync {
		if err := d.resyncMux(); err != nil {
			return err
		}
	}
	if err := d.fill(muxHeaderSize); err != nil {
		return d.endErr(err)
	}
	h := d.buf[d.start : d.start+muxHeaderSize]
	kind, size := h[0], binary.BigEndian.Uint32(h[4:])
	if kind > 3 || h[1]|h[2]|h[3] != 0 {
		d.resync = true
		return fmt.Errorf("%w: bad frame header % x", ErrCorruptStream, h)
	}
	if size > uint32(d.maxFrame) {
		d.resync = true
		return fmt.Errorf("%w: %d bytes, cap %d", ErrFrameTooLarge, size, d.maxFrame)
	}
	n := muxHeaderSize + int(size)
	if err := d.fill(n); err != nil {
		return d.endErr(err)
	}
	payload := d.buf[d.start+muxHeaderSize : d.start+n]
	d.start += n
	switch kind {
	case 3: // systemerr
		return fmt.Errorf("%w: %s", ErrDaemonError, bytes.TrimSpace(payload))
	case 2:
		m.Stream = SourceStderr
	default: // 1 stdout; 0 stdin, which Docker's own demultiplexer also reads as stdout
		m.Stream = SourceStdout
	}
	sp := bytes.IndexByte(payload[:min(len(payload), maxTimestampLen)], ' ')
	if sp < 0 {
		d.skipped += int64(n)
		return fmt.Errorf("%w: frame without a timestamp: %q", ErrCorruptStream, excerpt(payload))
	}
	t, err := ParseTimestamp(payload[:sp])
	if err != nil {
		d.skipped += int64(n)
		return fmt.Errorf("%w: frame with a bad timestamp: %w", ErrCorruptStream, err)
	}
	m.TimeNano = t
	m.Line, m.Partial = cutNewline(payload[sp+1:])
	return nil
}

// resyncMux skips bytes up to the next offset that looks like the header of
// a stdout or stderr frame whose payload starts with a timestamp and a space.
func (d *LogStreamDecoder) resyncMux() error {
	for {
		waiting := false
		off := d.start
		for ; off+muxHeaderSize <= d.end; off++ {
			h := d.buf[off:]
			if h[0] != 1 && h[0] != 2 || h[1]|h[2]|h[3] != 0 {
				continue
			}
			size := int(binary.BigEndian.Uint32(h[4:]))
			if size < len("2006-01-02T15:04:05Z ") || size > d.maxFrame {
				continue
			}
			probe := d.buf[off+muxHeaderSize : min(d.end, off+muxHeaderSize+size)]
			match, needMore := probeTimestamp(probe, len(probe) == size || d.err != nil)
			if match {
				d.skip(off - d.start)
				d.resync = false
				return nil
			}
			if needMore {
				// Keep this candidate and read the bytes that decide it.
				waiting = true
				break
			}
		}
		// Bytes before off cannot start a frame any more.
		d.skip(off - d.start)
		if err := d.fill(d.end - d.start + 1); err != nil && !(waiting && errors.Is(err, io.EOF)) {
			return d.endErr(err)
		}
		// At the end of the stream a waiting candidate is decided on the
		// bytes there are (d.err is set now), so this loop ends.
	}
}

// probeTimestamp reports whether b starts with a timestamp and a space, or
// that more bytes are needed to tell (never when final is set).
func probeTimestamp(b []byte, final bool) (match, needMore bool) {
	const shape = "dddd-dd-ddT" // rules out most non-timestamps early
	for i := 0; i < len(shape) && i < len(b); i++ {
		if shape[i] == 'd' && !isDigit(b[i]) || shape[i] != 'd' && b[i] != shape[i] {
			return false, false
		}
	}
	sp := bytes.IndexByte(b[:min(len(b), maxTimestampLen)], ' ')
	if sp < 0 {
		return false, !final && len(b) < maxTimestampLen
	}
	_, err := ParseTimestamp(b[:sp])
	return err == nil, false
}

func (d *LogStreamDecoder) nextTTY(m *StreamMessage) error {
	if d.resync {
		if err := d.skipLine(); err != nil {
			return err
		}
	}
	m.Stream = SourceStdout

	// The timestamp, unless this continues a message cut at maxFrame.
	p0 := 0 // payload offset from d.start
	if d.cont {
		if err := d.fill(1); err != nil {
			d.cont = false
			return d.endErr(err)
		}
		m.TimeNano = d.contTime
	} else {
		for {
			window := d.buf[d.start:min(d.end, d.start+maxTimestampLen)]
			sp := bytes.IndexByte(window, ' ')
			nl := bytes.IndexByte(window, '\n')
			if nl >= 0 && (sp < 0 || nl < sp) || sp < 0 && len(window) == maxTimestampLen {
				return d.badTTYLine()
			}
			if sp >= 0 {
				t, err := ParseTimestamp(window[:sp])
				if err != nil {
					return d.badTTYLine()
				}
				m.TimeNano = t
				p0 = sp + 1
				break
			}
			if err := d.fill(len(window) + 1); err != nil {
				if d.end > d.start {
					return d.badTTYLine()
				}
				return d.endErr(err)
			}
		}
	}

	// The text: up to a newline, a daemon chunk boundary, or the cap.
	scanned := p0    // offset from d.start searched for '\n' so far
	probed := d.cont // a continuation is past any chunk boundary
	for {
		limit := p0 + d.maxFrame
		if !probed {
			limit = p0 + d.chunkSize
		}
		hi := min(d.end-d.start, limit)
		if i := bytes.IndexByte(d.buf[d.start+scanned:d.start+hi], '\n'); i >= 0 {
			end := scanned + i
			m.Line, m.Partial = d.buf[d.start+p0:d.start+end], false
			d.start += end + 1
			d.cont = false
			return nil
		}
		scanned = hi
		eof := d.err != nil
		if !probed && scanned == limit {
			match, needMore := probeTimestamp(d.buf[d.start+limit:d.end], eof)
			if !needMore {
				probed = true
				if match {
					return d.ttyPiece(m, p0, limit, false)
				}
				continue
			}
		} else if scanned == limit {
			return d.ttyPiece(m, p0, limit, true)
		}
		if err := d.fill(d.end - d.start + 1); err != nil {
			if errors.Is(err, io.EOF) {
				// The stream ended inside a line: return what there is.
				return d.ttyPiece(m, p0, d.end-d.start, false)
			}
			return err
		}
	}
}

// ttyPiece returns the text between offsets p0 and end as a partial message;
// cont says that the text after it has no timestamp of its own.
func (d *LogStreamDecoder) ttyPiece(m *StreamMessage, p0, end int, cont bool) error {
	m.Line, m.Partial = d.buf[d.start+p0:d.start+end], true
	d.start += end
	d.cont, d.contTime = cont, m.TimeNano
	return nil
}

// badTTYLine reports the TTY line at d.start, which does not start with a
// timestamp, and arranges for it to be skipped.
func (d *LogStreamDecoder) badTTYLine() error {
	// Look for the whole line to report it, within the cap.
	for scanned := 0; ; {
		buffered := d.buf[d.start:min(d.end, d.start+d.maxFrame)]
		if nl := bytes.IndexByte(buffered[scanned:], '\n'); nl >= 0 {
			nl += scanned
			line := buffered[:nl]
			if text, ok := bytes.CutPrefix(line, []byte(daemonErrorPrefix)); ok {
				d.start += nl + 1 // reported, not skipped
				return fmt.Errorf("%w: %s", ErrDaemonError, text)
			}
			d.skip(nl + 1)
			return fmt.Errorf("%w: line without a timestamp: %q", ErrCorruptStream, excerpt(line))
		}
		scanned = len(buffered)
		if len(buffered) == d.maxFrame || d.err != nil {
			d.resync = true
			return fmt.Errorf("%w: line without a timestamp: %q", ErrCorruptStream, excerpt(buffered))
		}
		if err := d.fill(d.end - d.start + 1); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
	}
}

// skipLine discards bytes through the next newline.
func (d *LogStreamDecoder) skipLine() error {
	for {
		if nl := bytes.IndexByte(d.buf[d.start:d.end], '\n'); nl >= 0 {
			d.skip(nl + 1)
			d.resync = false
			return nil
		}
		d.skip(d.end - d.start)
		if err := d.fill(1); err != nil {
			d.resync = false
			return d.endErr(err)
		}
	}
}

func (d *LogStreamDecoder) skip(n int) {
	d.start += n
	d.skipped += int64(n)
}

// endErr turns the end of the input into io.EOF when it falls between
// messages and into ErrTruncatedFrame when it falls inside one.
func (d *LogStreamDecoder) endErr(err error) error {
	if !errors.Is(err, io.EOF) {
		return err
	}
	if n := d.end - d.start; n > 0 {
		d.skip(n)
		return fmt.Errorf("%w: %d bytes", ErrTruncatedFrame, n)
	}
	return io.EOF
}

// fill makes at least n unconsumed bytes available in d.buf, growing it up
// to what the largest message needs. It returns the reader's error (io.EOF
// at the end) when they cannot be had; that error is kept for later calls.
func (d *LogStreamDecoder) fill(n int) error {
	if d.end-d.start >= n {
		return nil
	}
	if d.err != nil {
		return d.err
	}
	if n > len(d.buf) {
		grown := make([]byte, max(n, min(2*len(d.buf), d.maxBuf())))
		d.end = copy(grown, d.buf[d.start:d.end])
		d.start = 0
		d.buf = grown
	} else if len(d.buf)-d.start < n {
		d.end = copy(d.buf, d.buf[d.start:d.end])
		d.start = 0
	}
	for empty := 0; d.end-d.start < n; {
		m, err := d.r.Read(d.buf[d.end:])
		d.end += m
		if err != nil {
			d.err = err
			if d.end-d.start >= n {
				return nil
			}
			return err
		}
		if m == 0 {
			if empty++; empty == 100 {
				d.err = io.ErrNoProgress
				return d.err
			}
		}
	}
	return nil
}

// maxBuf is the most the buffer needs: a header or timestamp, the largest
// payload, and the probe for the timestamp that may follow it.
func (d *LogStreamDecoder) maxBuf() int {
	return maxTimestampLen + 1 + d.maxFrame + maxTimestampLen
}

// cutNewline strips a trailing '\n'; its absence marks a partial chunk.
func cutNewline(b []byte) (line []byte, partial bool) {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		return b[:n-1], false
	}
	return b, true
}

// excerpt keeps error messages short when the input is garbage.
func excerpt(b []byte) []byte {
	const n = 64
	if len(b) > n {
		return b[:n]
	}
	return b
}
