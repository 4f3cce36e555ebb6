package loki

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ReasonSpoolError counts entries the dispatcher meant to spool and the
// spool did not take (full under its refuse policy, a write error, closed).
const ReasonSpoolError = "spool_error"

// Spool is a durable overflow the dispatcher also replays from: package
// spool implements it (through its DispatcherSpool adapter). Appends may come
// from many goroutines; one consumer at a time reads, rewinds and acks.
//
// Contract: Overflow appends in call order and keeps the entries durably (in
// the page cache at least) when it returns nil. ReadEntries returns entries
// in append order from where the previous call stopped (after open or Rewind:
// from the oldest not acknowledged); end is the position after them and after
// any damaged data skipped on the way, and Ack(end) acknowledges all of it.
// No entries and a nil error mean nothing to read now; Signals returns a
// channel that receives after an append (capacity 1: one reader) and one
// that is closed when the spool is.
// Unread reports whether appended records are still to be read; Drained
// whether everything appended was acknowledged.
type Spool interface {
	Overflow
	ReadEntries(maxEntries, maxBytes int) (entries []Entry, end int64, err error)
	Signals() (appended, closed <-chan struct{})
	Unread() bool
	Drained() bool
	Rewind()
	Ack(pos int64) error
	Sync() error
	Close() error
	// MaxBytes is the spool's size bound. Entering spooling mode appends
	// the whole memory queue at once, so a dispatcher's QueueBytes must
	// stay well under it.
	MaxBytes() int64
}

// Durable is an optional ability of an Acker: its entries are durable
// already (read back from a spool), so the dispatcher never hands them to
// the overflow again (that would duplicate and reorder them): it retries
// them until Loki accepts or refuses them, and at a shutdown it leaves them
// unresolved, for the spool to replay after the restart.
type Durable interface {
	Acker
	Durable()
}

// SpoolMetrics are the spooling dispatchers' series, kept apart from Metrics
// so that dispatchers without a spool export none of them.
type SpoolMetrics struct {
	spooled  *prometheus.CounterVec
	replayed *prometheus.CounterVec
	mode     *prometheus.GaugeVec

	users endpointUsers
}

func (m *SpoolMetrics) acquire(endpoint, tenant string) spoolEndpointMetrics {
	m.users.add(endpoint, tenant)
	l := prometheus.Labels{"endpoint": endpoint, "tenant": tenant}
	return spoolEndpointMetrics{
		spooled:  m.spooled.MustCurryWith(l),
		replayed: m.replayed.With(l),
		mode:     m.mode.With(l),
	}
}

// release deletes the pair's spooling gauge when its last dispatcher is
// gone; the counters stay, as Metrics keeps its counters (a scrape after the
// last container of an endpoint stopped still sees what was spooled).
func (m *SpoolMetrics) release(endpoint, tenant string) {
	m.users.done(endpoint, tenant, func(l prometheus.Labels) { m.mode.DeletePartialMatch(l) })
}

// NewSpoolMetrics creates the series and registers them with reg (nil: not
// registered).
func NewSpoolMetrics(reg prometheus.Registerer) *SpoolMetrics {
	labels := []string{"endpoint", "tenant"}
	m := &SpoolMetrics{
		spooled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logferry_loki_entries_spooled_total",
			Help: "Entries the dispatcher wrote to its spool, by reason (spooling: behind spooled entries, queue_full, retries_exhausted, shutdown).",
		}, append(labels, "reason")),
		replayed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logferry_loki_entries_replayed_total", Help: "Entries the dispatcher read back from its spool and queued for Loki.",
		}, labels),
		mode: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "logferry_loki_spooling", Help: "1 while new entries go to the spool behind spooled ones, else 0.",
		}, labels),
	}
	if reg != nil {
		reg.MustRegister(m.spooled, m.replayed, m.mode)
	}
	return m
}

// ReasonSpooling labels entries spooled because older ones were.
const ReasonSpooling = "spooling"

// SpoolSet shares open spools among the dispatchers of one process: one
// spool per key (its directory), opened when the first dispatcher needs it
// and closed after the last one stopped. Of the dispatchers sharing a spool,
// one at a time holds its replay lease and reads it back; the others only
// append.
type SpoolSet struct {
	key     func(Config) string
	open    func(key string, cfg Config) (Spool, error)
	metrics *SpoolMetrics

	mu     sync.Mutex
	spools map[string]*sharedSpool
}

type sharedSpool struct {
	sp    Spool
	users int
	lease chan struct{} // cap 1: full while a dispatcher replays
}

// NewSpoolSet returns an empty set. key names the spool of a configuration
// (dispatchers whose keys are equal share one spool); open opens it. metrics
// may be nil.
func NewSpoolSet(key func(Config) string, open func(key string, cfg Config) (Spool, error), metrics *SpoolMetrics) *SpoolSet {
	if metrics == nil {
		metrics = NewSpoolMetrics(nil)
	}
	return &SpoolSet{key: key, open: open, metrics: metrics, spools: map[string]*sharedSpool{}}
}

// WithSpools makes every dispatcher spool through set: see the Dispatcher
// comment on spooling. It replaces WithOverflow.
func WithSpools(set *SpoolSet) Option { return func(d *Dispatcher) { d.spools = set } }

func (s *SpoolSet) acquire(cfg Config) (*sharedSpool, func(), error) {
	k := s.key(cfg)
	s.mu.Lock()
	defer s.mu.Unlock()
	sh, ok := s.spools[k]
	if !ok {
		sp, err := s.open(k, cfg)
		if err != nil {
			return nil, nil, err
		}
		sh = &sharedSpool{sp: sp, lease: make(chan struct{}, 1)}
		s.spools[k] = sh
	}
	sh.users++
	var once sync.Once
	return sh, func() { once.Do(func() { s.release(k, sh) }) }, nil
}

func (s *SpoolSet) release(k string, sh *sharedSpool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sh.users--
	if sh.users > 0 {
		return
	}
	delete(s.spools, k)
	_ = sh.sp.Sync()
	_ = sh.sp.Close()
}

// spooler is a Dispatcher's spooling state. Fields marked d.mu are guarded
// by the Dispatcher's lock.
//
// Order. While spooling (d.mu), Handle appends every new entry to the spool,
// so nothing overtakes what is spooled. Spooling begins under d.mu, in one
// append, with everything live (not Durable) in memory, oldest first: the
// live entries of the batch in flight, those of the queue, then the new
// entry (Handle, queue full); or the batch whose retries ran out and the
// queue (the sender). So while spooling no live entry is in memory except a
// batch in flight that was spooled as well: if Loki accepts it after all,
// the replay skips those entries (by content), and if its push fails, it is
// let go as kept; the replayer reads past it only once it knows which.
// Spooling ends under d.mu when the replayer holds the lease, has nothing in
// hand and the spool has nothing unread: the replayed entries are then all
// in the memory queue, ahead of the new ones. A dispatcher without the lease
// (another one of the same endpoint replays) ends spooling only when the
// spool is drained.
//
// Replay. Replayed entries carry a Durable Acker (replayAcker): they are
// retried without limit and never spooled again; a Loki refusal drops and
// counts them like any entry. The sender tells the replayAcker the spool
// position each batch reached and the replayer writes it (Spool.Ack), so an
// acknowledgement costs one ack-file write per batch, off the sender. At a
// stop, replayed entries not delivered stay unacknowledged: the next
// process replays them.
type spooler struct {
	sh      *sharedSpool
	release func()
	m       spoolEndpointMetrics

	spooling bool // d.mu
	refusing bool // d.mu: the last append failed (logged once)
	held     bool // d.mu: the replayer has read entries not queued yet
	holder   bool // d.mu: this dispatcher holds the lease
	leased   bool // d.mu: the lease is to be given back by closeSpool
	// Live entries put in memory and taken out (resolved or spooled), in
	// hand-over order: the first liveOut of the first liveIn are gone.
	liveIn, liveOut int64 // d.mu
	// pending are Ackers of spooled entries, told once every live entry
	// handed over before them left memory (liveOut >= barrier), so that each
	// Acker hears in hand-over order. Barriers do not decrease.
	pending []pendingAcks // d.mu

	// The live entries of the batch in flight. Entering spooling mode,
	// Handle spools them too, ahead of the queue: they are the oldest. If
	// Loki then accepts the batch after all, the replay skips them (skip,
	// by content: the exact duplicates Loki would drop).
	inflight        []Entry        // d.mu
	inflightSpooled bool           // d.mu
	skip            map[string]int // d.mu

	// healthy: the last push Loki answered was accepted. While it is not,
	// the replayer keeps one read in memory (a probe, retried by the
	// sender) and spooling does not end, so that an outage fills the disk,
	// not the memory queue.
	healthy atomic.Bool

	acker *replayAcker
	space chan struct{} // cap 1: the sender took entries from the queue
	done  chan struct{} // closed when the replayer ended
}

type pendingAcks struct {
	barrier int64
	acks    map[Acker]int64
}

// addPending notes the Ackers of entries spooled now. d.mu is held.
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

type spoolEndpointMetrics struct {
	spooled  *prometheus.CounterVec
	replayed prometheus.Counter
	mode     prometheus.Gauge
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
	select {
	case a.sig <- struct{}{}:
	default:
	}
}

func (a *replayAcker) Durable() {}

func isDurable(e *Entry) bool {
	_, ok := e.Acker.(Durable)
	return ok
}

// openSpool sets up d's spooling state; New calls it after the options.
func (d *Dispatcher) openSpool() error {
	sh, release, err := d.spools.acquire(d.cfg)
	if err != nil {
		return err
	}
	if max := sh.sp.MaxBytes(); int64(d.cfg.QueueBytes) > max/2 {
		release()
		return configError("loki-queue-size", "%d bytes is over half the spool's size bound (%d bytes): spooling moves the whole queue into the spool; raise the spool's size or lower this", d.cfg.QueueBytes, max)
	}
	d.sp = &spooler{
		sh: sh, release: release,
		m:        d.spools.metrics.acquire(d.cfg.Endpoint(), d.cfg.TenantID),
		spooling: !sh.sp.Drained(),
		acker:    &replayAcker{sig: make(chan struct{}, 1)},
		space:    make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	d.sp.setMode()
	return nil
}

func (p *spooler) setMode() {
	if p.spooling {
		p.m.mode.Set(1)
	} else {
		p.m.mode.Set(0)
	}
}

// resumeLocked ends spooling mode if nothing spooled can be overtaken any
// more. d.mu is held.
func (d *Dispatcher) resumeLocked() {
	p := d.sp
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
	d.log.Info("spool replayed; new entries go to Loki directly again")
}

// handleSpooling is Handle with a spool. It returns handled=false when e is
// to be queued in memory as usual; d.mu is held and stays held then,
// otherwise it is released. When the spool does not take e, Handle
// (overflow) drops and counts it; TryHandle leaves it to its producer.
func (d *Dispatcher) handleSpooling(e Entry, size int, overflow bool) (handled bool, err error) {
	p := d.sp
	if p.spooling {
		d.resumeLocked()
	}
	reason := ReasonSpooling
	if !p.spooling {
		if d.queued+size <= d.cfg.QueueBytes {
			return false, nil
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
		batch = append(append(slices.Clone(p.inflight[:inflight]), d.liveQueued()...), e)
	}
	// Appending under d.mu makes entering and leaving spooling mode atomic
	// with Handle.
	if err := p.sh.sp.Overflow(batch, reason); err != nil {
		first := !p.refusing
		p.refusing = true
		d.mu.Unlock()
		if first {
			d.log.Warn("the spool does not take entries; dropping them (Handle) or keeping them waiting (TryHandle) until it does", "err", err)
		}
		if !overflow {
			return true, ErrQueueFull
		}
		d.m.entriesReceived.Inc()
		d.m.bytesReceived.Add(float64(len(e.Line)))
		d.m.dropped.WithLabelValues(ReasonSpoolError).Inc()
		return true, ErrQueueFull
	}
	if p.refusing {
		p.refusing = false
		d.log.Info("the spool takes entries again")
	}
	d.m.entriesReceived.Inc()
	d.m.bytesReceived.Add(float64(len(e.Line)))
	if inflight > 0 {
		p.inflightSpooled = true
		p.m.spooled.WithLabelValues(reason).Add(float64(inflight))
	}
	if moved := len(batch) - 1 - inflight; moved > 0 {
		d.keepDurableQueued()
		p.liveOut += int64(moved)
		p.m.spooled.WithLabelValues(reason).Add(float64(moved))
	}
	if !p.spooling {
		p.spooling = true
		p.setMode()
		d.log.Warn("memory queue full; spooling new entries until the spool is replayed", "moved", len(batch)-1)
	}
	p.m.spooled.WithLabelValues(reason).Inc()
	p.addPending(batch[inflight:]) // the batch in flight is told by the sender
	wake := len(p.pending) > 0 && p.liveOut >= p.pending[0].barrier
	d.mu.Unlock()
	if wake {
		d.wakeSender()
	}
	return true, nil
}

// liveQueued copies the live entries of the queue, oldest first. d.mu is
// held.
func (d *Dispatcher) liveQueued() []Entry {
	var out []Entry
	for i := 0; i < d.queue.len(); i++ {
		e := &d.queue.buf[(d.queue.head+i)%len(d.queue.buf)]
		if !isDurable(e) {
			out = append(out, *e)
		}
	}
	return out
}

// keepDurableQueued removes the live entries from the queue. d.mu is held.
func (d *Dispatcher) keepDurableQueued() {
	var keep entryRing
	for d.queue.len() > 0 {
		e := *d.queue.peek()
		d.queue.pop()
		if isDurable(&e) {
			keep.push(e)
			continue
		}
		d.queued -= e.size()
	}
	d.queue = keep
	d.m.queueBytes.Set(float64(d.queued))
	d.m.queueEntries.Set(float64(d.queue.len()))
}

func (d *Dispatcher) wakeSender() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func skipKey(e *Entry) string {
	return e.Stream + "\x00" + strconv.FormatInt(e.TimeNano, 10) + "\x00" + e.Line
}

// sending is told the batch the sender is about to push.
func (d *Dispatcher) sending(b *batch) {
	if d.sp == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sp.inflight = d.sp.inflight[:0]
	for i := range b.entries {
		if !isDurable(&b.entries[i]) {
			d.sp.inflight = append(d.sp.inflight, b.entries[i])
		}
	}
	d.sp.inflightSpooled = false
}

// sent is told that Loki accepted b: if its live entries were spooled
// meanwhile, the replay is to skip them.
func (d *Dispatcher) sent(b *batch) {
	if d.sp == nil {
		return
	}
	p := d.sp
	if !p.healthy.Swap(true) {
		select { // the replayer may wait for Loki to be back
		case p.acker.sig <- struct{}{}:
		default:
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
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

// spooledInFlight is told that a push of b failed. If b's live entries
// were spooled meanwhile, they are resolved as kept: when b holds nothing
// else, done is true and the sender lets b go; otherwise b is trimmed to its
// durable entries (trimmed: to be encoded again), retried for them.
func (d *Dispatcher) spooledInFlight(b *batch) (done, trimmed bool) {
	if d.sp == nil {
		return false, false
	}
	p := d.sp
	p.healthy.Store(false)
	d.mu.Lock()
	spooled := p.inflightSpooled
	d.mu.Unlock()
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
	d.mu.Lock()
	p.liveOut += int64(len(live))
	p.inflight = p.inflight[:0]
	p.inflightSpooled = false
	d.mu.Unlock()
	d.spaceFreed()
	d.resolveSpooled()
	return false, true
}

// skipDelivered removes from entries, read back from the spool, those Loki
// accepted in a batch that was spooled while in flight.
func (d *Dispatcher) skipDelivered(entries []Entry) []Entry {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.sp
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

// resolveSpooled tells the Ackers of entries Handle spooled, once no older
// live entry is left in memory. Called by the sender only, so Ackers hear
// in order.
func (d *Dispatcher) resolveSpooled() {
	if d.sp == nil {
		return
	}
	p := d.sp
	d.mu.Lock()
	n := 0
	for n < len(p.pending) && p.pending[n].barrier <= p.liveOut {
		n++
	}
	if n == 0 {
		d.mu.Unlock()
		return
	}
	ready := slices.Clone(p.pending[:n])
	p.pending = slices.Delete(p.pending, 0, n)
	d.mu.Unlock()
	for _, g := range ready {
		for a, off := range g.acks {
			a.Ack(off, true)
		}
	}
}

// batchDone is told by the sender that b was resolved (or, for durable
// entries, let go).
func (d *Dispatcher) batchDone(b *batch) {
	if d.sp == nil {
		return
	}
	n := 0
	for i := range b.entries {
		if !isDurable(&b.entries[i]) {
			n++
		}
	}
	d.mu.Lock()
	d.sp.liveOut += int64(n)
	d.sp.inflight = d.sp.inflight[:0]
	d.sp.inflightSpooled = false
	d.mu.Unlock()
	d.spaceFreed() // the replayer may wait for the batch in flight
	d.resolveSpooled()
}

// mayGiveUp reports whether a batch whose retries ran out may leave for the
// spool: not if it holds durable entries (retried until delivered) nor while
// spooling (it is older than what is spooled).
func (d *Dispatcher) mayGiveUp(b *batch) bool {
	if d.sp == nil {
		return true
	}
	for i := range b.entries {
		if isDurable(&b.entries[i]) {
			return false
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return !d.sp.spooling
}

// spoolBatch is overflowOrDrop with a spool. Durable entries are let go
// unresolved (the spool still has them). Live ones are appended; when the
// batch gave up on retries outside spooling mode, the live entries of the
// queue follow it into the spool, so that none overtakes it, and spooling
// mode begins. What the spool does not take is dropped and counted.
func (d *Dispatcher) spoolBatch(b *batch, reason string) {
	p := d.sp
	live := make([]Entry, 0, len(b.entries))
	for i := range b.entries {
		if !isDurable(&b.entries[i]) {
			live = append(live, b.entries[i])
		}
	}
	d.mu.Lock()
	if p.inflightSpooled {
		// Handle spooled them when spooling began.
		p.inflightSpooled = false
		d.mu.Unlock()
		resolveEntries(live, true)
		return
	}
	moved, own := 0, len(live)
	if reason == ReasonRetriesExhausted && !p.spooling {
		q := d.liveQueued()
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
		d.keepDurableQueued()
		p.addPending(live[own:])
		p.liveOut += int64(moved)
	}
	if err == nil && len(live) > 0 && !p.spooling {
		p.spooling = true
		p.setMode()
	}
	d.mu.Unlock()
	if err != nil {
		d.log.Warn("the spool did not take a batch", "entries", len(live), "reason", reason, "err", err)
		live = live[:own] // the queue's entries stay queued
		d.m.dropped.WithLabelValues(ReasonSpoolError).Add(float64(len(live)))
		resolveEntries(live, false)
		return
	}
	if len(live) > 0 {
		p.m.spooled.WithLabelValues(reason).Add(float64(len(live)))
		if moved > 0 {
			d.log.Warn("Loki keeps failing; spooling the queue until it is back", "entries", len(live))
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

// spaceFreed is told by the sender after it took entries from the queue.
func (d *Dispatcher) spaceFreed() {
	if d.sp == nil {
		return
	}
	select {
	case d.sp.space <- struct{}{}:
	default:
	}
}

// replayBatch bounds one read of the spool.
const replayBatch = 1000

// replay is the replayer goroutine: it takes the spool's lease, reads the
// spool back in order into the memory queue (as space allows) and writes
// the acknowledgements the sender reports. It ends when ctx ends, or once
// the dispatcher is stopping and the spool has nothing left to read.
func (d *Dispatcher) replay(ctx context.Context) {
	p := d.sp
	defer d.wakeSender() // after done is closed: the sender may be waiting for it
	defer close(p.done)
	select {
	case p.sh.lease <- struct{}{}: // free: replay, even if Stop came first
	default:
		select {
		case p.sh.lease <- struct{}{}:
		case <-ctx.Done():
			return
		case <-d.flushReq:
			return // stopped before it was this dispatcher's turn
		}
	}
	// The lease is given back by closeSpool, once the sender has ended:
	// the next holder must not replay what this one still delivers.
	p.sh.sp.Rewind() // a previous holder may have read past what it delivered
	d.mu.Lock()
	p.holder, p.leased = true, true
	d.mu.Unlock()
	acked := int64(-1)
	lastEnd := int64(0) // end of the last entries queued
	ack := func() {
		if pos := p.acker.pos.Load(); pos > acked {
			if err := p.sh.sp.Ack(pos); err != nil {
				d.log.Error("acknowledging the spool", "err", err)
			}
			acked = pos
		}
	}
	backoff := d.cfg.MinBackoff
	for {
		ack()
		d.mu.Lock()
		// A batch in flight that was spooled is either delivered (and
		// then skipped) or let go: read past it only once that is known.
		blocked := p.inflightSpooled
		p.held = !blocked
		d.mu.Unlock()
		if blocked {
			if !d.waitSpool(ctx, -1, p.space) {
				return
			}
			continue
		}
		if !p.healthy.Load() && p.acker.pos.Load() < lastEnd {
			// Loki is failing and replayed entries are in memory: wait
			// until they are delivered or a push succeeds.
			d.mu.Lock()
			p.held = false
			d.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-p.acker.sig:
			}
			continue
		}
		entries, end, err := p.sh.sp.ReadEntries(replayBatch, d.cfg.BatchSize)
		if err != nil || len(entries) == 0 {
			d.mu.Lock()
			p.held = false
			if err == nil {
				d.resumeLocked()
			}
			stopping := d.stopping
			d.mu.Unlock()
			if err == nil && end > lastEnd && p.acker.pos.Load() >= lastEnd {
				// Only damaged data was read past what was delivered:
				// acknowledge it, or the spool never drains.
				lastEnd = end
				p.acker.Ack(end, true)
				continue
			}
			if err != nil {
				d.log.Error("reading the spool back; retrying", "err", err, "wait", backoff)
				if !d.waitSpool(ctx, backoff, nil) {
					return
				}
				backoff = min(2*backoff, d.cfg.MaxBackoff)
				continue
			}
			backoff = d.cfg.MinBackoff
			if stopping {
				return
			}
			// Wait here, not in a goroutine per wait: an idle endpoint
			// costs the replayer alone.
			appended, closed := p.sh.sp.Signals()
			if p.sh.sp.Unread() {
				continue
			}
			select {
			case <-ctx.Done():
				return
			case <-closed:
				return
			case <-appended:
			case <-p.acker.sig:
			case <-d.flushReq:
			}
			continue
		}
		if entries = d.skipDelivered(entries); len(entries) == 0 {
			continue // the next read, empty or not, acknowledges end
		}
		entries[len(entries)-1].Offset = max(entries[len(entries)-1].Offset, end)
		for i := range entries {
			entries[i].Acker = p.acker
		}
		lastEnd = end
		if !d.queueReplayed(ctx, entries) {
			return
		}
		p.m.replayed.Add(float64(len(entries)))
	}
}

// queueReplayed puts replayed entries into the memory queue, waiting for
// room; it reports false when ctx ended first.
func (d *Dispatcher) queueReplayed(ctx context.Context, entries []Entry) bool {
	p := d.sp
	for len(entries) > 0 {
		d.mu.Lock()
		n := 0
		for n < len(entries) {
			size := entries[n].size()
			if d.queue.len() > 0 && d.queued+size > d.cfg.QueueBytes {
				break
			}
			if d.queue.len() == 0 {
				d.oldest = d.now()
			}
			d.queue.push(entries[n])
			d.queued += size
			n++
		}
		entries = entries[n:]
		if len(entries) == 0 {
			p.held = false
			d.resumeLocked()
		}
		d.m.queueBytes.Set(float64(d.queued))
		d.m.queueEntries.Set(float64(d.queue.len()))
		d.mu.Unlock()
		if n > 0 {
			d.wakeSender()
		}
		if len(entries) == 0 {
			return true
		}
		if !d.waitSpool(ctx, -1, p.space) {
			return false
		}
	}
	return true
}

// waitSpool waits for ch, or for wait when it is not negative, writing
// acknowledgements meanwhile. It reports false when ctx ended.
func (d *Dispatcher) waitSpool(ctx context.Context, wait time.Duration, ch <-chan struct{}) bool {
	p := d.sp
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
		case <-p.acker.sig:
			if pos := p.acker.pos.Load(); pos > 0 {
				if err := p.sh.sp.Ack(pos); err != nil {
					d.log.Error("acknowledging the spool", "err", err)
				}
			}
		}
	}
}

// closeSpool ends d's use of its spool after the sender and the replayer
// ended: the last acknowledgement is written, the spool synced, and d's
// share of it released.
func (d *Dispatcher) closeSpool() {
	p := d.sp
	if pos := p.acker.pos.Load(); pos > 0 {
		if err := p.sh.sp.Ack(pos); err != nil && !errors.Is(err, ErrStopped) {
			d.log.Error("acknowledging the spool", "err", err)
		}
	}
	if err := p.sh.sp.Sync(); err != nil {
		d.log.Error("syncing the spool", "err", err)
	}
	d.spools.metrics.release(d.cfg.Endpoint(), d.cfg.TenantID)
	d.mu.Lock()
	leased := p.leased
	p.holder, p.leased = false, false
	d.mu.Unlock()
	if leased {
		<-p.sh.lease
	}
	p.release()
}
