package spool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logferry/logferry/shared/loki"
)

// Errors.
var (
	// ErrFull is returned by Append under the Refuse policy when the
	// records do not fit in MaxBytes.
	ErrFull = errors.New("spool full")
	// ErrTooLarge is returned by Append for a record over MaxRecordBytes,
	// or records over MaxBytes in all.
	ErrTooLarge = errors.New("too large for the spool")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("spool closed")
	// ErrLocked is returned by Open when another Spool, in this process or
	// another, has the directory open.
	ErrLocked = errors.New("spool directory in use")
)

var _ loki.Overflow = (*Spool)(nil)

// Spool is an append-only queue of Records on disk, in one directory. Many
// goroutines may Append; one consumer reads (Read, Rewind, Wait) and
// acknowledges (Ack), possibly from another goroutine than the one reading.
// Appending never waits on the network, and on the reader (one Read's disk
// reads) only after a failed write, to reclaim acknowledged space.
type Spool struct {
	cfg     Config
	log     *slog.Logger
	metrics *Metrics
	m       *spoolMetrics
	lock    *os.File
	create  func(path string) (segmentFile, error)
	openRd  func(path string) (segmentReader, error)

	mu           sync.Mutex
	closed       bool
	segs         []*segment  // by base; while file is set, the last one is being written
	file         segmentFile // the active segment; nil until an Append needs one
	dirty        bool        // file has writes not yet synced
	diskBytes    int64       // sum of segs' sizes
	next         int64       // position after everything written: where the next segment starts
	acked        int64       // acknowledged position, as in the ack file
	cursor       int64       // where Read continues
	inflight     []int64     // ends of records Read returned and Ack did not yet cover, ascending
	droppedUntil int64       // drop-oldest deleted everything before this position
	writeFailing bool        // the last write failed; for logging when writes work again

	ackMu sync.Mutex // one Ack writes the ack file at a time, in position order

	readMu     sync.Mutex // the reader's state
	readFile   segmentReader
	readBase   int64
	readBuf    []byte
	damageMark int64 // damage before this position was counted already

	counts struct {
		appended, replayed, acked, dropped, refused atomic.Int64
		corrupt, corruptBytes, torn, tornBytes      atomic.Int64
	}

	appended chan struct{} // cap 1: an Append happened, for Wait
	done     chan struct{} // closed by Close
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// Open opens (creating if needed) the spool in cfg.Dir, takes its lock,
// deletes segments the ack file says were acknowledged, and positions the
// reader after the last acknowledged record. A corrupt ack file is logged and
// the whole spool replays: Loki drops the exact duplicates. metrics may be
// nil (not registered); log may be nil.
func Open(cfg Config, metrics *Metrics, log *slog.Logger) (*Spool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool directory: %w", err)
	}
	lock, err := lockDir(filepath.Join(cfg.Dir, lockFileName))
	if err != nil {
		return nil, err
	}
	s := &Spool{
		cfg:      cfg,
		log:      log.With("dir", cfg.Dir),
		metrics:  metrics,
		m:        metrics.forDir(cfg.Dir),
		lock:     lock,
		create:   createSegment,
		openRd:   openSegment,
		appended: make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	if err := s.recover(); err != nil {
		lock.Close()
		metrics.release(cfg.Dir)
		return nil, err
	}
	if cfg.Fsync == FsyncInterval {
		ctx, cancel := context.WithCancel(context.Background())
		s.cancel = cancel
		s.wg.Add(1)
		go s.syncLoop(ctx)
	}
	return s, nil
}

// recover loads the directory's state.
func (s *Spool) recover() error {
	dir := s.cfg.Dir
	acked, err := readAck(dir)
	if errors.Is(err, errCorruptAck) {
		s.log.Warn("the ack file is corrupt; replaying the whole spool, Loki drops exact duplicates", "err", err)
		acked = 0
	} else if err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(dir, ackTempName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("spool: removing an interrupted ack write: %w", err)
	}
	segs, err := listSegments(dir)
	if err != nil {
		return err
	}
	kept := segs[:0]
	removed := false
	for _, g := range segs {
		if g.end() <= acked || g.size == 0 {
			if err := os.Remove(g.path); err != nil {
				return fmt.Errorf("spool: removing an acknowledged segment: %w", err)
			}
			removed = true
			continue
		}
		kept = append(kept, g)
		s.diskBytes += g.size
	}
	if removed && s.cfg.Fsync != FsyncNever {
		if err := syncDir(dir); err != nil {
			s.syncFailed(err)
		}
	}
	s.segs = kept
	s.acked, s.cursor, s.damageMark, s.next = acked, acked, acked, acked
	if len(kept) > 0 {
		s.next = max(acked, kept[len(kept)-1].end())
	}
	s.updateGauges()
	s.log.Info("spool opened", "segments", len(kept), "bytes", s.diskBytes, "acked", acked,
		"unacked_bytes", s.unackedBytes())
	return nil
}

// Dir is the spool's directory.
func (s *Spool) Dir() string { return s.cfg.Dir }

var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// Append writes recs to the spool as one unit: all of them or, with an
// error, none. It returns ErrFull (Refuse policy, spool at MaxBytes),
// ErrTooLarge, ErrClosed, or the write error (for example ENOSPC; the
// partial write is undone, and later Appends try again). Under FsyncAlways
// the records are on stable storage when it returns nil. Records refused are
// counted; the caller still owns them.
func (s *Spool) Append(recs ...Record) error {
	if len(recs) == 0 {
		return nil
	}
	total := 0
	for i := range recs {
		n := payloadSize(&recs[i])
		if n > MaxRecordBytes {
			s.refused(len(recs), ReasonTooLarge)
			return fmt.Errorf("spool %s: a record of %d bytes is over %d: %w", s.cfg.Dir, n, MaxRecordBytes, ErrTooLarge)
		}
		total += headerSize + n
	}
	if int64(total) > s.cfg.MaxBytes {
		s.refused(len(recs), ReasonTooLarge)
		return fmt.Errorf("spool %s: %d bytes of records are over spool-max-size %d: %w", s.cfg.Dir, total, s.cfg.MaxBytes, ErrTooLarge)
	}
	bp := framePool.Get().(*[]byte)
	buf := slices.Grow((*bp)[:0], total)
	for i := range recs {
		buf = appendFrame(buf, &recs[i])
	}
	defer func() {
		if cap(buf) <= 1<<20 {
			*bp = buf[:0]
			framePool.Put(bp)
		}
	}()

	s.mu.Lock()
	f, failed, err := s.write(buf, len(recs))
	if failed && len(s.segs) > 0 && s.segs[0].end() <= s.acked {
		// The write failed (ENOSPC: the filesystem is full) while wholly
		// acknowledged segments, the active one included, still take
		// space: delete them and try once more. Without that, a
		// filesystem an outage filled stays full of acknowledged data and
		// every later Append fails. The reader's open file of a deleted
		// segment would keep its space, so the reader is closed first
		// (readMu before mu).
		s.mu.Unlock()
		s.readMu.Lock()
		s.mu.Lock()
		if !s.closed {
			if s.readFile != nil {
				s.readFile.Close()
				s.readFile = nil
			}
			s.reclaimAcked()
		}
		s.readMu.Unlock()
		f, failed, err = s.write(buf, len(recs))
	}
	if failed {
		s.writeFailed(len(recs), err)
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	select {
	case s.appended <- struct{}{}:
	default:
	}
	if s.cfg.Fsync == FsyncAlways {
		// Outside the lock, so that concurrent Appends share fsyncs. If
		// the file was closed meanwhile, whoever closed it synced it.
		if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
			s.syncFailed(err)
			return fmt.Errorf("spool %s: sync: %w", s.cfg.Dir, err)
		}
	}
	return nil
}

// write appends buf, which holds records frames, to the active segment,
// making room or starting a segment first as needed. failed says err is a
// write error, not counted yet. s.mu is held.
func (s *Spool) write(buf []byte, records int) (_ segmentFile, failed bool, _ error) {
	if s.closed {
		s.refused(records, ReasonClosed)
		return nil, false, ErrClosed
	}
	n := int64(len(buf))
	if s.diskBytes+n > s.cfg.MaxBytes {
		s.reclaimAcked()
	}
	if s.diskBytes+n > s.cfg.MaxBytes {
		if s.cfg.Full == Refuse {
			s.refused(records, ReasonFull)
			return nil, false, fmt.Errorf("spool %s: %d of %d bytes in use: %w", s.cfg.Dir, s.diskBytes, s.cfg.MaxBytes, ErrFull)
		}
		for s.diskBytes+n > s.cfg.MaxBytes && len(s.segs) > 0 {
			s.dropOldest()
		}
	}
	if s.file != nil {
		if g := s.segs[len(s.segs)-1]; g.size > 0 && g.size+n > s.cfg.SegmentBytes {
			s.closeActive(true)
		}
	}
	if s.file == nil {
		if err := s.startSegment(); err != nil {
			return nil, true, err
		}
	}
	g := s.segs[len(s.segs)-1]
	if _, err := s.file.Write(buf); err != nil {
		err = pathError("spool segment", g.path, err)
		if terr := s.file.Truncate(g.size); terr != nil {
			// The segment may end in part of a frame: write no more to
			// it, and start the next segment past anything this write
			// may have left, so positions stay unique.
			s.log.Error("cannot undo a failed write; closing the segment", "segment", g.path, "err", terr)
			s.closeActive(false)
			s.next = g.end() + n
		}
		return nil, true, err
	}
	g.size += n
	g.records += int64(records)
	s.diskBytes += n
	s.next += n
	s.dirty = true
	if s.writeFailing {
		s.writeFailing = false
		s.log.Info("spool writes work again", "segment", g.path)
	}
	s.counts.appended.Add(int64(records))
	s.m.recordsAppended.Add(float64(records))
	s.m.bytesAppended.Add(float64(n))
	s.updateGauges()
	return s.file, false, nil
}

func (s *Spool) writeFailed(records int, err error) {
	s.refused(records, ReasonWriteError)
	if !s.writeFailing {
		s.writeFailing = true
		s.log.Error("spool write failed; refusing records until writes work again", "err", err)
	}
}

func (s *Spool) refused(records int, reason string) {
	s.counts.refused.Add(int64(records))
	s.m.recordsRefused.WithLabelValues(reason).Add(float64(records))
}

// startSegment creates the active segment at s.next. s.mu is held.
func (s *Spool) startSegment() error {
	path := filepath.Join(s.cfg.Dir, segmentName(s.next))
	f, err := s.create(path)
	if err != nil {
		return err
	}
	if s.cfg.Fsync != FsyncNever {
		if err := syncDir(s.cfg.Dir); err != nil {
			s.syncFailed(err)
		}
	}
	s.segs = append(s.segs, &segment{base: s.next, path: path})
	s.file = f
	s.dirty = false
	s.updateGauges()
	return nil
}

// closeActive closes the active segment, syncing it first if asked and the
// policy wants it. s.mu is held.
func (s *Spool) closeActive(sync bool) {
	path := s.segs[len(s.segs)-1].path
	if sync && s.dirty && s.cfg.Fsync != FsyncNever {
		if err := s.file.Sync(); err != nil {
			s.syncFailed(pathError("spool segment", path, err))
		}
	}
	if err := s.file.Close(); err != nil {
		s.log.Warn("closing a segment", "segment", path, "err", err)
	}
	s.file, s.dirty = nil, false
}

// reclaimAcked deletes the segments wholly acknowledged, the active one
// included, which Ack leaves to be written on. s.mu is held.
func (s *Spool) reclaimAcked() {
	for len(s.segs) > 0 && s.segs[0].end() <= s.acked {
		g := s.segs[0]
		if len(s.segs) == 1 && s.file != nil {
			s.closeActive(false)
		}
		if err := os.Remove(g.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Error("cannot delete an acknowledged segment", "segment", g.path, "err", err)
		}
		s.segs[0] = nil
		s.segs = s.segs[1:]
		s.diskBytes -= g.size
	}
	s.updateGauges()
}

// dropOldest deletes the oldest segment and counts its unacknowledged
// records as dropped. s.mu is held.
func (s *Spool) dropOldest() {
	g := s.segs[0]
	if len(s.segs) == 1 && s.file != nil {
		s.closeActive(false)
	}
	lost := s.unackedRecords(g)
	if err := os.Remove(g.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Error("spool full: cannot delete the oldest segment", "segment", g.path, "err", err)
	}
	s.segs[0] = nil
	s.segs = s.segs[1:]
	s.diskBytes -= g.size
	s.droppedUntil = g.end()
	s.cursor = max(s.cursor, g.end())
	i, _ := slices.BinarySearch(s.inflight, g.end()+1)
	s.inflight = s.inflight[i:]
	s.counts.dropped.Add(lost)
	s.m.recordsDropped.WithLabelValues(ReasonSpoolFull).Add(float64(lost))
	s.log.Warn("spool full: dropped the oldest segment", "segment", g.path, "records", lost, "bytes", g.size)
	s.updateGauges()
}

// unackedRecords counts g's records after the acknowledged position,
// reading the segment when the count is not known.
func (s *Spool) unackedRecords(g *segment) int64 {
	from := max(s.acked, g.base)
	if from >= g.end() {
		return 0
	}
	if from == g.base && g.records >= 0 {
		return g.records
	}
	f, err := os.Open(g.path)
	if err != nil {
		s.log.Error("cannot count the records of a dropped segment", "err", err)
		return 0
	}
	defer f.Close()
	rr := newRecordReader(io.NewSectionReader(f, from-g.base, g.end()-from), nil, nil)
	var n int64
	for {
		if _, _, err := rr.next(); err != nil {
			return n
		}
		n++
	}
}

// Overflow appends entries, without their acknowledgements: it implements
// loki.Overflow, so that the dispatcher resolves them as kept. It waits for
// the disk, never for the network.
func (s *Spool) Overflow(entries []loki.Entry, reason string) error {
	recs := make([]Record, len(entries))
	for i := range entries {
		recs[i] = RecordOf(entries[i])
	}
	if err := s.Append(recs...); err != nil {
		return fmt.Errorf("spooling %d entries (%s): %w", len(entries), reason, err)
	}
	return nil
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
	s.readMu.Lock()
	defer s.readMu.Unlock()
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
		rr := newRecordReader(io.NewSectionReader(f, start-base, limit-(start-base)), s.readBuf,
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
		s.readBuf = rr.buffer()
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

// openForRead returns the segment's file, kept open between Reads. s.readMu
// is held.
func (s *Spool) openForRead(base int64, path string) (segmentReader, error) {
	if s.readFile != nil && s.readBase == base {
		return s.readFile, nil
	}
	if s.readFile != nil {
		s.readFile.Close()
		s.readFile = nil
	}
	f, err := s.openRd(path)
	if err != nil {
		return nil, err
	}
	s.readFile, s.readBase = f, base
	return f, nil
}

// damaged counts a damaged run once, however often it is read. s.readMu is
// held.
func (s *Spool) damaged(off, n int64, torn bool) {
	if off < s.damageMark {
		return
	}
	s.damageMark = off + n
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
	s.readMu.Lock()
	defer s.readMu.Unlock()
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

// Ack acknowledges every record before pos, a Record.End: after a restart
// Read starts at pos. It writes the ack file (synced unless FsyncNever) and
// deletes the segments wholly acknowledged, except the one being written.
// Positions at or before the acknowledged one are ignored. Ack costs a file
// write and up to two fsyncs: call it per batch, not per record.
func (s *Spool) Ack(pos int64) error {
	s.ackMu.Lock()
	defer s.ackMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	pos = min(pos, s.next)
	if pos <= s.acked {
		s.mu.Unlock()
		return nil
	}
	bytes := pos - max(s.acked, min(s.droppedUntil, pos))
	i, found := slices.BinarySearch(s.inflight, pos)
	if found {
		i++
	}
	records := i
	s.inflight = s.inflight[i:]
	if len(s.inflight) == 0 {
		s.inflight = nil // let the array go
	}
	s.acked = pos
	s.cursor = max(s.cursor, pos)
	var del []*segment
	for len(s.segs) > 0 && s.segs[0].end() <= pos && !(len(s.segs) == 1 && s.file != nil) {
		del = append(del, s.segs[0])
		s.diskBytes -= s.segs[0].size
		s.segs[0] = nil
		s.segs = s.segs[1:]
	}
	s.updateGauges()
	s.mu.Unlock()

	s.counts.acked.Add(int64(records))
	s.m.recordsAcked.Add(float64(records))
	s.m.bytesAcked.Add(float64(bytes))
	err := writeAck(s.cfg.Dir, pos, s.cfg.Fsync != FsyncNever)
	if err != nil {
		s.log.Error("writing the ack file failed", "err", err)
	}
	// Deleting after the ack file is written: if this is lost, Open
	// deletes the segments again from the ack file.
	for _, g := range del {
		if rerr := os.Remove(g.path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = errors.Join(err, fmt.Errorf("spool: deleting an acknowledged segment: %w", rerr))
		}
	}
	return err
}

// Sync forces what was appended to stable storage now, whatever the policy:
// for a producer that moves its own read position once its entries are in
// the spool.
func (s *Spool) Sync() error {
	s.mu.Lock()
	f, closed := s.file, s.closed
	s.dirty = false
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if f == nil {
		return nil
	}
	if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
		s.syncFailed(err)
		s.mu.Lock()
		if s.file == f {
			s.dirty = true
		}
		s.mu.Unlock()
		return fmt.Errorf("spool %s: sync: %w", s.cfg.Dir, err)
	}
	return nil
}

func (s *Spool) syncLoop(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.FsyncInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.mu.Lock()
			dirty := s.dirty
			s.mu.Unlock()
			if dirty {
				_ = s.Sync() // counted and logged by Sync
			}
		}
	}
}

func (s *Spool) syncFailed(err error) {
	s.m.syncErrors.Inc()
	s.log.Error("spool sync failed", "err", err)
}

// Close syncs and closes the active segment (deleting it if it is wholly
// acknowledged), stops the background sync and releases the directory and
// the metric series. Records not acknowledged stay for the next Open.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	s.mu.Unlock()
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()

	s.ackMu.Lock()
	defer s.ackMu.Unlock()
	s.readMu.Lock()
	defer s.readMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	if s.file != nil {
		g := s.segs[len(s.segs)-1]
		if s.dirty && s.cfg.Fsync != FsyncNever {
			if serr := s.file.Sync(); serr != nil {
				err = pathError("spool segment", g.path, serr)
			}
		}
		if cerr := s.file.Close(); cerr != nil && err == nil {
			err = pathError("spool segment", g.path, cerr)
		}
		s.file = nil
		if g.end() <= s.acked {
			if rerr := os.Remove(g.path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) && err == nil {
				err = fmt.Errorf("spool: deleting an acknowledged segment: %w", rerr)
			}
		}
	}
	if s.readFile != nil {
		s.readFile.Close()
		s.readFile = nil
	}
	s.lock.Close()
	s.metrics.release(s.cfg.Dir)
	return err
}

// Stats is a snapshot of a spool's state and of what it did since Open.
type Stats struct {
	Segments      int   // segment files
	DiskBytes     int64 // bytes in them
	UnackedBytes  int64 // bytes after the acknowledged position
	AckedPosition int64 // where Read starts after a restart
	WriteFailing  bool  // the last write failed

	Appended     int64 // records appended
	Replayed     int64 // records returned by Read, again after a Rewind
	Acked        int64 // records returned by Read and then acknowledged
	Dropped      int64 // unacknowledged records deleted by drop-oldest
	Refused      int64 // records Append did not take
	Corrupt      int64 // damaged runs followed by intact data; each counts as a record
	CorruptBytes int64
	Torn         int64 // damaged runs at the end of a segment
	TornBytes    int64
}

// Stats returns a snapshot.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{
		Segments:      len(s.segs),
		DiskBytes:     s.diskBytes,
		UnackedBytes:  s.unackedBytes(),
		AckedPosition: s.acked,
		WriteFailing:  s.writeFailing,
		Appended:      s.counts.appended.Load(),
		Replayed:      s.counts.replayed.Load(),
		Acked:         s.counts.acked.Load(),
		Dropped:       s.counts.dropped.Load(),
		Refused:       s.counts.refused.Load(),
		Corrupt:       s.counts.corrupt.Load(),
		CorruptBytes:  s.counts.corruptBytes.Load(),
		Torn:          s.counts.torn.Load(),
		TornBytes:     s.counts.tornBytes.Load(),
	}
}

// unackedBytes is what the segments hold after the acknowledged position
// (gaps between segments, which only a failed write leaves, included).
// s.mu is held.
func (s *Spool) unackedBytes() int64 {
	if len(s.segs) == 0 {
		return 0
	}
	return max(0, s.segs[len(s.segs)-1].end()-max(s.acked, s.segs[0].base))
}

// updateGauges sets the gauges from the state. s.mu is held.
func (s *Spool) updateGauges() {
	s.m.diskBytes.Set(float64(s.diskBytes))
	s.m.segments.Set(float64(len(s.segs)))
	s.m.unackedBytes.Set(float64(s.unackedBytes()))
}

// pathError names path in err once: an *fs.PathError for path is
// flattened so the path is not repeated.
func pathError(what, path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Path == path {
		return fmt.Errorf("%s %s: %s: %w", what, path, pe.Op, pe.Err)
	}
	return fmt.Errorf("%s %s: %w", what, path, err)
}
