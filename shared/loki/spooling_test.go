package loki_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/logferry/logferry/shared/loki"
	"github.com/logferry/logferry/shared/spool"
)

// flakyLoki is a fake Loki on 127.0.0.1 that can be down (503), can hold
// pushes until released, and records every line it accepted per stream, in
// arrival order.
type flakyLoki struct {
	srv     *httptest.Server
	down    atomic.Bool
	fail    atomic.Int64  // the next fail pushes get a 503
	gate    chan struct{} // when non-nil, pushes wait for it to be closed
	pushes  atomic.Int64
	mu      sync.Mutex
	streams map[string][]string
	total   int
}

func newFlakyLoki(t *testing.T) *flakyLoki {
	t.Helper()
	f := &flakyLoki{streams: map[string][]string{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.Listener.Close()
	f.srv.Listener = ln
	f.srv.Start()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *flakyLoki) serve(w http.ResponseWriter, r *http.Request) {
	f.pushes.Add(1)
	f.mu.Lock()
	gate := f.gate
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
	}
	if f.down.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	if f.fail.Add(-1) >= 0 {
		http.Error(w, "failing", http.StatusServiceUnavailable)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req loki.PushRequest
	if err := req.Unmarshal(raw); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	for _, s := range req.Streams {
		for _, e := range s.Entries {
			f.streams[s.Labels] = append(f.streams[s.Labels], e.Line)
			f.total++
		}
	}
	f.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (f *flakyLoki) url() string { return f.srv.URL + "/loki/api/v1/push" }

func (f *flakyLoki) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.total
}

func (f *flakyLoki) hold() {
	f.mu.Lock()
	f.gate = make(chan struct{})
	f.mu.Unlock()
}

func (f *flakyLoki) release() {
	f.mu.Lock()
	if f.gate != nil {
		close(f.gate)
		f.gate = nil
	}
	f.mu.Unlock()
}

// checkExactlyOnce checks that stream i received lines "s<i>-<n>" for n in
// [0, want[i]) once each, in that order.
func (f *flakyLoki) checkExactlyOnce(t *testing.T, want map[string]int) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for stream, n := range want {
		got := f.streams[stream]
		if len(got) != n {
			t.Errorf("stream %s: %d lines, want %d", stream, len(got), n)
		}
		for i := 0; i < len(got) && i < n; i++ {
			if w := lineOf(stream, i); got[i] != w {
				t.Errorf("stream %s: line %d is %q, want %q (duplicated or out of order)", stream, i, got[i], w)
				break
			}
		}
	}
}

func lineOf(stream string, i int) string { return fmt.Sprintf("%s line %06d", stream, i) }

var testStreams = []string{`{app="a"}`, `{app="b"}`, `{app="c"}`}

// producer hands lines to a dispatcher, round robin over testStreams,
// continuing each stream's numbering.
type producer struct {
	next  map[string]int
	ts    int64
	acker *lastAck // when set, the Acker of every entry, Offset its time
}

// lastAck records the latest offset acknowledged.
type lastAck struct{ off atomic.Int64 }

func (a *lastAck) Ack(off int64, _ bool) { a.off.Store(off) }

func newProducer() *producer { return &producer{next: map[string]int{}, ts: time.Now().UnixNano()} }

func (p *producer) handle(t *testing.T, d *loki.Dispatcher, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		s := testStreams[i%len(testStreams)]
		p.ts++
		e := loki.Entry{Stream: s, TimeNano: p.ts, Line: lineOf(s, p.next[s])}
		if p.acker != nil {
			e.Acker, e.Offset = p.acker, p.ts
		}
		if err := d.Handle(e); err != nil {
			t.Fatalf("Handle: %v", err)
		}
		p.next[s]++
	}
}

func (p *producer) total() int {
	n := 0
	for _, v := range p.next {
		n += v
	}
	return n
}

func spoolConfig(url string) loki.Config {
	c := loki.DefaultConfig()
	c.URL = url
	c.BatchSize = 4 << 10
	c.QueueBytes = 8 << 10
	c.BatchWait = 10 * time.Millisecond
	c.MinBackoff = 5 * time.Millisecond
	c.MaxBackoff = 40 * time.Millisecond
	c.Retries = 1
	c.Timeout = 5 * time.Second
	return c
}

// spoolSet opens one spool in dir for every configuration; opened records
// the spools opened, for their stats.
func spoolSet(t *testing.T, dir string, reg prometheus.Registerer) (*loki.SpoolSet, *[]*spool.Spool) {
	var opened []*spool.Spool
	var mu sync.Mutex
	set := loki.NewSpoolSet(func(loki.Config) string { return dir }, func(key string, _ loki.Config) (loki.Spool, error) {
		c := spool.DefaultConfig()
		c.Dir = key
		c.SegmentBytes = 16 << 10
		c.MaxBytes = 64 << 20
		s, err := spool.Open(c, nil, nil)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		opened = append(opened, s)
		mu.Unlock()
		return s, nil
	}, loki.NewSpoolMetrics(reg))
	return set, &opened
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func wantAll(p *producer) map[string]int {
	w := map[string]int{}
	for _, s := range testStreams {
		w[s] = p.next[s]
	}
	return w
}

func stop(t *testing.T, d *loki.Dispatcher, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_ = d.Stop(ctx)
	d.Release()
}

func TestSpoolLokiDownThenUp(t *testing.T) {
	f := newFlakyLoki(t)
	f.down.Store(true)
	reg := prometheus.NewRegistry()
	set, opened := spoolSet(t, t.TempDir(), reg)
	d, err := loki.New(spoolConfig(f.url()), loki.NewMetrics(reg), nil, loki.WithSpools(set))
	if err != nil {
		t.Fatal(err)
	}
	p := newProducer()
	p.handle(t, d, 3000) // far more than the queue holds
	waitUntil(t, "spooling mode", func() bool {
		return testutil.ToFloat64(spoolingGauge(t, reg)) == 1
	})
	// While Loki is down the sender backs off: no busy loop.
	before := f.pushes.Load()
	time.Sleep(200 * time.Millisecond)
	if n := f.pushes.Load() - before; n > 20 {
		t.Errorf("%d pushes in 200ms while Loki is down (max backoff 40ms): busy loop", n)
	}
	p.handle(t, d, 1000)
	f.down.Store(false)
	p.handle(t, d, 1000)
	waitUntil(t, "every entry delivered", func() bool { return f.count() >= p.total() })
	waitUntil(t, "spooling mode to end", func() bool {
		return testutil.ToFloat64(spoolingGauge(t, reg)) == 0
	})
	p.handle(t, d, 500) // straight to memory again
	waitUntil(t, "the last entries", func() bool { return f.count() >= p.total() })
	stop(t, d, 10*time.Second)
	f.checkExactlyOnce(t, wantAll(p))
	st := (*opened)[0].Stats()
	if st.Appended == 0 || st.Acked != st.Appended {
		t.Errorf("spool appended %d, acked %d: want some, all acknowledged", st.Appended, st.Acked)
	}
	t.Logf("spooled %d, replayed %d, acked %d of %d entries", st.Appended, st.Replayed, st.Acked, p.total())
}

func spoolingGauge(t *testing.T, reg *prometheus.Registry) prometheus.Collector {
	t.Helper()
	return gaugeFrom{reg: reg, name: "logferry_loki_spooling"}
}

// gaugeFrom reads one gauge back from a registry, for testutil.ToFloat64.
type gaugeFrom struct {
	reg  *prometheus.Registry
	name string
}

func (g gaugeFrom) Describe(chan<- *prometheus.Desc) {}

func (g gaugeFrom) Collect(ch chan<- prometheus.Metric) {
	mfs, _ := g.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != g.name {
			continue
		}
		for _, m := range mf.GetMetric() {
			ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(g.name, "", nil, nil), prometheus.GaugeValue, m.GetGauge().GetValue())
			return
		}
	}
	ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(g.name, "", nil, nil), prometheus.GaugeValue, -1)
}

func TestSpoolQueueOverflowKeepsOrder(t *testing.T) {
	f := newFlakyLoki(t)
	f.hold() // Loki answers nothing: the queue fills up
	set, opened := spoolSet(t, t.TempDir(), nil)
	cfg := spoolConfig(f.url())
	cfg.Retries = 0 // the held push is not given up: only the queue overflows
	d, err := loki.New(cfg, nil, nil, loki.WithSpools(set))
	if err != nil {
		t.Fatal(err)
	}
	p := newProducer()
	p.handle(t, d, 2000)
	if (*opened)[0].Stats().Appended == 0 {
		t.Fatal("nothing was spooled although the queue overflowed")
	}
	f.release()
	p.handle(t, d, 500)
	waitUntil(t, "every entry delivered", func() bool { return f.count() >= p.total() })
	stop(t, d, 10*time.Second)
	f.checkExactlyOnce(t, wantAll(p))
}

func TestSpoolRestartResumesWithoutDuplicates(t *testing.T) {
	f := newFlakyLoki(t)
	dir := t.TempDir()
	p := newProducer()

	set, opened1 := spoolSet(t, dir, nil)
	d, err := loki.New(spoolConfig(f.url()), nil, nil, loki.WithSpools(set))
	if err != nil {
		t.Fatal(err)
	}
	p.acker = &lastAck{}
	p.handle(t, d, 150) // delivered
	// Acknowledged, not only received: a batch Loki accepted while it was
	// also spooled (the queue overflowing during its push) is skipped by
	// the replay only within one process.
	waitUntil(t, "the first entries acknowledged", func() bool { return p.acker.off.Load() == p.ts })
	p.acker = nil
	f.down.Store(true)
	// The queue overflows while a batch is in flight: the batch, the queue
	// and what follows go to the spool in order.
	p.handle(t, d, 3050)
	if (*opened1)[0].Stats().Appended == 0 {
		t.Fatal("nothing spooled")
	}
	stop(t, d, 100*time.Millisecond)
	if got := f.count(); got != 150 {
		t.Fatalf("Loki has %d entries while down, want 150", got)
	}

	// A new process: same directory, Loki back.
	f.down.Store(false)
	set2, opened := spoolSet(t, dir, nil)
	d2, err := loki.New(spoolConfig(f.url()), nil, nil, loki.WithSpools(set2))
	if err != nil {
		t.Fatal(err)
	}
	p.handle(t, d2, 600) // behind the spooled ones
	waitUntil(t, "every entry delivered", func() bool { return f.count() >= p.total() })
	stop(t, d2, 10*time.Second)
	f.checkExactlyOnce(t, wantAll(p))
	st := (*opened)[0].Stats()
	t.Logf("after the restart: replayed %d, acked %d, appended %d", st.Replayed, st.Acked, st.Appended)
	if st.Replayed < 3050 {
		t.Errorf("replayed %d entries after the restart, want at least the 3050 spooled", st.Replayed)
	}
}

func TestSpoolReplayedBatchIsRetriedNotRespooled(t *testing.T) {
	dir := t.TempDir()
	c := spool.DefaultConfig()
	c.Dir = dir
	sp, err := spool.Open(c, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := newProducer()
	var entries []loki.Entry
	for i := 0; i < 300; i++ {
		s := testStreams[i%len(testStreams)]
		p.ts++
		entries = append(entries, loki.Entry{Stream: s, TimeNano: p.ts, Line: lineOf(s, p.next[s])})
		p.next[s]++
	}
	if err := sp.Overflow(entries, "test"); err != nil {
		t.Fatal(err)
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}

	f := newFlakyLoki(t)
	f.fail.Store(6) // well past Retries=1: every replayed batch fails again first
	set, opened := spoolSet(t, dir, nil)
	d, err := loki.New(spoolConfig(f.url()), nil, nil, loki.WithSpools(set))
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the spooled entries delivered", func() bool { return f.count() >= 300 })
	p.handle(t, d, 100) // fits in the queue
	waitUntil(t, "every entry delivered", func() bool { return f.count() >= p.total() })
	st := (*opened)[0].Stats()
	stop(t, d, 10*time.Second)
	f.checkExactlyOnce(t, wantAll(p))
	if st.Appended != 0 {
		t.Errorf("%d entries were appended to the spool again; want 0 (replayed entries are retried, not re-spooled)", st.Appended)
	}
	if f.pushes.Load() < 7 {
		t.Errorf("%d pushes, want the 6 failures and a success at least", f.pushes.Load())
	}
}

func TestSpoolSharedByTwoConfigurations(t *testing.T) {
	f := newFlakyLoki(t)
	f.down.Store(true)
	set, opened := spoolSet(t, t.TempDir(), nil)
	cfgA := spoolConfig(f.url())
	cfgB := cfgA
	cfgB.BatchSize = 2 << 10 // another configuration of the same endpoint
	a, err := loki.New(cfgA, nil, nil, loki.WithSpools(set))
	if err != nil {
		t.Fatal(err)
	}
	b, err := loki.New(cfgB, nil, nil, loki.WithSpools(set))
	if err != nil {
		t.Fatal(err)
	}
	if len(*opened) != 1 {
		t.Fatalf("%d spools opened for one endpoint, want 1", len(*opened))
	}
	// a's streams and b's streams are apart, as two containers' are.
	pa, pb := newProducer(), newProducer()
	for i := 0; i < 4; i++ {
		pa.handle(t, a, 500)
		handleAs(t, pb, b, 500, "b-")
	}
	f.down.Store(false)
	pa.handle(t, a, 300)
	handleAs(t, pb, b, 300, "b-")
	waitUntil(t, "every entry delivered", func() bool { return f.count() >= pa.total()+pb.total() })
	stop(t, a, 10*time.Second)
	stop(t, b, 10*time.Second)
	f.checkExactlyOnce(t, wantAll(pa))
	want := map[string]int{}
	for _, s := range testStreams {
		want["b-"+s] = pb.next["b-"+s]
	}
	f.checkExactlyOnce(t, want)
}

// handleAs is producer.handle with stream names prefixed.
func handleAs(t *testing.T, p *producer, d *loki.Dispatcher, n int, prefix string) {
	t.Helper()
	for i := 0; i < n; i++ {
		s := prefix + testStreams[i%len(testStreams)]
		p.ts++
		if err := d.Handle(loki.Entry{Stream: s, TimeNano: p.ts, Line: lineOf(s, p.next[s])}); err != nil {
			t.Fatalf("Handle: %v", err)
		}
		p.next[s]++
	}
}

// While Loki is down, spooled entries count as resolved: their Ackers hear
// of them (the plugin's streams end on that), in hand-over order, although
// the sender keeps retrying a replayed batch.
func TestSpoolResolvesAckersWhileLokiIsDown(t *testing.T) {
	f := newFlakyLoki(t)
	f.down.Store(true)
	set, _ := spoolSet(t, t.TempDir(), nil)
	cfg := spoolConfig(f.url())
	cfg.MaxBackoff = time.Second // the wait between retries is no bound on the acks
	d, err := loki.New(cfg, nil, nil, loki.WithSpools(set))
	if err != nil {
		t.Fatal(err)
	}
	p := newProducer()
	a := &orderedAck{t: t}
	for round := 0; round < 5; round++ {
		for i := 0; i < 600; i++ {
			s := testStreams[i%len(testStreams)]
			p.ts++
			if err := d.Handle(loki.Entry{Stream: s, TimeNano: p.ts, Line: lineOf(s, p.next[s]), Acker: a, Offset: p.ts}); err != nil {
				t.Fatal(err)
			}
			p.next[s]++
		}
		last := p.ts
		waitUntil(t, "every entry resolved", func() bool { return a.last.Load() == last })
	}
	if f.count() != 0 {
		t.Fatalf("Loki is down but has %d entries", f.count())
	}
	f.down.Store(false)
	waitUntil(t, "every entry delivered", func() bool { return f.count() >= p.total() })
	stop(t, d, 10*time.Second)
	f.checkExactlyOnce(t, wantAll(p))
}

// orderedAck fails the test when offsets go backwards.
type orderedAck struct {
	t    *testing.T
	last atomic.Int64
}

func (a *orderedAck) Ack(off int64, _ bool) {
	if prev := a.last.Swap(off); off < prev {
		a.t.Errorf("Ack(%d) after Ack(%d): out of order", off, prev)
	}
}

// The sidecar hands lines with TryHandle: a full queue spools them, and a
// spool that refuses (full, policy refuse) leaves them with the producer,
// neither dropped nor counted, so that it offers them again later.
func TestSpoolTryHandleWaitsWhenTheSpoolRefuses(t *testing.T) {
	f := newFlakyLoki(t)
	f.hold()
	dir := t.TempDir()
	var sp *spool.Spool
	set := loki.NewSpoolSet(func(loki.Config) string { return dir }, func(key string, _ loki.Config) (loki.Spool, error) {
		c := spool.DefaultConfig()
		c.Dir, c.SegmentBytes, c.MaxBytes, c.Full = key, 4<<10, 32<<10, spool.Refuse
		var err error
		sp, err = spool.Open(c, nil, nil)
		return sp, err
	}, nil)
	reg := prometheus.NewRegistry()
	cfg := spoolConfig(f.url())
	cfg.Retries = 0
	d, err := loki.New(cfg, loki.NewMetrics(reg), nil, loki.WithSpools(set))
	if err != nil {
		t.Fatal(err)
	}
	p := newProducer()
	accepted := 0
	var refused error
	for i := 0; i < 10000 && refused == nil; i++ {
		s := testStreams[i%len(testStreams)]
		p.ts++
		refused = d.TryHandle(loki.Entry{Stream: s, TimeNano: p.ts, Line: lineOf(s, p.next[s])})
		if refused == nil {
			p.next[s]++
			accepted++
		}
	}
	f.release() // before any Fatal: the server's Close waits for held pushes
	if !errors.Is(refused, loki.ErrQueueFull) {
		t.Errorf("TryHandle never refused (%d accepted): %v", accepted, refused)
	}
	if st := sp.Stats(); st.Appended == 0 || st.Refused == 0 {
		t.Errorf("spool stats %+v: want entries appended, then refused", st)
	}
	if n, err := testutil.GatherAndCount(reg, "logferry_loki_entries_dropped_total"); err != nil || n != 0 {
		t.Errorf("%d dropped series (%v); TryHandle drops nothing", n, err)
	}
	waitUntil(t, "every accepted entry delivered", func() bool { return f.count() >= accepted })
	stop(t, d, 10*time.Second)
	f.checkExactlyOnce(t, wantAll(p))
}

// A queue the spool could not take in one append is a configuration error
// that names the option, not spooling that fails at the first outage.
func TestSpoolSmallerThanTheQueueIsRefused(t *testing.T) {
	dir := t.TempDir()
	set := loki.NewSpoolSet(func(loki.Config) string { return dir }, func(key string, _ loki.Config) (loki.Spool, error) {
		c := spool.DefaultConfig()
		c.Dir, c.SegmentBytes, c.MaxBytes = key, 4<<10, 32<<10
		return spool.Open(c, nil, nil)
	}, nil)
	cfg := spoolConfig("http://127.0.0.1:1/loki/api/v1/push")
	cfg.QueueBytes = 20 << 10
	d, err := loki.New(cfg, nil, nil, loki.WithSpools(set))
	if err == nil {
		stop(t, d, time.Second)
		t.Fatal("a 20 KiB queue over a 32 KiB spool was accepted")
	}
	if !strings.HasPrefix(err.Error(), "loki-queue-size: ") {
		t.Fatalf("error does not name loki-queue-size: %v", err)
	}
	cfg.QueueBytes = 16 << 10
	d, err = loki.New(cfg, nil, nil, loki.WithSpools(set)) // the spool was released: it opens again
	if err != nil {
		t.Fatal(err)
	}
	stop(t, d, time.Second)
}
