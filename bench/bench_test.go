package bench

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"go.uber.org/goleak"

	"github.com/logferry/logferry/internal/dockertest"
	"github.com/logferry/logferry/internal/loggen"
	"github.com/logferry/logferry/shared/loki"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		dockertest.Shutdown()
		os.Exit(code)
	}))
}

func TestParseStatCPU(t *testing.T) {
	// A command name with a space and a parenthesis, as a process may set.
	stat := []byte("4242 (logferry (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0 100 0 0")
	u, s, err := parseStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if u != 2500*time.Millisecond || s != 750*time.Millisecond {
		t.Errorf("utime %v stime %v, want 2.5s 750ms", u, s)
	}
	if _, _, err := parseStatCPU([]byte("1 (x) S 1")); err == nil {
		t.Error("a short stat line was accepted")
	}
}

func TestParseStatus(t *testing.T) {
	m, err := parseStatus([]byte("Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nThreads:\t7\n"))
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS != 1<<20 || m.PeakRSS != 2<<20 || m.Threads != 7 {
		t.Errorf("got %+v", m)
	}
	if _, err := parseStatus([]byte("Name:\tx\n")); err == nil {
		t.Error("a status without VmRSS was accepted")
	}
}

func TestParseIO(t *testing.T) {
	io, err := parseIO([]byte("rchar: 10\nwchar: 20\nsyscr: 3\nsyscw: 4\nread_bytes: 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if io.ReadCalls != 3 || io.WriteCalls != 4 {
		t.Errorf("got %+v", io)
	}
}

func TestParseMetrics(t *testing.T) {
	in := `# HELP go_goroutines x
# TYPE go_goroutines gauge
go_goroutines 12
logferry_loki_entries_dropped_total{endpoint="http://127.0.0.1:1/x",reason="queue_full",tenant=""} 3
logferry_loki_entries_dropped_total{endpoint="http://127.0.0.1:1/x",reason="a b}",tenant=""} 4
`
	s, err := parseMetrics(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if s["go_goroutines"] != 12 || s["logferry_loki_entries_dropped_total"] != 7 {
		t.Errorf("got %v", s)
	}
}

// TestSinkCounts pushes a snappy-compressed PushRequest as the dispatcher
// does and checks the sink counts its entries, and rejects garbage.
func TestSinkCounts(t *testing.T) {
	s, err := NewSink()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	meta := []loki.LabelPairAdapter{{Name: "container_id", Value: "abc"}}
	req := loki.PushRequest{Streams: []loki.StreamAdapter{
		{Labels: `{a="1"}`, Hash: 7, Entries: []loki.EntryAdapter{
			{Timestamp: loki.Timestamp{Seconds: 1, Nanos: 2}, Line: "one", StructuredMetadata: meta},
			{Line: "two"},
		}},
		{Labels: `{a="2"}`, Entries: []loki.EntryAdapter{{Line: "three", StructuredMetadata: meta}}},
		{Labels: `{a="1"}`, Entries: []loki.EntryAdapter{{Line: ""}}},
	}}
	raw, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	post := func(body []byte) int {
		resp, err := http.Post(s.URL(), "application/x-protobuf", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(snappy.Encode(nil, raw)); code != http.StatusNoContent {
		t.Fatalf("push answered %d", code)
	}
	if code := post([]byte("not snappy")); code != http.StatusBadRequest {
		t.Errorf("garbage answered %d, want 400", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if code := post(snappy.Encode(nil, raw[:len(raw)-1])); code != http.StatusBadRequest {
		t.Errorf("a truncated request answered %d, want 400", code)
	}
	if err := s.WaitEntries(ctx, 4, nil); err != nil {
		t.Fatal(err)
	}
	if s.Entries() != 4 || s.Bytes() != 11 || s.Streams() != 2 || s.Rejected() != 2 {
		t.Errorf("entries %d bytes %d streams %d rejected %d, want 4 11 2 2", s.Entries(), s.Bytes(), s.Streams(), s.Rejected())
	}
	http.DefaultClient.CloseIdleConnections()
}

// BenchmarkSinkCount is the sink's cost per push of a 1 MiB batch (the
// dispatcher's default) of 250-byte lines, which must stay far below the
// plugin's cost to produce it.
func BenchmarkSinkCount(b *testing.B) {
	var req loki.PushRequest
	meta := []loki.LabelPairAdapter{{Name: "container_id", Value: ContainerID("x")}}
	st := loki.StreamAdapter{Labels: `{container_name="bench", host="bench", source="stdout"}`}
	for i := range 4000 {
		st.Entries = append(st.Entries, loki.EntryAdapter{
			Timestamp: loki.Timestamp{Seconds: int64(i)}, Line: strings.Repeat("x", 250), StructuredMetadata: meta})
	}
	req.Streams = append(req.Streams, st)
	raw, err := req.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	s := &Sink{streams: map[string]int64{}}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if n, _, err := s.count(raw); err != nil || n != 4000 {
			b.Fatal(n, err)
		}
	}
}

// TestHarness runs both benchmarks small against the real plugin binary, so
// that make test keeps the harness working.
func TestHarness(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and runs the plugin binary")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin, err := BuildPlugin(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, opts := range []map[string]string{nil, {"no-file": "true"}} {
		r, err := RunThroughput(ctx, ThroughputConfig{Binary: bin, Lines: 20_000, LineSize: 250, LogOpts: opts, Timeout: time.Minute})
		if err != nil {
			t.Fatalf("throughput %v: %v", opts, err)
		}
		if r.Received != 20_000 || r.Dropped != 0 || r.ReadFrames != 20_000 || r.CPU() <= 0 || r.PeakRSS <= 0 {
			t.Errorf("throughput %v: %+v", opts, r)
		}
		t.Logf("throughput %v: %.1f MiB/CPU-s, %.0f lines/s", opts, r.MiBPerCPUSecond(), r.LinesPerSecond())
	}
	r, err := RunIdle(ctx, IdleConfig{Binary: bin, Streams: 20, Timeout: time.Minute, PluginEnv: []string{"PPROF=true"}})
	if err != nil {
		t.Fatalf("idle: %v", err)
	}
	if r.Received != 20 || r.Labels != 20 || r.Loaded.Streams != 20 || r.Stopped.Streams != 0 || r.Stopped.Goroutines > r.Base.Goroutines {
		t.Errorf("idle: %+v", r)
	}
	if g := r.GoroutinesPerStream(); g > 1 {
		t.Errorf("idle: %.2f goroutines per stream, want at most 1", g)
	}
}

// TestSinkTracksLines checks the steady-rate benchmark's delivery and
// latency accounting: each generator line is told apart by id and
// sequence number, a repeat and a foreign line are counted, and each
// entry's delay runs from its timestamp to its push's arrival.
func TestSinkTracksLines(t *testing.T) {
	s, err := NewSink()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.TrackLines()
	g := loggen.Config{ID: "c1", Size: 120}
	entry := func(seq uint64, age time.Duration) loki.EntryAdapter {
		_, line := g.Line(seq)
		at := time.Now().Add(-age)
		return loki.EntryAdapter{Timestamp: loki.Timestamp{Seconds: at.Unix(), Nanos: int32(at.Nanosecond())}, Line: line}
	}
	push := func(entries ...loki.EntryAdapter) {
		t.Helper()
		req := loki.PushRequest{Streams: []loki.StreamAdapter{{Labels: `{a="1"}`, Entries: entries}}}
		raw, err := req.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post(s.URL(), "application/x-protobuf", bytes.NewReader(snappy.Encode(nil, raw)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("push: %s", resp.Status)
		}
	}
	push(entry(0, time.Hour)) // before the measured stretch: not timed
	s.MeasureLatency(true)
	push(entry(1, 300*time.Millisecond), entry(2, 2*time.Second), entry(200, 0))
	s.MeasureLatency(false)
	push(entry(3, time.Hour))
	if d, dups, bad, _ := s.Lines(); d != 5 || dups != 0 || bad != 0 {
		t.Fatalf("Lines() = %d distinct, %d again, %d foreign; want 5, 0, 0", d, dups, bad)
	}
	lat := s.Latency()
	if lat.N != 3 || lat.P50 < 300*time.Millisecond || lat.P50 > time.Second ||
		lat.Max < 2*time.Second || lat.Max > 3*time.Second || lat.P99 < 2*time.Second || lat.P99 > 3*time.Second {
		t.Fatalf("Latency() = %+v; want 3 entries, p50 ~300ms, p99 and max ~2s", lat)
	}
	push(entry(2, 0), loki.EntryAdapter{Line: "not a generator line"})
	d, dups, bad, first := s.Lines()
	if d != 5 || dups != 1 || bad != 1 || first != "c1 seq 2 arrived again" {
		t.Fatalf("Lines() = %d distinct, %d again, %d foreign, first %q; want 5, 1, 1 and the repeat", d, dups, bad, first)
	}
}

// TestSinkForwards checks Sink.Forward: a push reaches the Loki behind the
// sink before the sink counts it, and a refusal there is the pusher's
// answer, not counted.
func TestSinkForwards(t *testing.T) {
	upstream, err := NewSink()
	if err != nil {
		t.Fatal(err)
	}
	defer upstream.Close()
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "slow down", http.StatusTooManyRequests)
	}))
	defer refuse.Close()
	req := loki.PushRequest{Streams: []loki.StreamAdapter{{Labels: `{a="1"}`, Entries: []loki.EntryAdapter{{Line: "one"}, {Line: "two"}}}}}
	raw, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	body := snappy.Encode(nil, raw)
	for _, tc := range []struct {
		to         string
		status     int
		counted    int64
		upstreamed int64
	}{
		{upstream.URL(), http.StatusNoContent, 2, 2},
		{refuse.URL + "/loki/api/v1/push", http.StatusTooManyRequests, 0, 2},
	} {
		s, err := NewSink()
		if err != nil {
			t.Fatal(err)
		}
		s.Forward(tc.to)
		resp, err := http.Post(s.URL(), "application/x-protobuf", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status || s.Entries() != tc.counted || upstream.Entries() != tc.upstreamed {
			t.Errorf("forward to %s: status %d, sink %d entries, upstream %d; want %d, %d, %d",
				tc.to, resp.StatusCode, s.Entries(), upstream.Entries(), tc.status, tc.counted, tc.upstreamed)
		}
		s.Close()
	}
}
