package loki

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"
)

// replayBatch bounds one read of the spool.
const replayBatch = 1000

// replayer is a spooling dispatcher's second goroutine: it takes the
// spool's lease, reads the spool back in order into the memory queue (as
// space allows) and writes the acknowledgements the sender reports through
// its replayAcker. It reads and changes the spooler's state only through
// the spooler's methods. The dispatcher owns it: run ends when the
// dispatcher's context ends, or once the dispatcher is stopping and the
// spool has nothing left to read; done is closed then, and the spooler's
// close calls finish after it.
type replayer struct {
	sp       *spooler
	spool    Spool
	acker    *replayAcker
	log      *slog.Logger
	flushReq <-chan struct{} // closed when Stop begins
	cfg      Config          // BatchSize, MinBackoff, MaxBackoff
	done     chan struct{}
}

func newReplayer(sp *spooler, cfg Config, flushReq <-chan struct{}) *replayer {
	return &replayer{
		sp: sp, spool: sp.sh.sp, log: sp.log, flushReq: flushReq, cfg: cfg,
		acker: &replayAcker{sig: make(chan struct{}, 1)},
		done:  make(chan struct{}),
	}
}

// replayAcker is the Acker of replayed entries: the sender tells it the
// spool position Loki has accepted (or definitively refused) up to, and
// the replayer writes it to the spool, once per batch.
type replayAcker struct {
	pos atomic.Int64
	sig chan struct{} // cap 1
}

var _ Durable = (*replayAcker)(nil)

func (a *replayAcker) Ack(off int64, _ bool) {
	if off > a.pos.Load() {
		a.pos.Store(off)
	}
	a.nudge()
}

func (a *replayAcker) nudge() {
	select {
	case a.sig <- struct{}{}:
	default:
	}
}

func (a *replayAcker) Durable() {}

// nudge wakes the replayer if it waits for Loki to be back.
func (r *replayer) nudge() { r.acker.nudge() }

func (r *replayer) run(ctx context.Context) {
	p := r.sp
	defer p.wake() // after done is closed: the sender may be waiting for it
	defer close(r.done)
	select {
	case p.sh.lease <- struct{}{}: // free: replay, even if Stop came first
	default:
		select {
		case p.sh.lease <- struct{}{}:
		case <-ctx.Done():
			return
		case <-r.flushReq:
			return // stopped before it was this dispatcher's turn
		}
	}
	// The lease is given back by the spooler's close, once the sender has
	// ended: the next holder must not replay what this one still delivers.
	r.spool.Rewind() // a previous holder may have read past what it delivered
	p.leaseTaken()
	acked := int64(-1)
	lastEnd := int64(0) // end of the last entries queued
	ack := func() {
		if pos := r.acker.pos.Load(); pos > acked {
			if err := r.spool.Ack(pos); err != nil {
				r.log.Error("acknowledging the spool", "err", err)
			}
			acked = pos
		}
	}
	backoff := r.cfg.MinBackoff
	for {
		ack()
		if !p.mayRead() {
			if !r.wait(ctx, -1, p.space) {
				return
			}
			continue
		}
		if !p.healthy.Load() && r.acker.pos.Load() < lastEnd {
			// Loki is failing and replayed entries are in memory: wait
			// until they are delivered or a push succeeds.
			p.unheld()
			select {
			case <-ctx.Done():
				return
			case <-r.acker.sig:
			}
			continue
		}
		entries, end, err := r.spool.ReadEntries(replayBatch, r.cfg.BatchSize)
		if err != nil || len(entries) == 0 {
			stopping := p.readNothing(err == nil)
			if err == nil && end > lastEnd && r.acker.pos.Load() >= lastEnd {
				// Only damaged data was read past what was delivered:
				// acknowledge it, or the spool never drains.
				lastEnd = end
				r.acker.Ack(end, true)
				continue
			}
			if err != nil {
				r.log.Error("reading the spool back; retrying", "err", err, "wait", backoff)
				if !r.wait(ctx, backoff, nil) {
					return
				}
				backoff = min(2*backoff, r.cfg.MaxBackoff)
				continue
			}
			backoff = r.cfg.MinBackoff
			if stopping {
				return
			}
			// Wait here, not in a goroutine per wait: an idle endpoint
			// costs the replayer alone.
			appended, closed := r.spool.Signals()
			if r.spool.Unread() {
				continue
			}
			select {
			case <-ctx.Done():
				return
			case <-closed:
				return
			case <-appended:
			case <-r.acker.sig:
			case <-r.flushReq:
			}
			continue
		}
		if entries = p.skipDelivered(entries); len(entries) == 0 {
			continue // the next read, empty or not, acknowledges end
		}
		entries[len(entries)-1].Offset = max(entries[len(entries)-1].Offset, end)
		for i := range entries {
			entries[i].Acker = r.acker
		}
		lastEnd = end
		if !r.queue(ctx, entries) {
			return
		}
		p.sm.replayed.Add(float64(len(entries)))
	}
}

// queue puts replayed entries into the memory queue, waiting for room; it
// reports false when ctx ended first.
func (r *replayer) queue(ctx context.Context, entries []Entry) bool {
	for len(entries) > 0 {
		n := r.sp.queueReplayed(entries)
		entries = entries[n:]
		if n > 0 {
			r.sp.wake()
		}
		if len(entries) == 0 {
			return true
		}
		if !r.wait(ctx, -1, r.sp.space) {
			return false
		}
	}
	return true
}

// wait waits for ch, or for wait when it is not negative, writing
// acknowledgements meanwhile. It reports false when ctx ended.
func (r *replayer) wait(ctx context.Context, wait time.Duration, ch <-chan struct{}) bool {
	var timeout <-chan time.Time
	if wait >= 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return false
		case <-ch:
			return true
		case <-timeout:
			return true
		case <-r.acker.sig:
			if pos := r.acker.pos.Load(); pos > 0 {
				if err := r.spool.Ack(pos); err != nil {
					r.log.Error("acknowledging the spool", "err", err)
				}
			}
		}
	}
}

// finish writes the last acknowledgement and syncs the spool, after the
// sender and run ended.
func (r *replayer) finish() {
	if pos := r.acker.pos.Load(); pos > 0 {
		if err := r.spool.Ack(pos); err != nil && !errors.Is(err, ErrStopped) {
			r.log.Error("acknowledging the spool", "err", err)
		}
	}
	if err := r.spool.Sync(); err != nil {
		r.log.Error("syncing the spool", "err", err)
	}
}
