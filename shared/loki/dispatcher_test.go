package loki

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
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeLoki is an httptest peer that decodes pushes and answers with the
// responses queued in answers (then 204).
type fakeLoki struct {
	t       testing.TB
	srv     *httptest.Server
	mu      sync.Mutex
	pushes  []PushRequest
	times   []time.Time
	headers []http.Header
	answers []func(w http.ResponseWriter) // consumed one per request
}

func newFakeLoki(t testing.TB, answers ...func(w http.ResponseWriter)) *fakeLoki {
	f := &fakeLoki{t: t, answers: answers}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeLoki) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	f.mu.Lock()
	f.times = append(f.times, time.Now())
	f.headers = append(f.headers, r.Header.Clone())
	var answer func(w http.ResponseWriter)
	if len(f.answers) > 0 {
		answer, f.answers = f.answers[0], f.answers[1:]
	}
	f.mu.Unlock()
	if answer != nil {
		answer(w)
		return
	}
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		f.t.Errorf("body is not snappy: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	var req PushRequest
	if err := req.Unmarshal(raw); err != nil {
		f.t.Errorf("body is not a PushRequest: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		f.t.Errorf("Content-Type %q", ct)
	}
	f.mu.Lock()
	f.pushes = append(f.pushes, req)
	f.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (f *fakeLoki) url() string { return f.srv.URL + "/loki/api/v1/push" }

func (f *fakeLoki) received() map[string][]EntryAdapter {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string][]EntryAdapter{}
	for _, p := range f.pushes {
		for _, s := range p.Streams {
			out[s.Labels] = append(out[s.Labels], s.Entries...)
		}
	}
	return out
}

func (f *fakeLoki) requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.times)
}

func status(code int, header ...string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(code)
		if code == http.StatusBadRequest {
			// What Loki's ingester answers when it refused 3 entries.
			_, _ = io.WriteString(w, "entry with timestamp 2020-01-01 00:00:00 +0000 UTC ignored, reason: 'entry too far behind, entry timestamp is: 2020-01-01T00:00:00Z, oldest acceptable timestamp is: 2024-01-01T00:00:00Z',\n"+
				"user 'fake', total ignored: 3 out of 3 for stream: {a=\"b\"}\n")
		}
	}
}

func testConfig(url string) Config {
	c := DefaultConfig()
	c.URL = url
	c.BatchWait = 10 * time.Millisecond
	c.MinBackoff = 10 * time.Millisecond
	c.MaxBackoff = 50 * time.Millisecond
	return c
}

// recorder is an Acker that remembers every acknowledgement.
type recorder struct {
	mu   sync.Mutex
	acks []int64
	ok   []bool
	last chan int64
}

func newRecorder() *recorder { return &recorder{last: make(chan int64, 1<<16)} }

func (r *recorder) Ack(off int64, delivered bool) {
	r.mu.Lock()
	r.acks = append(r.acks, off)
	r.ok = append(r.ok, delivered)
	r.mu.Unlock()
	r.last <- off
}

// waitAck waits until offset want was acknowledged or the test deadline.
func (r *recorder) waitAck(t *testing.T, want int64) {
	t.Helper()
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case off := <-r.last:
			if off >= want {
				return
			}
		case <-timeout.C:
			t.Fatalf("offset %d never acknowledged", want)
		}
	}
}

func TestDispatcherDeliversAcrossStreams(t *testing.T) {
	loki := newFakeLoki(t)
	reg := prometheus.NewRegistry()
	cfg := testConfig(loki.url())
	cfg.TenantID = "team-a"
	cfg.BatchSize = 4 << 10 // several batches
	d, err := New(cfg, NewMetrics(reg), nil)
	if err != nil {
		t.Fatal(err)
	}
	meta := []LabelPairAdapter{{Name: "container_id", Value: "abc"}}
	rec := newRecorder()
	const perStream, streams = 200, 7
	for i := 0; i < perStream; i++ {
		for s := 0; s < streams; s++ {
			e := Entry{
				Stream:   fmt.Sprintf(`{container_name="c%d", source="stdout"}`, s),
				TimeNano: 1700000000000000000 + int64(i),
				Line:     fmt.Sprintf("line %d of stream %d é", i, s),
				Metadata: meta,
			}
			if s == 0 {
				e.Acker, e.Offset = rec, int64(i)
			}
			if err := d.Handle(e); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := d.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := loki.received()
	if len(got) != streams {
		t.Fatalf("got %d streams, want %d", len(got), streams)
	}
	for s := 0; s < streams; s++ {
		entries := got[fmt.Sprintf(`{container_name="c%d", source="stdout"}`, s)]
		if len(entries) != perStream {
			t.Fatalf("stream %d: %d entries, want %d", s, len(entries), perStream)
		}
		for i, e := range entries {
			if want := fmt.Sprintf("line %d of stream %d é", i, s); e.Line != want {
				t.Fatalf("stream %d entry %d: %q, want %q", s, i, e.Line, want)
			}
			if e.Timestamp.Seconds != 1700000000 || e.Timestamp.Nanos != int32(i) {
				t.Fatalf("timestamp %+v", e.Timestamp)
			}
			if len(e.StructuredMetadata) != 1 || e.StructuredMetadata[0] != meta[0] {
				t.Fatalf("metadata %+v", e.StructuredMetadata)
			}
		}
	}
	if loki.requests() < 2 {
		t.Fatalf("%d pushes; the batch size should have split them", loki.requests())
	}
	if h := loki.headers[0].Get("X-Scope-OrgID"); h != "team-a" {
		t.Fatalf("X-Scope-OrgID %q", h)
	}
	rec.mu.Lock()
	for i := 1; i < len(rec.acks); i++ {
		if rec.acks[i] <= rec.acks[i-1] || !rec.ok[i] {
			t.Fatalf("acks not increasing or not delivered: %v %v", rec.acks, rec.ok)
		}
	}
	if last := rec.acks[len(rec.acks)-1]; last != perStream-1 {
		t.Fatalf("last ack %d, want %d", last, perStream-1)
	}
	rec.mu.Unlock()
	if n := testutil.ToFloat64(d.m.entriesSent); n != perStream*streams {
		t.Fatalf("entries sent metric %v", n)
	}
	d.Release()
}

func TestDispatcherRetriesAndDrops(t *testing.T) {
	tests := []struct {
		name        string
		answers     []func(http.ResponseWriter)
		retries     int
		wantPushes  int
		wantOK      bool
		wantDropped map[string]float64
		wantRetries map[string]float64
		minGap      time.Duration // between the first two requests
	}{
		{
			name:        "429 with Retry-After is retried after the asked delay",
			answers:     []func(http.ResponseWriter){status(429, "Retry-After", "1")},
			wantPushes:  2,
			wantOK:      true,
			wantRetries: map[string]float64{"429": 1},
			minGap:      time.Second,
		},
		{
			name:        "500 is retried",
			answers:     []func(http.ResponseWriter){status(500), status(503)},
			wantPushes:  3,
			wantOK:      true,
			wantRetries: map[string]float64{"500": 1, "503": 1},
		},
		{
			// Loki answered: the push is acknowledged, every entry named
			// is counted with Loki's reason, nothing is sent again.
			name:        "400 naming every entry is counted with Loki's reason and not retried",
			answers:     []func(http.ResponseWriter){status(400)},
			wantPushes:  1,
			wantOK:      true,
			wantDropped: map[string]float64{"too_far_behind": 3},
		},
		{
			name:        "403 is retried",
			answers:     []func(http.ResponseWriter){status(403)},
			wantPushes:  2,
			wantOK:      true,
			wantRetries: map[string]float64{"403": 1},
		},
		{
			name:        "404 is dropped with its status and not retried",
			answers:     []func(http.ResponseWriter){status(404)},
			wantPushes:  1,
			wantDropped: map[string]float64{"not_found": 3},
		},
		{
			name:        "retries run out",
			answers:     []func(http.ResponseWriter){status(500), status(500), status(500), status(500)},
			retries:     2,
			wantPushes:  3,
			wantDropped: map[string]float64{ReasonRetriesExhausted: 3},
			wantRetries: map[string]float64{"500": 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loki := newFakeLoki(t, tt.answers...)
			cfg := testConfig(loki.url())
			if tt.retries > 0 {
				cfg.Retries = tt.retries
			}
			cfg.MaxBackoff = 2 * time.Second // lets Retry-After: 1 through
			d, err := New(cfg, NewMetrics(prometheus.NewRegistry()), nil)
			if err != nil {
				t.Fatal(err)
			}
			rec := newRecorder()
			for i := 0; i < 3; i++ {
				if err := d.Handle(Entry{Stream: `{a="b"}`, TimeNano: int64(i + 1), Line: "x", Acker: rec, Offset: int64(i)}); err != nil {
					t.Fatal(err)
				}
			}
			rec.waitAck(t, 2)
			if err := d.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := loki.requests(); got != tt.wantPushes {
				t.Fatalf("%d requests, want %d", got, tt.wantPushes)
			}
			rec.mu.Lock()
			if ok := rec.ok[len(rec.ok)-1]; ok != tt.wantOK {
				t.Fatalf("delivered=%v, want %v", ok, tt.wantOK)
			}
			rec.mu.Unlock()
			for reason, want := range tt.wantDropped {
				if got := testutil.ToFloat64(d.m.dropped.WithLabelValues(reason)); got != want {
					t.Errorf("dropped{reason=%q} = %v, want %v", reason, got, want)
				}
			}
			for st, want := range tt.wantRetries {
				if got := testutil.ToFloat64(d.m.retries.WithLabelValues(st)); got != want {
					t.Errorf("retries{status=%q} = %v, want %v", st, got, want)
				}
			}
			if tt.minGap > 0 {
				if gap := loki.times[1].Sub(loki.times[0]); gap < tt.minGap {
					t.Errorf("retried after %v, Loki asked for %v", gap, tt.minGap)
				}
			}
			d.Release()
		})
	}
}

// TestDispatcherBoundedWhileLokiHangs: a Loki that accepts and never answers
// costs one timeout per attempt, and StopNow ends the wait at once.
func TestDispatcherBoundedWhileLokiHangs(t *testing.T) {
	release := make(chan struct{})
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	cfg := testConfig(srv.URL)
	cfg.Timeout = 100 * time.Millisecond
	cfg.Retries = 2
	d, err := New(cfg, NewMetrics(prometheus.NewRegistry()), nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	if err := d.Handle(Entry{Stream: `{a="b"}`, TimeNano: 1, Line: "x", Acker: rec, Offset: 1}); err != nil {
		t.Fatal(err)
	}
	rec.waitAck(t, 1) // three timed-out attempts, then given up
	if got := requests.Load(); got != 3 {
		t.Fatalf("%d attempts, want 3", got)
	}
	if got := testutil.ToFloat64(d.m.dropped.WithLabelValues(ReasonRetriesExhausted)); got != 1 {
		t.Fatalf("dropped %v, want 1", got)
	}
	if got := testutil.ToFloat64(d.m.retries.WithLabelValues("network")); got != 2 {
		t.Fatalf("retries{status=network} %v, want 2", got)
	}

	d.StopNow()

	// A second entry is in flight against the hanging server when StopNow
	// comes: StopNow cancels it and counts it.
	cfg.Timeout = time.Hour
	cfg.Retries = 0
	d2, err := New(cfg, NewMetrics(prometheus.NewRegistry()), nil)
	if err != nil {
		t.Fatal(err)
	}
	before := requests.Load()
	if err := d2.Handle(Entry{Stream: `{a="b"}`, TimeNano: 1, Line: "y"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return requests.Load() > before })
	d2.StopNow()
	if got := testutil.ToFloat64(d2.m.dropped.WithLabelValues(ReasonShutdown)); got != 1 {
		t.Fatalf("dropped on StopNow %v, want 1", got)
	}
	// Stop with a deadline is bounded the same way.
	d3, err := New(cfg, NewMetrics(prometheus.NewRegistry()), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d3.Handle(Entry{Stream: `{a="b"}`, TimeNano: 1, Line: "z"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := d3.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop against a hanging Loki: %v, want the deadline", err)
	}
	if got := testutil.ToFloat64(d3.m.dropped.WithLabelValues(ReasonShutdown)); got != 1 {
		t.Fatalf("dropped on Stop %v, want 1", got)
	}
	d.Release()
	d2.Release()
	d3.Release()
}

// waitFor polls cond until it holds, failing the test after 30 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatal("condition not met in 30 s")
		}
	}
}

// TestHandleNeverBlocksWhileLokiIsDown: with nothing listening, Handle keeps
// returning at once; past the queue bound entries are dropped and counted.
func TestHandleNeverBlocksWhileLokiIsDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // connection refused from now on
	cfg := testConfig("http://" + addr + "/loki/api/v1/push")
	cfg.Retries = 0 // forever
	cfg.BatchSize = 64 << 10
	cfg.QueueBytes = 1 << 20
	d, err := New(cfg, NewMetrics(prometheus.NewRegistry()), nil)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Repeat("x", 200)
	accepted, full := 0, 0
	const n = 100_000
	for i := 0; i < n; i++ {
		err := d.Handle(Entry{Stream: `{a="b"}`, TimeNano: int64(i), Line: line})
		switch {
		case err == nil:
			accepted++
		case errors.Is(err, ErrQueueFull):
			full++
		default:
			t.Fatal(err)
		}
	}
	if full == 0 || accepted == 0 {
		t.Fatalf("accepted %d, refused %d: the queue bound did not apply", accepted, full)
	}
	// Memory holds the queue plus the one batch in flight.
	if max := (cfg.QueueBytes+cfg.BatchSize)/(len(line)+16) + 1; accepted > max {
		t.Fatalf("accepted %d entries, more than the %d the queue and one batch hold", accepted, max)
	}
	if got := testutil.ToFloat64(d.m.dropped.WithLabelValues(ReasonQueueFull)); got != float64(full) {
		t.Fatalf("queue_full drops %v, want %d", got, full)
	}
	d.StopNow()
	shutdown := testutil.ToFloat64(d.m.dropped.WithLabelValues(ReasonShutdown))
	if int(shutdown)+full != n {
		t.Fatalf("dropped %v on shutdown + %d queue full != %d handed over", shutdown, full, n)
	}
	d.Release()
}

// keeper is an Overflow that keeps everything.
type keeper struct {
	mu      sync.Mutex
	entries []Entry
	reasons map[string]int
}

func (k *keeper) Overflow(es []Entry, reason string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.entries = append(k.entries, es...)
	if k.reasons == nil {
		k.reasons = map[string]int{}
	}
	k.reasons[reason] += len(es)
	return nil
}

func TestOverflowPolicyTakesWhatTheQueueCannot(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := testConfig("http://" + addr + "/loki/api/v1/push")
	cfg.Retries = 0
	cfg.BatchSize = 1 << 10
	cfg.QueueBytes = 4 << 10
	k := &keeper{}
	d, err := New(cfg, NewMetrics(prometheus.NewRegistry()), nil, WithOverflow(k))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		if err := d.Handle(Entry{Stream: `{a="b"}`, TimeNano: int64(i), Line: "0123456789"}); err != nil {
			t.Fatal(err)
		}
	}
	d.StopNow()
	if len(k.entries) != 1000 {
		t.Fatalf("overflow kept %d of 1000 (%v)", len(k.entries), k.reasons)
	}
	if k.reasons[ReasonQueueFull] == 0 || k.reasons[ReasonShutdown] == 0 {
		t.Fatalf("reasons %v", k.reasons)
	}
	d.Release()
}

func TestStopFlushesWithoutWaitingForTheBatch(t *testing.T) {
	loki := newFakeLoki(t)
	cfg := testConfig(loki.url())
	cfg.BatchWait = time.Hour
	d, err := New(cfg, NewMetrics(prometheus.NewRegistry()), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if err := d.Handle(Entry{Stream: `{a="b"}`, TimeNano: int64(i + 1), Line: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(loki.received()[`{a="b"}`]); n != 10 {
		t.Fatalf("%d of 10 delivered", n)
	}
	if err := d.Handle(Entry{Stream: `{a="b"}`, Line: "late"}); !errors.Is(err, ErrStopped) {
		t.Fatalf("Handle after Stop: %v", err)
	}
	d.Release()
}

func TestBackoff(t *testing.T) {
	d := &Dispatcher{cfg: Config{MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}}
	for attempt := 0; attempt < 10; attempt++ {
		for i := 0; i < 100; i++ {
			b := d.backoff(attempt, 0)
			ceil := min(100*time.Millisecond<<attempt, time.Second)
			if b < ceil/2 || b > ceil {
				t.Fatalf("attempt %d: %v outside [%v, %v]", attempt, b, ceil/2, ceil)
			}
		}
	}
	if b := d.backoff(0, 700*time.Millisecond); b != 700*time.Millisecond {
		t.Fatalf("Retry-After 700ms gave %v", b)
	}
	if b := d.backoff(0, time.Hour); b != time.Second {
		t.Fatalf("Retry-After is capped by max backoff: %v", b)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := parseRetryAfter(now.Add(3*time.Second).Format(http.TimeFormat), now); got != 3*time.Second {
		t.Fatalf("HTTP-date Retry-After: %v", got)
	}
	if got := parseRetryAfter("soon", now); got != 0 {
		t.Fatalf("garbage Retry-After: %v", got)
	}
}
