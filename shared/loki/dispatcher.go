package loki

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// ErrStopped is returned by Handle after Stop or StopNow.
var ErrStopped = errors.New("dispatcher stopped")

// ErrQueueFull is returned by Handle when the memory queue is full and the
// overflow policy did not take the entry.
var ErrQueueFull = errors.New("queue full")

// spill is where the send path puts what neither the memory queue nor Loki
// takes, and what it tells of every batch, so that what it spills keeps its
// place in the order of each Acker's entries. A spooler (WithSpools) spills
// to a disk spool and replays it; noSpool gives entries to the Overflow
// policy (WithOverflow) or drops and counts them.
//
// Contract. admit is called by producers, concurrently; close by Stop and
// StopNow (maybe both) once the sender goroutine has ended; every other
// method by the sender only. A batch's calls come in this order: take,
// which moves it from the queue; sent when Loki accepted it, or
// failed after each push that failed; keep when the sender gives it up;
// batchDone once it is resolved or let go. No method waits on the network;
// admit and keep may wait on the disk. Ackers are told from the sender's
// goroutine only, so each hears in order. The spill owns the entries it
// was given; the batch stays the sender's.
type spill interface {
	// admit takes a live entry from Handle (overflow: it may be given to
	// the overflow policy or dropped when it does not fit) or TryHandle
	// (then ErrQueueFull, nothing counted). It returns ErrStopped after
	// Stop began; wake asks for the sender.
	admit(e Entry, overflow bool) (wake bool, err error)
	// take moves the next batch from the memory queue into b for the
	// sender to push (memQueue.take) and notes it as the batch in flight,
	// in one step with respect to admit: an admit that begins spooling
	// finds each live entry in the queue or in flight, never in neither.
	take(b *batch)
	// sent is told that Loki accepted b (refusing some entries for good,
	// perhaps).
	sent(b *batch)
	// failed is told that a push of b failed and is to be retried. done:
	// b's entries are resolved, let b go; trimmed: entries were taken out
	// of b, encode it again.
	failed(b *batch) (done, trimmed bool)
	// mayGiveUp reports whether b, whose retries ran out, may be given up
	// (keep); if not, the sender retries it.
	mayGiveUp(b *batch) bool
	// keep takes b, given up for reason: it resolves what it keeps as
	// delivered, drops and counts what it cannot keep, and lets entries a
	// spool holds already (Durable) go unresolved.
	keep(b *batch, reason string)
	// batchDone is told that b was resolved or let go.
	batchDone(b *batch)
	// resolve tells the Ackers of spilled entries that are due. The sender
	// calls it after every wake.
	resolve()
	// ended reports whether the spill's own goroutine (if any) ended: a
	// stopping sender waits for that before it ends.
	ended() bool
	// close waits for the spill's goroutine and releases what it holds;
	// calls after the first do nothing.
	close()
}

// Dispatcher ships entries to one Loki endpoint. One Dispatcher serves every
// container that uses the same endpoint configuration. Handle never waits on
// the network: entries go into a bounded memory queue that one goroutine,
// owned by the Dispatcher, turns into batches and pushes one at a time, so
// the entries of one Acker are resolved in order.
type Dispatcher struct {
	cfg     Config
	client  *client
	log     *slog.Logger
	metrics *Metrics
	m       *endpointMetrics
	queue   *memQueue
	spill   spill // built by New from the options: a spooler or noSpool

	// Set by the options, read by New.
	overflow Overflow  // WithOverflow
	spools   *SpoolSet // WithSpools
	// onDrained: WithBacklogDrained.
	onDrained func()

	wake     chan struct{} // cap 1: something changed for the sender
	flushReq chan struct{} // closed by Stop: send everything now
	cancel   context.CancelFunc
	done     chan struct{}
	stopOnce sync.Once
}

// Option changes a Dispatcher at construction.
type Option func(*Dispatcher)

// New validates cfg and starts a Dispatcher. metrics may be shared by many
// dispatchers; log gets the endpoint added.
func New(cfg Config, metrics *Metrics, log *slog.Logger, opts ...Option) (*Dispatcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &Dispatcher{
		cfg:      cfg,
		client:   c,
		log:      log.With("endpoint", cfg.Endpoint(), "tenant", cfg.TenantID),
		metrics:  metrics,
		m:        metrics.acquire(cfg.Endpoint(), cfg.TenantID),
		wake:     make(chan struct{}, 1),
		flushReq: make(chan struct{}),
		cancel:   cancel,
		done:     make(chan struct{}),
	}
	metrics.settings(cfg)
	d.queue = newMemQueue(cfg, d.m)
	for _, o := range opts {
		o(d)
	}
	if d.spools != nil {
		sp, err := newSpooler(d)
		if err != nil {
			cancel()
			c.close()
			metrics.release(cfg.Endpoint(), cfg.TenantID)
			return nil, err
		}
		d.spill = sp
		go sp.r.run(ctx)
	} else {
		d.spill = noSpool{queue: d.queue, m: d.m, overflow: d.overflow}
	}
	go d.run(ctx)
	return d, nil
}

// Config returns the configuration the Dispatcher was built with.
func (d *Dispatcher) Config() Config { return d.cfg }

// Handle queues e for Loki. It never blocks on the network. When the queue
// is full, e goes to the overflow policy; if that does not keep it, Handle
// counts it as dropped and returns ErrQueueFull.
func (d *Dispatcher) Handle(e Entry) error {
	return d.handle(e, true)
}

// TryHandle is Handle for a producer that can wait: when the queue is full
// it returns ErrQueueFull and neither drops nor counts e, so the producer
// can offer it again later.
func (d *Dispatcher) TryHandle(e Entry) error {
	return d.handle(e, false)
}

func (d *Dispatcher) handle(e Entry, overflow bool) error {
	wake, err := d.spill.admit(e, overflow)
	if errors.Is(err, ErrStopped) {
		d.m.dropped.WithLabelValues(ReasonStopped).Inc()
	}
	if wake {
		d.wakeSender()
	}
	return err
}

func (d *Dispatcher) wakeSender() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *Dispatcher) run(ctx context.Context) {
	defer close(d.done)
	b := newBatch()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	flushing := false
	flushReq := d.flushReq
	for {
		d.spill.resolve()
		send, wait := d.queue.ready(flushing)
		if !send {
			if flushing && d.spill.ended() {
				// Stop was called and the queue is empty: done.
				return
			}
			var timeout <-chan time.Time
			if wait > 0 {
				timer.Reset(wait)
				timeout = timer.C
			}
			select {
			case <-ctx.Done():
				timer.Stop()
				d.abandon(b, ReasonShutdown)
				return
			case <-flushReq:
				flushing, flushReq = true, nil
			case <-d.wake:
			case <-timeout:
			}
			timer.Stop()
			continue
		}
		d.spill.take(b)
		if d.onDrained != nil && d.queue.backlogDrained() {
			d.onDrained()
		}
		d.send(ctx, b)
		d.spill.batchDone(b)
		b.reset()
		if ctx.Err() != nil {
			d.abandon(b, ReasonShutdown)
			return
		}
		select {
		case <-flushReq:
			flushing, flushReq = true, nil
		default:
		}
	}
}

// send pushes b until Loki accepts it, refuses it, the retries run out or ctx
// ends; it resolves the batch's acknowledgements either way. What counts as
// Loki's acknowledgement, and which failures are retried, is the client's
// answer (client.answer); a 400 is an acknowledgement of what it does not
// name (refusal.go).
func (d *Dispatcher) send(ctx context.Context, b *batch) {
	body, err := b.encode()
	if err != nil {
		d.log.Error("dropping batch that cannot be encoded", "entries", len(b.entries), "err", err)
		d.drop(b, ReasonEncode)
		return
	}
	for attempt := 0; ; attempt++ {
		res := d.client.push(ctx, body)
		d.observe(res)
		for res.kind == refusalLabels {
			// Loki stored nothing: leave out the streams whose labels do
			// not parse and push the rest at once.
			if res = d.splitOffUnparsable(ctx, b); res.err != nil {
				break
			}
			if len(b.streams()) == 0 {
				d.delivered(b, 0, nil)
				return
			}
			if body, err = b.encode(); err != nil {
				d.log.Error("dropping batch that cannot be encoded", "entries", len(b.entries), "err", err)
				d.drop(b, ReasonEncode)
				return
			}
			res = d.client.push(ctx, body)
			d.observe(res)
		}
		switch {
		case res.err == nil:
			d.delivered(b, len(body), nil)
			return
		case res.kind == refusalPartial:
			if res.truncated {
				d.log.Warn("Loki's answer naming refused entries was cut; some may be counted as sent", "read", maxRefusalBody)
			}
			d.log.Warn("Loki refused entries of a batch and kept the rest; not sending it again", "status", res.status,
				"entries", len(b.entries), "err", res.err)
			d.delivered(b, len(body), res.refused)
			return
		case ctx.Err() != nil:
			d.spill.keep(b, ReasonShutdown)
			return
		case !res.retryable:
			d.log.Warn("Loki refused a batch; dropping it", "status", res.status, "reason", res.reason,
				"entries", len(b.entries), "err", res.err)
			d.drop(b, res.reason)
			return
		}
		if d.cfg.Retries > 0 && attempt >= d.cfg.Retries && d.spill.mayGiveUp(b) {
			d.log.Warn("giving up on a batch after retries", "retries", attempt, "entries", len(b.entries), "err", res.err)
			d.spill.keep(b, ReasonRetriesExhausted)
			return
		}
		if done, trimmed := d.spill.failed(b); done {
			return // durable now: the replay sends it
		} else if trimmed {
			if body, err = b.encode(); err != nil {
				d.log.Error("dropping batch that cannot be encoded", "entries", len(b.entries), "err", err)
				d.drop(b, ReasonEncode)
				return
			}
		}
		d.m.retries.WithLabelValues(res.status).Inc()
		wait := d.backoff(attempt, res.retryAfter)
		level := slog.LevelDebug
		if res.failure == failRedirect || res.failure == failAuth || res.failure == failTokenFile || res.failure == failUnexpected {
			// Not Loki being busy: the operator has something to fix.
			level = slog.LevelWarn
		}
		d.log.Log(ctx, level, "push failed; retrying", "status", res.status, "reason", res.failure,
			"attempt", attempt+1, "wait", wait, "err", res.err)
		t := time.NewTimer(wait)
	backoff:
		for {
			select {
			case <-ctx.Done():
				t.Stop()
				d.spill.keep(b, ReasonShutdown)
				return
			case <-d.wake:
				// Entries spooled meanwhile may be resolved now; the
				// queue is looked at again after this batch.
				d.spill.resolve()
			case <-t.C:
				break backoff
			}
		}
	}
}

// observe counts one push's outcome.
func (d *Dispatcher) observe(res pushResult) {
	d.m.pushDuration.WithLabelValues(res.status).Observe(res.duration.Seconds())
	if res.err != nil && res.failure != "" {
		d.m.pushFailures.WithLabelValues(res.failure).Inc()
	}
}

// splitOffUnparsable is told that Loki refused b whole because labels did
// not parse. It excludes from b the streams whose labels Loki cannot parse,
// asking Loki about each stream alone with a push that stores nothing
// (client.probe). A failed probe is returned, to be handled like a failed
// push.
func (d *Dispatcher) splitOffUnparsable(ctx context.Context, b *batch) pushResult {
	streams := b.streams()
	var bad []string
	if len(streams) == 1 {
		bad = streams
	} else {
		for _, s := range streams {
			res := d.client.probe(ctx, s)
			d.observe(res)
			switch {
			case res.err == nil:
			case res.kind == refusalLabels:
				bad = append(bad, s)
			default:
				return res
			}
		}
	}
	if len(bad) == 0 {
		return pushResult{status: "400", failure: failRefused, reason: "invalid_labels",
			err: errors.New("Loki could not parse the labels of a batch whose every stream it parses alone")}
	}
	for _, s := range bad {
		b.excluded[s] = true
	}
	d.log.Warn("Loki cannot parse the labels of streams; dropping their entries and sending the rest",
		"streams", len(bad), "first", bad[0])
	return pushResult{}
}

// delivered is told that Loki acknowledged b (wire: its request's size; 0
// when nothing was left to push), but for refused and the excluded streams.
// The producers are told delivered: Loki has what it took, and what it
// refused is final (it would refuse it again) and counted as dropped.
func (d *Dispatcher) delivered(b *batch, wire int, refused []refusal) {
	d.spill.sent(b)
	dropped := 0
	for _, r := range refusedCounts(b, refused) {
		d.m.dropped.WithLabelValues(r.reason).Add(float64(r.count))
		dropped += r.count
	}
	d.m.entriesSent.Add(float64(len(b.entries) - dropped))
	d.m.bytesSent.Add(float64(lineBytes(b)))
	if wire > 0 {
		d.m.wireBytesSent.Add(float64(wire))
		d.m.batchesSent.Inc()
	}
	b.resolve(true)
}

// refusedCounts turns what Loki refused of b into drop counts by reason, in
// the order Loki named them: an error about one entry counts as many
// entries as Loki says; an error about a stream counts that stream's
// entries in b (or, when the text names no stream of b, as many as Loki
// says). The excluded streams' entries count as invalid_labels. The total
// never exceeds b's entries.
func refusedCounts(b *batch, refused []refusal) []refusal {
	perStream := map[string]int{}
	excluded := 0
	for i := range b.entries {
		if b.pushed(&b.entries[i]) {
			perStream[b.entries[i].Stream]++
		} else {
			excluded++
		}
	}
	left := len(b.entries) - excluded
	var out []refusal
	add := func(reason string, n int) {
		if n <= 0 {
			return
		}
		for i := range out {
			if out[i].reason == reason {
				out[i].count += n
				return
			}
		}
		out = append(out, refusal{reason: reason, count: n})
	}
	add("invalid_labels", excluded)
	counted := map[string]bool{}
	for _, r := range refused {
		n := r.count
		if m, ok := perStream[r.stream]; ok && r.stream != "" {
			n = m
			if counted[r.stream] {
				n = 0
			}
			counted[r.stream] = true
		}
		n = min(n, left)
		left -= n
		add(r.reason, n)
	}
	return out
}

// lineBytes is the line bytes of b's pushed entries.
func lineBytes(b *batch) int {
	n := 0
	for i := range b.entries {
		if b.pushed(&b.entries[i]) {
			n += len(b.entries[i].Line)
		}
	}
	return n
}

// backoff is exponential from MinBackoff with full jitter in its upper half,
// capped at MaxBackoff. A Retry-After from Loki is honoured (up to
// MaxBackoff) when it asks for longer.
func (d *Dispatcher) backoff(attempt int, retryAfter time.Duration) time.Duration {
	b := d.cfg.MinBackoff
	for i := 0; i < attempt && b < d.cfg.MaxBackoff; i++ {
		b *= 2
	}
	b = min(b, d.cfg.MaxBackoff)
	b = b/2 + rand.N(b/2+1)
	if retryAfter > b {
		b = min(retryAfter, d.cfg.MaxBackoff)
	}
	return b
}

func (d *Dispatcher) drop(b *batch, reason string) { dropBatch(d.m, b, reason) }

// dropBatch counts b's entries as dropped for reason and resolves them.
func dropBatch(m *endpointMetrics, b *batch, reason string) {
	m.dropped.WithLabelValues(reason).Add(float64(len(b.entries)))
	b.resolve(false)
}

// abandon hands what is left in the queue to the spill.
func (d *Dispatcher) abandon(b *batch, reason string) {
	for {
		b.reset()
		more := d.queue.take(b)
		if len(b.entries) > 0 {
			d.spill.keep(b, reason)
			d.spill.batchDone(b)
		}
		if !more {
			return
		}
	}
}

// Stop stops accepting entries and sends what is queued. It returns when
// everything was resolved or when ctx ends; then retries are cancelled and
// what is left goes to the overflow policy or is dropped as "shutdown".
// With a spool (WithSpools) Stop also keeps replaying it until nothing is
// left to read; when ctx ends, live entries still in memory are spooled,
// replayed ones stay unacknowledged in the spool, the last acknowledgement
// is written and the spool synced, and this dispatcher's share of it is
// released (the last one closes it).
func (d *Dispatcher) Stop(ctx context.Context) error {
	d.beginStop()
	select {
	case <-d.done:
	case <-ctx.Done():
		d.cancel()
		<-d.done
	}
	d.finish()
	return ctx.Err()
}

// StopNow stops at once: the push in flight and its retries are cancelled,
// and everything not yet delivered goes to the overflow policy or is dropped.
func (d *Dispatcher) StopNow() {
	d.beginStop()
	d.cancel()
	<-d.done
	d.finish()
}

// Done is closed when the Dispatcher's goroutine has ended.
func (d *Dispatcher) Done() <-chan struct{} { return d.done }

func (d *Dispatcher) beginStop() {
	d.stopOnce.Do(func() {
		d.queue.close()
		close(d.flushReq)
	})
}

func (d *Dispatcher) finish() {
	d.cancel()
	d.client.close()
	d.spill.close()
}

// Release deletes this dispatcher's metric series if no other dispatcher
// for the same endpoint and tenant uses them. Call it once after Stop.
func (d *Dispatcher) Release() {
	d.metrics.release(d.cfg.Endpoint(), d.cfg.TenantID)
}
