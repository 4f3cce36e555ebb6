package loki

// Overflow takes entries the memory queue cannot hold, and batches Loki
// would not take before the dispatcher gave up or stopped. A disk spool
// implements it; without one those entries are dropped and counted.
// Overflow must not block on the network; it returns an error when it did not
// keep the entries, which are then counted as dropped.
type Overflow interface {
	Overflow(entries []Entry, reason string) error
}

// WithOverflow sets the overflow policy (default: drop and count).
func WithOverflow(o Overflow) Option { return func(d *Dispatcher) { d.overflow = o } }

// noSpool is the spill of a dispatcher without a spool (WithSpools): what
// the memory queue cannot hold and the batches given up go to the Overflow
// policy, or are dropped and counted. Nothing it spills comes back, so it
// keeps no state and has no goroutine.
type noSpool struct {
	queue    *memQueue
	m        *endpointMetrics
	overflow Overflow // nil: drop
}

var _ spill = noSpool{}

func (n noSpool) admit(e Entry, overflow bool) (wake bool, err error) {
	size := e.size()
	q := n.queue
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false, ErrStopped
	}
	if q.fitsLocked(size) {
		n.m.received(&e)
		wake = q.pushLocked(e, size)
		q.mu.Unlock()
		return wake, nil
	}
	q.mu.Unlock()
	if !overflow {
		return false, ErrQueueFull
	}
	n.m.received(&e)
	if n.overflow != nil && n.overflow.Overflow([]Entry{e}, ReasonQueueFull) == nil {
		return false, nil
	}
	n.m.dropped.WithLabelValues(ReasonQueueFull).Inc()
	return false, ErrQueueFull
}

func (n noSpool) take(b *batch) { n.queue.take(b) }

func (n noSpool) keep(b *batch, reason string) {
	if n.overflow != nil && len(b.entries) > 0 && n.overflow.Overflow(b.entries, reason) == nil {
		// The overflow keeps them: for the producer they are resolved.
		b.resolve(true)
		return
	}
	dropBatch(n.m, b, reason)
}

func (noSpool) sent(*batch)                        {}
func (noSpool) failed(*batch) (done, trimmed bool) { return false, false }
func (noSpool) mayGiveUp(*batch) bool              { return true }
func (noSpool) batchDone(*batch)                   {}
func (noSpool) resolve()                           {}
func (noSpool) ended() bool                        { return true }
func (noSpool) close()                             {}
