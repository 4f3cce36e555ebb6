package spool

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"sync"
)

// readState is the reader's side of a Spool: the segment file it keeps
// open between Reads and how far it counted damage. mu guards it; it is
// taken before Spool.mu.
type readState struct {
	mu         sync.Mutex
	file       segmentReader
	base       int64 // the base of file's segment
	buf        []byte
	damageMark int64 // damage before this position was counted already
}

// Read returns the next records in append order, from where the previous
// Read stopped or, after Open and Rewind, from the oldest record not
// acknowledged. It returns at most maxRecords records and stops once they
// hold maxBytes (framing included; at least one record is returned if any
// is left). With nothing left to read it returns no records and no error;
// Wait blocks until there is more. Damaged records on the way are skipped
// and counted, and so is the rest of a segment that fails to read (EIO). A
// segment that cannot be opened is an error, tried again by the next Read;
// records read before it are returned first, without it. maxRecords must be
// positive. Only one goroutine may call Read and Rewind.
func (s *Spool) Read(maxRecords, maxBytes int) ([]Record, error) {
	s.rd.mu.Lock()
	defer s.rd.mu.Unlock()
	var out []Record
	size := 0
	for len(out) < maxRecords && size < maxBytes {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, ErrClosed
		}
		g := s.segmentAtCursor()
		if g == nil {
			s.mu.Unlock()
			break
		}
		base, limit, path, start := g.base, g.size, g.path, s.cursor
		s.mu.Unlock()

		f, err := s.openForRead(base, path)
		if errors.Is(err, fs.ErrNotExist) && s.gone(base) {
			continue // dropped meanwhile
		}
		if err != nil {
			return s.readResult(out, size, err)
		}
		pos, first := start, len(out) // pos: how far this segment was consumed
		rr := newRecordReader(io.NewSectionReader(f, start-base, limit-(start-base)), s.rd.buf,
			func(off, n int64, torn bool) {
				s.damaged(start+off, n, torn)
				pos = start + off + n
			})
		for len(out) < maxRecords && size < maxBytes {
			p, end, rerr := rr.next()
			if rerr == io.EOF {
				pos = base + limit
				break
			}
			if rerr != nil {
				// A segment that cannot be read (EIO) must not stop
				// replay for good: the rest of it counts as damaged.
				s.log.Error("skipping the unreadable rest of a segment", "err", pathError("spool segment", path, rerr))
				if base+limit > pos {
					s.damaged(pos, base+limit-pos, false)
				}
				pos = base + limit
				break
			}
			frame := int64(headerSize + len(p))
			var r Record
			if decodePayload(p, &r) != nil {
				s.damaged(start+end-frame, frame, false)
				pos = start + end
				continue
			}
			r.End = start + end
			pos = r.End
			out = append(out, r)
			size += int(frame)
		}
		s.rd.buf = rr.buffer()
		s.advance(out[first:], pos)
	}
	return s.readResult(out, size, nil)
}

// maxInflight bounds the ends Read remembers for counting acknowledged
// records (8 MiB); past it, a consumer that reads far ahead of its acks gets
// a lower acknowledged-records count, nothing else.
const maxInflight = 1 << 20

// advance moves the cursor to pos and notes the ends of recs, just read,
// as in flight.
func (s *Spool) advance(recs []Record, pos int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cursor = max(s.cursor, pos)
	for _, r := range recs {
		if r.End > s.droppedUntil && r.End > s.acked && len(s.inflight) < maxInflight {
			s.inflight = append(s.inflight, r.End)
		}
	}
}

// readResult counts what Read returns. Records read before an error are
// returned without it: the error comes back on the next call, which starts
// where it happened.
func (s *Spool) readResult(out []Record, size int, err error) ([]Record, error) {
	s.counts.replayed.Add(int64(len(out)))
	s.m.recordsReplayed.Add(float64(len(out)))
	s.m.bytesReplayed.Add(float64(size))
	if len(out) > 0 {
		return out, nil
	}
	return nil, err
}

// segmentAtCursor returns the segment Read continues in, moving the cursor
// over gaps, or nil when everything was read. s.mu is held.
func (s *Spool) segmentAtCursor() *segment {
	for _, g := range s.segs {
		if g.end() > s.cursor {
			s.cursor = max(s.cursor, g.base)
			return g
		}
	}
	s.cursor = max(s.cursor, s.next)
	return nil
}

// gone reports whether the segment at base was deleted.
func (s *Spool) gone(base int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.segs {
		if g.base == base {
			return false
		}
	}
	return true
}

// openForRead returns the segment's file, kept open between Reads. s.rd.mu
// is held.
func (s *Spool) openForRead(base int64, path string) (segmentReader, error) {
	if s.rd.file != nil && s.rd.base == base {
		return s.rd.file, nil
	}
	if s.rd.file != nil {
		s.rd.file.Close()
		s.rd.file = nil
	}
	f, err := s.openRd(path)
	if err != nil {
		return nil, err
	}
	s.rd.file, s.rd.base = f, base
	return f, nil
}

// damaged counts a damaged run once, however often it is read. s.rd.mu is
// held.
func (s *Spool) damaged(off, n int64, torn bool) {
	if off < s.rd.damageMark {
		return
	}
	s.rd.damageMark = off + n
	kind := DamageCorrupt
	if torn {
		kind = DamageTorn
		s.counts.torn.Add(1)
		s.counts.tornBytes.Add(n)
	} else {
		s.counts.corrupt.Add(1)
		s.counts.corruptBytes.Add(n)
	}
	s.m.recordsCorrupt.WithLabelValues(kind).Inc()
	s.m.bytesCorrupt.WithLabelValues(kind).Add(float64(n))
	s.log.Warn("skipped damaged spool data", "kind", kind, "position", off, "bytes", n)
}

// Rewind makes the next Read start again at the oldest record not
// acknowledged, for a consumer that could not deliver what it read.
func (s *Spool) Rewind() {
	s.rd.mu.Lock()
	defer s.rd.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cursor = s.acked
	s.inflight = s.inflight[:0]
}

// Wait returns nil when Read may have records to return, ctx.Err() when ctx
// ends first, or ErrClosed.
func (s *Spool) Wait(ctx context.Context) error {
	for {
		s.mu.Lock()
		closed, more := s.closed, s.cursor < s.next
		s.mu.Unlock()
		if closed {
			return ErrClosed
		}
		if more {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
		case <-s.appended:
		}
	}
}
