package spool

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logferry/logferry/shared/atomicfile"
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

// Spool is an append-only queue of Records on disk, in one directory. Many
// goroutines may Append; one consumer reads (Read, Rewind, Wait) and
// acknowledges (Ack), possibly from another goroutine than the one reading.
// Appending never waits on the network, and on the reader (one Read's disk
// reads) only after a failed write, to reclaim acknowledged space.
//
// The parts: append.go writes segments, read.go reads them back, ack.go
// records what was acknowledged and deletes it. mu guards the state they
// share (the segments, the positions); the reader's own state has its lock
// (rd.mu), and ackMu orders the ack file's writes. Lock order: ackMu, then
// rd.mu, then mu.
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

	rd readState

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
		m:        metrics.forDir(cfg.Dir, cfg.MaxBytes),
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
	if err := removeAckTemps(dir); err != nil {
		return err
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
		if err := atomicfile.SyncDir(dir); err != nil {
			s.syncFailed(pathError("spool directory", dir, err))
		}
	}
	s.segs = kept
	s.acked, s.cursor, s.rd.damageMark, s.next = acked, acked, acked, acked
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
	s.rd.mu.Lock()
	defer s.rd.mu.Unlock()
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
	if s.rd.file != nil {
		s.rd.file.Close()
		s.rd.file = nil
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
