package loki

import (
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
)

// Durable is an optional ability of an Acker: its entries are durable
// already (read back from a spool), so the dispatcher never hands them to
// the overflow again (that would duplicate and reorder them): it retries
// them until Loki accepts or refuses them, and at a shutdown it leaves them
// unresolved, for the spool to replay after the restart.
type Durable interface {
	Acker
	Durable()
}

func isDurable(e *Entry) bool {
	_, ok := e.Acker.(Durable)
	return ok
}

// spooler is the spill of a dispatcher with a spool (WithSpools): it spools
// what the memory queue cannot hold and the batches Loki would not take, in
// order, and its replayer reads the spool back into the queue.
//
// Order. While spooling, admit appends every new entry to the spool, so
// nothing overtakes what is spooled. Spooling begins in one append, with
// everything live (not Durable) in memory, oldest first: the live entries
// of the batch in flight, those of the queue, then the new entry (admit,
// queue full); or the batch whose retries ran out and the queue (keep). So
// while spooling no live entry is in memory except a batch in flight that
// was spooled as well: if Loki accepts it after all, the replay skips those
// entries (by content), and if its push fails, it is let go as kept; the
// replayer reads past it only once it knows which. Spooling ends when the
// replayer holds the lease, has nothing in hand and the spool has nothing
// unread: the replayed entries are then all in the memory queue, ahead of
// the new ones. A dispatcher without the lease (another one of the same
// endpoint replays) ends spooling only when the spool is drained.
//
// Replay. Replayed entries carry a Durable Acker (replayAcker): they are
// retried without limit and never spooled again; a Loki refusal drops and
// counts them like any entry. The sender tells the replayAcker the spool
// position each batch reached and the replayer writes it (Spool.Ack), so an
// acknowledgement costs one ack-file write per batch, off the sender. At a
// stop, replayed entries not delivered stay unacknowledged: the next
// process replays them.
//
// Locks. mu guards the fields marked so; the replayer changes them through
// the spooler's methods. Lock order: spooler.mu, then memQueue.mu, then the
// Spool's own (its methods are called under both); nothing takes
// spooler.mu while holding memQueue.mu. Both are held where the queue and
// the spooler's state change as one: admit (the closed check, the choice
// between queue and spool, and entering spooling mode, which moves the
// queue's live entries into the spool), take (the batch leaves the queue
// and is noted in flight in one step), keep (a batch given up takes the
// queue with it) and queueReplayed (the replayed entries are queued before
// spooling may end).
type spooler struct {
	q              *memQueue
	m              *endpointMetrics
	sm             spoolEndpointMetrics
	log            *slog.Logger
	wake           func() // wakes the sender
	sh             *sharedSpool
	release        func() // gives back this dispatcher's share of sh
	releaseMetrics func()
	r              *replayer

	mu       sync.Mutex
	spooling bool // mu
	refusing bool // mu: the last append failed (logged once)
	held     bool // mu: the replayer has read entries not queued yet
	holder   bool // mu: this dispatcher holds the lease
	leased   bool // mu: the lease is to be given back by close
	// Live entries put in memory and taken out (resolved or spooled), in
	// hand-over order: the first liveOut of the first liveIn are gone.
	liveIn, liveOut int64 // mu
	// pending are Ackers of spooled entries, told once every live entry
	// handed over before them left memory (liveOut >= barrier), so that each
	// Acker hears in hand-over order. Barriers do not decrease.
	pending []pendingAcks // mu

	// The live entries of the batch in flight. Entering spooling mode,
	// admit spools them too, ahead of the queue: they are the oldest. If
	// Loki then accepts the batch after all, the replay skips them (skip,
	// by content: the exact duplicates Loki would drop).
	inflight        []Entry        // mu
	inflightSpooled bool           // mu
	skip            map[string]int // mu

	// healthy: the last push Loki answered was accepted. While it is not,
	// the replayer keeps one read in memory (a probe, retried by the
	// sender) and spooling does not end, so that an outage fills the disk,
	// not the memory queue.
	healthy atomic.Bool

	space     chan struct{} // cap 1: the sender took entries from the queue or let a batch go
	closeOnce sync.Once
}

var _ spill = (*spooler)(nil)

type pendingAcks struct {
	barrier int64
	acks    map[Acker]int64
}

// newSpooler sets up d's spooling state and its replayer, not started yet;
// New calls it after the options.
func newSpooler(d *Dispatcher) (*spooler, error) {
	sh, release, err := d.spools.acquire(d.cfg)
	if err != nil {
		return nil, err
	}
	if max := sh.sp.MaxBytes(); int64(d.cfg.QueueBytes) > max/2 {
		release()
		return nil, configError("loki-queue-size", "%d bytes is over half the spool's size bound (%d bytes): spooling moves the whole queue into the spool; raise the spool's size or lower this", d.cfg.QueueBytes, max)
	}
	metrics, endpoint, tenant := d.spools.metrics, d.cfg.Endpoint(), d.cfg.TenantID
	p := &spooler{
		q: d.queue, m: d.m, log: d.log, wake: d.wakeSender,
		sh: sh, release: release,
		sm:             metrics.acquire(endpoint, tenant),
		releaseMetrics: func() { metrics.release(endpoint, tenant) },
		spooling:       !sh.sp.Drained(),
		space:          make(chan struct{}, 1),
	}
	p.r = newReplayer(p, d.cfg, d.flushReq)
	p.setMode()
	return p, nil
}

func (p *spooler) setMode() {
	if p.spooling {
		p.sm.mode.Set(1)
	} else {
		p.sm.mode.Set(0)
	}
}

// addPending notes the Ackers of entries spooled now. p.mu is held.
func (p *spooler) addPending(entries []Entry) {
	var g *pendingAcks
	if n := len(p.pending); n > 0 && p.pending[n-1].barrier == p.liveIn {
		g = &p.pending[n-1]
	}
	for i := range entries {
		a := entries[i].Acker
		if a == nil {
			continue
		}
		if g == nil {
			p.pending = append(p.pending, pendingAcks{barrier: p.liveIn, acks: map[Acker]int64{}})
			g = &p.pending[len(p.pending)-1]
		}
		g.acks[a] = entries[i].Offset
	}
}

// resumeLocked ends spooling mode if nothing spooled can be overtaken any
// more. p.mu is held.
func (p *spooler) resumeLocked() {
	if !p.spooling {
		return
	}
	if p.holder {
		if p.held || !p.healthy.Load() || p.sh.sp.Unread() {
			return
		}
	} else if !p.sh.sp.Drained() {
		return
	}
	p.spooling = false
	p.setMode()
	p.log.Info("spool replayed; new entries go to Loki directly again")
}

// admit queues e in memory as usual unless the spooler is spooling or the
// queue is full: then e goes to the spool. When the spool does not take e,
// Handle (overflow) drops and counts it; TryHandle leaves it to its
// producer.
func (p *spooler) admit(e Entry, overflow bool) (wake bool, err error) {
	size := e.size()
	p.mu.Lock()
	defer p.mu.Unlock()
	q := p.q
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false, ErrStopped
	}
	if p.spooling {
		p.resumeLocked()
	}
	reason := ReasonSpooling
	if !p.spooling {
		if q.fitsLocked(size) {
			p.liveIn++
			p.m.received(&e)
			wake = q.pushLocked(e, size)
			q.mu.Unlock()
			return wake, nil
		}
		reason = ReasonQueueFull
	}
	// Entering spooling mode, the live entries of the queue go first, so
	// that only the batch in flight is older than the spool.
	batch := []Entry{e}
	inflight := 0
	if !p.spooling {
		if !p.inflightSpooled {
			inflight = len(p.inflight)
		}
		batch = append(append(slices.Clone(p.inflight[:inflight]), q.liveLocked()...), e)
	}
	// Appending under both locks makes entering and leaving spooling mode
	// atomic with admit, and the closed check with the append.
	if err := p.sh.sp.Overflow(batch, reason); err != nil {
		q.mu.Unlock()
		if !p.refusing {
			p.refusing = true
			p.log.Warn("the spool does not take entries; dropping them (Handle) or keeping them waiting (TryHandle) until it does", "err", err)
		}
		if !overflow {
			return false, ErrQueueFull
		}
		p.m.received(&e)
		p.m.dropped.WithLabelValues(ReasonSpoolError).Inc()
		return false, ErrQueueFull
	}
	moved := len(batch) - 1 - inflight
	if moved > 0 {
		q.dropLiveLocked()
	}
	q.mu.Unlock()
	if p.refusing {
		p.refusing = false
		p.log.Info("the spool takes entries again")
	}
	p.m.received(&e)
	if inflight > 0 {
		p.inflightSpooled = true
		p.sm.spooled.WithLabelValues(reason).Add(float64(inflight))
	}
	if moved > 0 {
		p.liveOut += int64(moved)
		p.sm.spooled.WithLabelValues(reason).Add(float64(moved))
	}
	if !p.spooling {
		p.spooling = true
		p.setMode()
		p.log.Warn("memory queue full; spooling new entries until the spool is replayed", "moved", len(batch)-1)
	}
	p.sm.spooled.WithLabelValues(reason).Inc()
	p.addPending(batch[inflight:]) // the batch in flight is told by the sender
	return len(p.pending) > 0 && p.liveOut >= p.pending[0].barrier, nil
}

func skipKey(e *Entry) string {
	return e.Stream + "\x00" + strconv.FormatInt(e.TimeNano, 10) + "\x00" + e.Line
}

// take moves the next batch into b and notes its live entries as in
// flight, under both locks: were the batch out of the queue and not yet in
// p.inflight while admit began spooling, the spool would not hold it, and
// the replayer (this dispatcher's or, sharing the spool, another's) would
// send what admit spooled ahead of it.
func (p *spooler) take(b *batch) {
	p.mu.Lock()
	p.q.mu.Lock()
	p.q.takeLocked(b)
	p.q.mu.Unlock()
	p.inflight = p.inflight[:0]
	for i := range b.entries {
		if !isDurable(&b.entries[i]) {
			p.inflight = append(p.inflight, b.entries[i])
		}
	}
	p.inflightSpooled = false
	p.mu.Unlock()
	p.spaceFreed() // b left the queue: the replayer may wait for room
}

// sent is told that Loki accepted b: if its live entries were spooled
// meanwhile, the replay is to skip them.
func (p *spooler) sent(b *batch) {
	if !p.healthy.Swap(true) {
		p.r.nudge() // the replayer may wait for Loki to be back
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.inflightSpooled {
		return
	}
	if p.skip == nil {
		p.skip = map[string]int{}
	}
	for i := range p.inflight {
		p.skip[skipKey(&p.inflight[i])]++
	}
	p.inflightSpooled = false
}

// failed is told that a push of b failed. If b's live entries were spooled
// meanwhile, they are resolved as kept: when b holds nothing else, done is
// true and the sender lets b go; otherwise b is trimmed to its durable
// entries (trimmed: to be encoded again), retried for them.
func (p *spooler) failed(b *batch) (done, trimmed bool) {
	p.healthy.Store(false)
	p.mu.Lock()
	spooled := p.inflightSpooled
	p.mu.Unlock()
	if !spooled {
		return false, false
	}
	var live, durable []Entry
	for i := range b.entries {
		if isDurable(&b.entries[i]) {
			durable = append(durable, b.entries[i])
		} else {
			live = append(live, b.entries[i])
		}
	}
	if len(durable) == 0 {
		resolveEntries(b.entries, true)
		return true, false
	}
	resolveEntries(live, true)
	b.reset()
	for _, e := range durable {
		b.add(e)
	}
	p.mu.Lock()
	p.liveOut += int64(len(live))
	p.inflight = p.inflight[:0]
	p.inflightSpooled = false
	p.mu.Unlock()
	p.spaceFreed()
	p.resolve()
	return false, true
}

// skipDelivered removes from entries, read back from the spool, those Loki
// accepted in a batch that was spooled while in flight.
func (p *spooler) skipDelivered(entries []Entry) []Entry {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.skip) == 0 {
		return entries
	}
	out := entries[:0]
	for i := range entries {
		k := skipKey(&entries[i])
		if n := p.skip[k]; n > 0 {
			if n == 1 {
				delete(p.skip, k)
			} else {
				p.skip[k] = n - 1
			}
			continue
		}
		out = append(out, entries[i])
	}
	return out
}

// resolve tells the Ackers of entries admit spooled, once no older live
// entry is left in memory. Called by the sender only, so Ackers hear in
// order.
func (p *spooler) resolve() {
	p.mu.Lock()
	n := 0
	for n < len(p.pending) && p.pending[n].barrier <= p.liveOut {
		n++
	}
	if n == 0 {
		p.mu.Unlock()
		return
	}
	ready := slices.Clone(p.pending[:n])
	p.pending = slices.Delete(p.pending, 0, n)
	p.mu.Unlock()
	for _, g := range ready {
		for a, off := range g.acks {
			a.Ack(off, true)
		}
	}
}

// batchDone is told by the sender that b was resolved (or, for durable
// entries, let go).
func (p *spooler) batchDone(b *batch) {
	n := 0
	for i := range b.entries {
		if !isDurable(&b.entries[i]) {
			n++
		}
	}
	p.mu.Lock()
	p.liveOut += int64(n)
	p.inflight = p.inflight[:0]
	p.inflightSpooled = false
	p.mu.Unlock()
	p.spaceFreed() // the replayer may wait for the batch in flight
	p.resolve()
}

// mayGiveUp reports whether a batch whose retries ran out may leave for the
// spool: not if it holds durable entries (retried until delivered) nor while
// spooling (it is older than what is spooled).
func (p *spooler) mayGiveUp(b *batch) bool {
	for i := range b.entries {
		if isDurable(&b.entries[i]) {
			return false
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.spooling
}

// keep spools a batch given up. Durable entries are let go unresolved (the
// spool still has them). Live ones are appended; when the batch gave up on
// retries outside spooling mode, the live entries of the queue follow it
// into the spool, so that none overtakes it, and spooling mode begins. What
// the spool does not take is dropped and counted.
func (p *spooler) keep(b *batch, reason string) {
	live := make([]Entry, 0, len(b.entries))
	for i := range b.entries {
		if !isDurable(&b.entries[i]) {
			live = append(live, b.entries[i])
		}
	}
	p.mu.Lock()
	if p.inflightSpooled {
		// admit spooled them when spooling began.
		p.inflightSpooled = false
		p.mu.Unlock()
		resolveEntries(live, true)
		return
	}
	moved, own := 0, len(live)
	p.q.mu.Lock()
	if reason == ReasonRetriesExhausted && !p.spooling {
		q := p.q.liveLocked()
		live = append(live, q...)
		moved = len(q)
	}
	var err error
	if len(live) > 0 {
		err = p.sh.sp.Overflow(live, reason)
	}
	if err == nil && moved > 0 {
		// The queue's entries are told after the batch's, once the
		// batch is counted out (batchDone).
		p.q.dropLiveLocked()
		p.addPending(live[own:])
		p.liveOut += int64(moved)
	}
	p.q.mu.Unlock()
	if err == nil && len(live) > 0 && !p.spooling {
		p.spooling = true
		p.setMode()
	}
	p.mu.Unlock()
	if err != nil {
		p.log.Warn("the spool did not take a batch", "entries", len(live), "reason", reason, "err", err)
		live = live[:own] // the queue's entries stay queued
		p.m.dropped.WithLabelValues(ReasonSpoolError).Add(float64(len(live)))
		resolveEntries(live, false)
		return
	}
	if len(live) > 0 {
		p.sm.spooled.WithLabelValues(reason).Add(float64(len(live)))
		if moved > 0 {
			p.log.Warn("Loki keeps failing; spooling the queue until it is back", "entries", len(live))
		}
	}
	resolveEntries(live[:own], true)
}

// resolveEntries tells the Ackers of entries, given in hand-over order.
func resolveEntries(entries []Entry, delivered bool) {
	acks := map[Acker]int64{}
	var order []Acker
	for i := range entries {
		if a := entries[i].Acker; a != nil {
			if _, ok := acks[a]; !ok {
				order = append(order, a)
			}
			acks[a] = entries[i].Offset
		}
	}
	for _, a := range order {
		a.Ack(acks[a], delivered)
	}
}

// spaceFreed wakes the replayer if it waits for room in the queue or for
// the batch in flight.
func (p *spooler) spaceFreed() {
	select {
	case p.space <- struct{}{}:
	default:
	}
}

// ended reports whether the replayer has ended.
func (p *spooler) ended() bool {
	select {
	case <-p.r.done:
		return true
	default:
		return false
	}
}

// close ends the dispatcher's use of its spool after the sender ended: it
// waits for the replayer, writes the last acknowledgement, syncs the spool,
// gives back the lease and releases the dispatcher's share of the spool.
func (p *spooler) close() {
	p.closeOnce.Do(func() {
		<-p.r.done
		p.r.finish()
		p.releaseMetrics()
		p.mu.Lock()
		leased := p.leased
		p.holder, p.leased = false, false
		p.mu.Unlock()
		if leased {
			<-p.sh.lease
		}
		p.release()
	})
}

// The replayer's view of the spooler's state.

// leaseTaken notes that the replayer holds the spool's lease.
func (p *spooler) leaseTaken() {
	p.mu.Lock()
	p.holder, p.leased = true, true
	p.mu.Unlock()
}

// mayRead reports whether the replayer may read the spool now: not while a
// batch in flight that was spooled is unresolved (delivered, it is to be
// skipped; or let go): the replayer reads past it only once that is known.
// When it may, what it reads is held until queued.
func (p *spooler) mayRead() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	blocked := p.inflightSpooled
	p.held = !blocked
	return !blocked
}

// unheld notes that the replayer holds nothing it read.
func (p *spooler) unheld() {
	p.mu.Lock()
	p.held = false
	p.mu.Unlock()
}

// readNothing is told that a read of the spool returned nothing; with
// caughtUp (no error) spooling may end. It reports whether the dispatcher
// is stopping.
func (p *spooler) readNothing(caughtUp bool) (stopping bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.held = false
	if caughtUp {
		p.resumeLocked()
	}
	return p.q.stopping()
}

// queueReplayed puts replayed entries into the memory queue while they fit
// and returns how many it took. Once all are queued, spooling may end.
func (p *spooler) queueReplayed(entries []Entry) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.q.mu.Lock()
	n := p.q.pushReplayedLocked(entries)
	p.q.mu.Unlock()
	if n == len(entries) {
		p.held = false
		p.resumeLocked()
	}
	return n
}
