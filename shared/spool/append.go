package spool

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/logferry/logferry/shared/atomicfile"
	"github.com/logferry/logferry/shared/loki"
)

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
		// (rd.mu before mu).
		s.mu.Unlock()
		s.rd.mu.Lock()
		s.mu.Lock()
		if !s.closed {
			if s.rd.file != nil {
				s.rd.file.Close()
				s.rd.file = nil
			}
			s.reclaimAcked()
		}
		s.rd.mu.Unlock()
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
		if err := atomicfile.SyncDir(s.cfg.Dir); err != nil {
			s.syncFailed(pathError("spool directory", s.cfg.Dir, err))
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

var _ loki.Overflow = (*Spool)(nil)

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
