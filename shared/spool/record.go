package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"

	"github.com/logferry/logferry/shared/loki"
)

// Record is one spooled entry: everything needed to push it to Loki again
// after a restart. The in-memory acknowledgement of a loki.Entry is not
// kept; the spool's own Ack takes its place.
type Record struct {
	Stream   string // Loki stream selector
	TimeNano int64
	Line     string
	Metadata []loki.LabelPairAdapter // structured metadata

	// End is the position right after this record, set by Read: Ack(End)
	// acknowledges this record and every one before it. Append ignores it.
	End int64
}

// RecordOf returns the Record that spools e.
func RecordOf(e loki.Entry) Record {
	return Record{Stream: e.Stream, TimeNano: e.TimeNano, Line: e.Line, Metadata: e.AllMetadata(nil)}
}

// Entry returns r as a loki.Entry with Offset set to r.End and no Acker, for
// the caller to set one.
func (r Record) Entry() loki.Entry {
	return loki.Entry{Stream: r.Stream, TimeNano: r.TimeNano, Line: r.Line, Metadata: r.Metadata, Offset: r.End}
}

const (
	headerSize     = 16
	payloadVersion = 1
	// MaxRecordBytes bounds one record's payload. Readers reject longer
	// lengths as corrupt, so it is part of the format; Append refuses
	// larger records with ErrTooLarge. Loki's own default line limit is
	// 256 KB.
	MaxRecordBytes = 16 << 20
)

var (
	magic      = [4]byte{0xfe, 'L', 'F', 0xff}
	castagnoli = crc32.MakeTable(crc32.Castagnoli)

	errPayload = errors.New("malformed record payload")
)

// payloadSize is the encoded size of r's payload.
func payloadSize(r *Record) int {
	n := 1 + varintLen(r.TimeNano) + uvarintLen(len(r.Stream)) + len(r.Stream) +
		uvarintLen(len(r.Line)) + len(r.Line) + uvarintLen(len(r.Metadata))
	for _, m := range r.Metadata {
		n += uvarintLen(len(m.Name)) + len(m.Name) + uvarintLen(len(m.Value)) + len(m.Value)
	}
	return n
}

func uvarintLen(n int) int { return uvarintLenU(uint64(n)) }

// varintLen is the length of binary.AppendVarint's zig-zag encoding of v.
func varintLen(v int64) int { return uvarintLenU(uint64(v<<1) ^ uint64(v>>63)) }

func uvarintLenU(u uint64) int {
	l := 1
	for ; u >= 0x80; u >>= 7 {
		l++
	}
	return l
}

// appendFrame appends r's frame to b. The caller checks the payload size
// against MaxRecordBytes first.
func appendFrame(b []byte, r *Record) []byte {
	start := len(b)
	b = append(b, make([]byte, headerSize)...)
	b = append(b, payloadVersion)
	b = binary.AppendVarint(b, r.TimeNano)
	b = appendString(b, r.Stream)
	b = appendString(b, r.Line)
	b = binary.AppendUvarint(b, uint64(len(r.Metadata)))
	for _, m := range r.Metadata {
		b = appendString(b, m.Name)
		b = appendString(b, m.Value)
	}
	h := b[start : start+headerSize]
	payload := b[start+headerSize:]
	copy(h[0:4], magic[:])
	binary.LittleEndian.PutUint32(h[4:8], uint32(len(payload)))
	binary.LittleEndian.PutUint32(h[8:12], crc32.Checksum(payload, castagnoli))
	binary.LittleEndian.PutUint32(h[12:16], crc32.Checksum(h[0:12], castagnoli))
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decodePayload parses a version 1 payload. Strings are copied out of p.
func decodePayload(p []byte, r *Record) error {
	if len(p) == 0 || p[0] != payloadVersion {
		return errPayload
	}
	p = p[1:]
	t, n := binary.Varint(p)
	if n <= 0 {
		return errPayload
	}
	p = p[n:]
	var stream, line []byte
	var ok bool
	if stream, p, ok = cutBytes(p); !ok {
		return errPayload
	}
	if line, p, ok = cutBytes(p); !ok {
		return errPayload
	}
	count, n := binary.Uvarint(p)
	// Every pair takes at least two bytes: no allocation beyond the input.
	if n <= 0 || count > uint64(len(p)-n)/2 {
		return errPayload
	}
	p = p[n:]
	var meta []loki.LabelPairAdapter
	if count > 0 {
		meta = make([]loki.LabelPairAdapter, count)
		for i := range meta {
			var name, value []byte
			if name, p, ok = cutBytes(p); !ok {
				return errPayload
			}
			if value, p, ok = cutBytes(p); !ok {
				return errPayload
			}
			meta[i] = loki.LabelPairAdapter{Name: string(name), Value: string(value)}
		}
	}
	if len(p) != 0 {
		return errPayload
	}
	*r = Record{Stream: string(stream), TimeNano: t, Line: string(line), Metadata: meta}
	return nil
}

func cutBytes(p []byte) (field, rest []byte, ok bool) {
	l, n := binary.Uvarint(p)
	if n <= 0 || l > uint64(len(p)-n) {
		return nil, nil, false
	}
	p = p[n:]
	return p[:l], p[l:], true
}

// recordReader finds the intact frames in a byte stream, skipping damage.
// It reads ahead, so it is made for one stretch of a segment and then
// dropped; its offsets are relative to where that stretch starts.
type recordReader struct {
	r    io.Reader
	buf  []byte
	pos  int   // buf[pos:end] is read and not consumed
	end  int   //
	off  int64 // stream offset of buf[pos]
	eof  bool
	err  error // a read error other than EOF, returned once the buffer is used up
	dmgs int64 // start of the damaged run in progress, or -1

	// damaged is told about every damaged run once it is passed: its
	// offset, its length, and whether it ran to the end of the stream
	// (torn). Each run counts as one record.
	damaged func(off, n int64, torn bool)
}

const readChunk = 64 << 10

func newRecordReader(r io.Reader, buf []byte, damaged func(off, n int64, torn bool)) *recordReader {
	if cap(buf) < readChunk {
		buf = make([]byte, readChunk)
	}
	return &recordReader{r: r, buf: buf[:cap(buf)], dmgs: -1, damaged: damaged}
}

// buffer returns the reader's buffer, to be handed to the next reader.
func (rr *recordReader) buffer() []byte { return rr.buf }

// fill makes at least n bytes available unless the stream ends first; it
// reports whether they are.
func (rr *recordReader) fill(n int) bool {
	for rr.end-rr.pos < n {
		if rr.eof || rr.err != nil {
			return false
		}
		if rr.pos+n > len(rr.buf) {
			if n > len(rr.buf) {
				nb := make([]byte, max(n, 2*len(rr.buf)))
				rr.end = copy(nb, rr.buf[rr.pos:rr.end])
				rr.buf = nb
			} else {
				rr.end = copy(rr.buf, rr.buf[rr.pos:rr.end])
			}
			rr.pos = 0
		}
		m, err := rr.r.Read(rr.buf[rr.end:])
		rr.end += m
		if err == io.EOF {
			rr.eof = true
		} else if err != nil {
			rr.err = err
		}
	}
	return true
}

func (rr *recordReader) skip(n int) {
	if rr.dmgs < 0 {
		rr.dmgs = rr.off
	}
	rr.pos += n
	rr.off += int64(n)
}

// endDamage reports the damaged run in progress, if any.
func (rr *recordReader) endDamage(torn bool) {
	if rr.dmgs >= 0 {
		if rr.damaged != nil {
			rr.damaged(rr.dmgs, rr.off-rr.dmgs, torn)
		}
		rr.dmgs = -1
	}
}

// next returns the payload of the next intact frame and the offset right
// after it. The payload is valid until the next call. At the end it
// returns io.EOF, after reporting damage that ran to the end as torn.
func (rr *recordReader) next() (payload []byte, end int64, err error) {
	for {
		if !rr.fill(headerSize) {
			if rr.err != nil {
				return nil, 0, rr.err
			}
			if rem := rr.end - rr.pos; rem > 0 {
				rr.skip(rem)
			}
			rr.endDamage(true)
			return nil, 0, io.EOF
		}
		h := rr.buf[rr.pos : rr.pos+headerSize]
		if !bytes.Equal(h[0:4], magic[:]) {
			// Skip to the next magic; keep the last 3 bytes, which may
			// be the start of one.
			i := bytes.Index(rr.buf[rr.pos+1:rr.end], magic[:])
			if i < 0 {
				rr.skip(rr.end - rr.pos - (len(magic) - 1))
			} else {
				rr.skip(1 + i)
			}
			continue
		}
		n := binary.LittleEndian.Uint32(h[4:8])
		if binary.LittleEndian.Uint32(h[12:16]) != crc32.Checksum(h[0:12], castagnoli) || n > MaxRecordBytes {
			rr.skip(1)
			continue
		}
		size := headerSize + int(n)
		if !rr.fill(size) {
			if rr.err != nil {
				return nil, 0, rr.err
			}
			// A valid header whose payload the stream does not hold:
			// the write was cut short. Scan on all the same, so that
			// the run is torn only if nothing intact follows.
			rr.skip(1)
			continue
		}
		h = rr.buf[rr.pos : rr.pos+headerSize]
		p := rr.buf[rr.pos+headerSize : rr.pos+size]
		if binary.LittleEndian.Uint32(h[8:12]) != crc32.Checksum(p, castagnoli) {
			// The header is intact, so the frame's length is known: the
			// damage is this one record, and anything before it.
			rr.endDamage(false)
			rr.skip(size)
			rr.endDamage(false)
			continue
		}
		rr.endDamage(false)
		rr.pos += size
		rr.off += int64(size)
		return p, rr.off, nil
	}
}
