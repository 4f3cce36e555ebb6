package dockerlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Frame limits. The daemon splits lines at 16 KiB, so a real frame is a
// little over that; the cap only has to stop a corrupt length prefix from
// making the decoder allocate without bound (the daemon sets no cap at all).
const (
	frameHeaderSize = 4
	// DefaultMaxFrame is the largest frame a FrameDecoder accepts by default.
	DefaultMaxFrame = 1 << 20
	// minFrameSize is the smallest frame the daemon can write: a source
	// field ("stdout" needs 8 bytes) and a time field (at least 2 bytes).
	minFrameSize = 4
)

var (
	// ErrFrameTooLarge is returned when a frame's length prefix exceeds the
	// decoder's cap.
	ErrFrameTooLarge = errors.New("frame larger than the cap")
	// ErrCorruptFrame is returned when a frame's payload is not a LogEntry.
	ErrCorruptFrame = errors.New("corrupt frame")
	// ErrTruncatedFrame is returned when the stream ends inside a frame.
	ErrTruncatedFrame = errors.New("stream ended inside a frame")
)

// Frame is one decoded LogEntry. Line aliases the decoder's buffer and is
// valid only until the next call to Decode.
type Frame struct {
	Source   string
	TimeNano int64
	Line     []byte
	Partial  bool
	// The partial metadata is flattened so that decoding allocates nothing;
	// HasPartialMetadata says whether the frame carried any.
	HasPartialMetadata bool
	PartialLast        bool
	PartialID          string
	PartialOrdinal     int32
}

// EndsLine reports whether this frame completes a line. The daemon marks every
// chunk of a split line Partial and the final one Last; a line cut by the
// container's exit also arrives with Last set.
func (f *Frame) EndsLine() bool {
	return !f.Partial || (f.HasPartialMetadata && f.PartialLast)
}

// FrameDecoder reads length-prefixed LogEntry frames from a stream, such as
// the FIFO the daemon hands a logging plugin. It owns one buffer, grown up to
// the frame cap, so the steady state allocates nothing.
//
// After an error other than io.EOF the next Decode resynchronises: it skips
// bytes until it finds a length prefix followed by a well-formed LogEntry, so
// a plugin that re-opens a FIFO in the middle of a frame loses only that frame.
type FrameDecoder struct {
	r        io.Reader
	maxFrame int
	buf      []byte
	start    int // first unconsumed byte in buf
	end      int // end of valid data in buf
	err      error
	resync   bool
	skipped  int64
}

// NewFrameDecoder returns a decoder reading from r that rejects frames larger
// than maxFrame bytes (DefaultMaxFrame when maxFrame <= 0).
func NewFrameDecoder(r io.Reader, maxFrame int) *FrameDecoder {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	return &FrameDecoder{r: r, maxFrame: maxFrame, buf: make([]byte, 32<<10)}
}

// Buffered returns how many bytes the decoder holds that it has not decoded
// yet: 0 means the next Decode will read from the stream.
func (d *FrameDecoder) Buffered() int { return d.end - d.start }

// SkippedBytes returns how many bytes resynchronisation has discarded so far.
func (d *FrameDecoder) SkippedBytes() int64 { return d.skipped }

// Decode reads the next frame into f. It returns io.EOF at a clean end of
// stream, ErrTruncatedFrame when the stream ends inside a frame, and an error
// wrapping ErrFrameTooLarge or ErrCorruptFrame for a bad frame; the caller may
// keep calling Decode after those, and the decoder resynchronises.
func (d *FrameDecoder) Decode(f *Frame) error {
	if d.resync {
		return d.decodeResync(f)
	}
	if err := d.fill(frameHeaderSize); err != nil {
		return d.endErr(err)
	}
	size := int(binary.BigEndian.Uint32(d.buf[d.start:]))
	if size > d.maxFrame {
		d.resync = true
		d.skip(1)
		return fmt.Errorf("%w: %d bytes, cap %d", ErrFrameTooLarge, size, d.maxFrame)
	}
	if err := d.fill(frameHeaderSize + size); err != nil {
		return d.endErr(err)
	}
	payload := d.buf[d.start+frameHeaderSize : d.start+frameHeaderSize+size]
	if err := unmarshalFrame(payload, f, false); err != nil {
		d.resync = true
		d.skip(1)
		return err
	}
	d.start += frameHeaderSize + size
	return nil
}

// decodeResync looks for the next offset at which a plausible frame starts.
// It is strict (known source, positive time, no unknown fields) because it
// is guessing; the normal path accepts any well-formed LogEntry. A candidate
// found complete in the buffered bytes wins; offsets whose candidate needs
// more bytes are kept until more arrive, so an idle FIFO never holds back a
// frame that is already buffered, and nothing is discarded that could still
// start a frame.
func (d *FrameDecoder) decodeResync(f *Frame) error {
	for {
		pending := -1
		for off := d.start; off+frameHeaderSize <= d.end; off++ {
			size := int(binary.BigEndian.Uint32(d.buf[off:]))
			if size < minFrameSize || size > d.maxFrame {
				continue
			}
			if off+frameHeaderSize+size > d.end {
				if pending < 0 {
					pending = off
				}
				continue
			}
			payload := d.buf[off+frameHeaderSize : off+frameHeaderSize+size]
			if unmarshalFrame(payload, f, true) != nil {
				continue
			}
			d.skip(off - d.start)
			d.start += frameHeaderSize + size
			d.resync = false
			return nil
		}
		switch {
		case pending >= 0:
			d.skip(pending - d.start)
		case d.end-d.start >= frameHeaderSize:
			d.skip(d.end - d.start - (frameHeaderSize - 1))
		}
		if err := d.fill(d.end - d.start + 1); err != nil {
			return d.endErr(err)
		}
	}
}

func (d *FrameDecoder) skip(n int) {
	d.start += n
	d.skipped += int64(n)
}

// endErr turns a short read into the right error: io.EOF only when no bytes
// of a new frame had arrived.
func (d *FrameDecoder) endErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		if d.end > d.start {
			n := d.end - d.start
			d.skipped += int64(n)
			d.start = d.end
			return fmt.Errorf("%w: %d bytes", ErrTruncatedFrame, n)
		}
		return io.EOF
	}
	return err
}

// fill makes at least n unconsumed bytes available in d.buf.
func (d *FrameDecoder) fill(n int) error {
	if d.end-d.start >= n {
		return nil
	}
	if n > len(d.buf) {
		grown := make([]byte, max(n, 2*len(d.buf)))
		d.end = copy(grown, d.buf[d.start:d.end])
		d.start = 0
		d.buf = grown
	} else if len(d.buf)-d.start < n {
		d.end = copy(d.buf, d.buf[d.start:d.end])
		d.start = 0
	}
	if d.err != nil {
		return d.err
	}
	for d.end-d.start < n {
		m, err := d.r.Read(d.buf[d.end:])
		d.end += m
		if err != nil {
			if d.end-d.start >= n {
				// Keep the error for the next call; this frame is complete.
				d.err = err
				return nil
			}
			d.err = err
			return err
		}
	}
	return nil
}

// Interned sources: the daemon only ever writes these two, and returning the
// constant keeps decoding free of allocations.
const (
	SourceStdout = "stdout"
	SourceStderr = "stderr"
)

func internSource(b []byte) (string, bool) {
	switch {
	case bytes.Equal(b, []byte(SourceStdout)):
		return SourceStdout, true
	case bytes.Equal(b, []byte(SourceStderr)):
		return SourceStderr, true
	default:
		return string(b), false
	}
}

// unmarshalFrame decodes a LogEntry payload into f without allocating in the
// common case (stdout/stderr sources, a repeated partial id). It accepts what
// the generated LogEntry.Unmarshal accepts; strict additionally requires a
// known source, a positive time and no unknown fields.
func unmarshalFrame(p []byte, f *Frame, strict bool) error {
	prevID := f.PartialID
	*f = Frame{}
	knownSource := false
	for i := 0; i < len(p); {
		key, n := uvarint(p[i:])
		if n <= 0 {
			return fmt.Errorf("%w: bad field key", ErrCorruptFrame)
		}
		i += n
		field, wire := fieldNumber(key), key&7
		if field == 0 {
			return fmt.Errorf("%w: field number %d", ErrCorruptFrame, key>>3)
		}
		switch {
		case field == 1 && wire == 2:
			b, n, err := lengthDelimited(p[i:])
			if err != nil {
				return err
			}
			f.Source, knownSource = internSource(b)
			i += n
		case field == 2 && wire == 0:
			v, n := uvarint(p[i:])
			if n <= 0 {
				return fmt.Errorf("%w: bad time_nano", ErrCorruptFrame)
			}
			f.TimeNano = int64(v)
			i += n
		case field == 3 && wire == 2:
			b, n, err := lengthDelimited(p[i:])
			if err != nil {
				return err
			}
			f.Line = b
			i += n
		case field == 4 && wire == 0:
			v, n := uvarint(p[i:])
			if n <= 0 {
				return fmt.Errorf("%w: bad partial", ErrCorruptFrame)
			}
			f.Partial = v != 0
			i += n
		case field == 5 && wire == 2:
			b, n, err := lengthDelimited(p[i:])
			if err != nil {
				return err
			}
			if err := unmarshalPartial(b, f, prevID, strict); err != nil {
				return err
			}
			i += n
		default:
			if strict {
				return fmt.Errorf("%w: unexpected field %d", ErrCorruptFrame, field)
			}
			n, err := skipFieldDepth(p[i:], wire, field, 0)
			if err != nil {
				return err
			}
			i += n
		}
	}
	if strict && (!knownSource || f.TimeNano <= 0) {
		return fmt.Errorf("%w: implausible frame", ErrCorruptFrame)
	}
	return nil
}

func unmarshalPartial(p []byte, f *Frame, prevID string, strict bool) error {
	f.HasPartialMetadata = true
	for i := 0; i < len(p); {
		key, n := uvarint(p[i:])
		if n <= 0 {
			return fmt.Errorf("%w: bad partial metadata key", ErrCorruptFrame)
		}
		i += n
		field, wire := fieldNumber(key), key&7
		if field == 0 {
			return fmt.Errorf("%w: partial metadata field number %d", ErrCorruptFrame, key>>3)
		}
		switch {
		case field == 1 && wire == 0:
			v, n := uvarint(p[i:])
			if n <= 0 {
				return fmt.Errorf("%w: bad partial last", ErrCorruptFrame)
			}
			f.PartialLast = v != 0
			i += n
		case field == 2 && wire == 2:
			b, n, err := lengthDelimited(p[i:])
			if err != nil {
				return err
			}
			// All chunks of one line share an id: reuse the previous string.
			if string(b) == prevID {
				f.PartialID = prevID
			} else {
				f.PartialID = string(b)
			}
			i += n
		case field == 3 && wire == 0:
			v, n := uvarint(p[i:])
			if n <= 0 {
				return fmt.Errorf("%w: bad partial ordinal", ErrCorruptFrame)
			}
			f.PartialOrdinal = int32(v)
			i += n
		default:
			if strict {
				return fmt.Errorf("%w: unexpected partial metadata field %d", ErrCorruptFrame, field)
			}
			n, err := skipFieldDepth(p[i:], wire, field, 0)
			if err != nil {
				return err
			}
			i += n
		}
	}
	return nil
}

// fieldNumber is a key's field number as the generated code reads it: the
// key shifted and truncated to int32; 0 when that is not positive.
func fieldNumber(key uint64) uint64 {
	f := int32(key >> 3)
	if f <= 0 {
		return 0
	}
	return uint64(f)
}

// uvarint is binary.Uvarint with the protobuf limit of 10 bytes; n <= 0 on
// error.
func uvarint(p []byte) (uint64, int) {
	var v uint64
	for i := 0; i < len(p) && i < 10; i++ {
		b := p[i]
		v |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			return v, i + 1
		}
	}
	return 0, -1
}

func lengthDelimited(p []byte) ([]byte, int, error) {
	l, n := uvarint(p)
	if n <= 0 {
		return nil, 0, fmt.Errorf("%w: bad length", ErrCorruptFrame)
	}
	if l > uint64(len(p)-n) {
		return nil, 0, fmt.Errorf("%w: field length %d past the frame", ErrCorruptFrame, l)
	}
	return p[n : n+int(l)], n + int(l), nil
}

func skipField(p []byte, wire uint64) (int, error) {
	return skipFieldDepth(p, wire, 0, 0)
}

// maxGroupDepth bounds nested groups, as protobuf decoders do.
const maxGroupDepth = 100

// skipFieldDepth skips one field's value. Groups (wire types 3 and 4, long
// deprecated but accepted by the generated code) are skipped up to their
// matching end.
func skipFieldDepth(p []byte, wire, field uint64, depth int) (int, error) {
	switch wire {
	case 0:
		_, n := uvarint(p)
		if n <= 0 {
			return 0, fmt.Errorf("%w: bad varint", ErrCorruptFrame)
		}
		return n, nil
	case 1:
		if len(p) < 8 {
			return 0, fmt.Errorf("%w: short fixed64", ErrCorruptFrame)
		}
		return 8, nil
	case 2:
		_, n, err := lengthDelimited(p)
		return n, err
	case 3:
		if depth >= maxGroupDepth {
			return 0, fmt.Errorf("%w: groups nested too deep", ErrCorruptFrame)
		}
		for i := 0; i < len(p); {
			key, n := uvarint(p[i:])
			if n <= 0 {
				return 0, fmt.Errorf("%w: bad field key in a group", ErrCorruptFrame)
			}
			i += n
			f, w := key>>3, key&7
			if w == 4 {
				// Like the generated code, any end of group closes the
				// innermost one; field numbers are not matched.
				return i, nil
			}
			m, err := skipFieldDepth(p[i:], w, f, depth+1)
			if err != nil {
				return 0, err
			}
			i += m
		}
		return 0, fmt.Errorf("%w: unterminated group", ErrCorruptFrame)
	case 5:
		if len(p) < 4 {
			return 0, fmt.Errorf("%w: short fixed32", ErrCorruptFrame)
		}
		return 4, nil
	default:
		return 0, fmt.Errorf("%w: wire type %d", ErrCorruptFrame, wire)
	}
}

// AppendFrame appends f as one length-prefixed frame to dst. It is the
// inverse of Decode and allocates only when dst must grow.
func AppendFrame(dst []byte, f *Frame) []byte {
	size := 0
	if f.Source != "" {
		size += 1 + uvarintLen(uint64(len(f.Source))) + len(f.Source)
	}
	if f.TimeNano != 0 {
		size += 1 + uvarintLen(uint64(f.TimeNano))
	}
	if len(f.Line) > 0 {
		size += 1 + uvarintLen(uint64(len(f.Line))) + len(f.Line)
	}
	if f.Partial {
		size += 2
	}
	meta := partialMetadataSize(f)
	if f.HasPartialMetadata {
		size += 1 + uvarintLen(uint64(meta)) + meta
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(size))
	if f.Source != "" {
		dst = append(dst, 1<<3|2)
		dst = binary.AppendUvarint(dst, uint64(len(f.Source)))
		dst = append(dst, f.Source...)
	}
	if f.TimeNano != 0 {
		dst = append(dst, 2<<3|0)
		dst = binary.AppendUvarint(dst, uint64(f.TimeNano))
	}
	if len(f.Line) > 0 {
		dst = append(dst, 3<<3|2)
		dst = binary.AppendUvarint(dst, uint64(len(f.Line)))
		dst = append(dst, f.Line...)
	}
	if f.Partial {
		dst = append(dst, 4<<3|0, 1)
	}
	if f.HasPartialMetadata {
		dst = append(dst, 5<<3|2)
		dst = binary.AppendUvarint(dst, uint64(meta))
		if f.PartialLast {
			dst = append(dst, 1<<3|0, 1)
		}
		if f.PartialID != "" {
			dst = append(dst, 2<<3|2)
			dst = binary.AppendUvarint(dst, uint64(len(f.PartialID)))
			dst = append(dst, f.PartialID...)
		}
		if f.PartialOrdinal != 0 {
			dst = append(dst, 3<<3|0)
			dst = binary.AppendUvarint(dst, uint64(int64(f.PartialOrdinal)))
		}
	}
	return dst
}

func partialMetadataSize(f *Frame) int {
	n := 0
	if f.PartialLast {
		n += 2
	}
	if f.PartialID != "" {
		n += 1 + uvarintLen(uint64(len(f.PartialID))) + len(f.PartialID)
	}
	if f.PartialOrdinal != 0 {
		// Negative int32s are sign-extended to 10 bytes, as protobuf does.
		n += 1 + uvarintLen(uint64(int64(f.PartialOrdinal)))
	}
	return n
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// FrameEncoder writes frames to w, reusing one buffer.
type FrameEncoder struct {
	w   io.Writer
	buf []byte
}

// NewFrameEncoder returns an encoder writing to w.
func NewFrameEncoder(w io.Writer) *FrameEncoder { return &FrameEncoder{w: w} }

// Encode writes f as one frame with a single Write call.
func (e *FrameEncoder) Encode(f *Frame) error {
	e.buf = AppendFrame(e.buf[:0], f)
	_, err := e.w.Write(e.buf)
	return err
}
