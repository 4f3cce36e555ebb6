package loki_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/logferry/logferry/internal/lokitest"
	"github.com/logferry/logferry/shared/loki"
)

// progress is an Acker that records the last offset per producer.
type progress struct {
	mu   sync.Mutex
	last int64
	all  bool
	done chan struct{}
	want int64
}

func (p *progress) Ack(off int64, delivered bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = off
	p.all = p.all && delivered
	if off == p.want {
		close(p.done)
	}
}

// TestIntegrationDispatcherIntoRealLoki pushes 100,000 entries over 50
// streams through one Dispatcher into a real Loki and reads every one back
// with its labels, structured metadata and exact timestamp.
func TestIntegrationDispatcherIntoRealLoki(t *testing.T) {
	srv := lokitest.Start(t)
	const streams, perStream = 50, 2000
	run := fmt.Sprintf("r%d", time.Now().UnixNano())
	reg := prometheus.NewRegistry()
	cfg := loki.DefaultConfig()
	cfg.URL = srv.PushURL()
	cfg.BatchWait = 100 * time.Millisecond
	d, err := loki.New(cfg, loki.NewMetrics(reg), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Timestamps an hour back with nanosecond detail, a different
	// sub-second part per stream, so that exactness is checked.
	base := time.Now().Add(-time.Hour).Truncate(time.Second).UnixNano()
	ts := func(s, i int) int64 { return base + int64(i)*1_000_003 + int64(s)*7 }
	line := func(s, i int) string {
		return fmt.Sprintf("run=%s stream=%d seq=%d é日本🎉 %s", run, s, i, strings.Repeat("x", i%200))
	}
	stream := func(s int) string {
		source := "stdout"
		if s%5 == 0 {
			source = "stderr"
		}
		return fmt.Sprintf(`{container_name="itest-%02d", host="h1", run=%q, source=%q}`, s, run, source)
	}
	metas := make([][]loki.LabelPairAdapter, streams)
	acks := make([]*progress, streams)
	for s := range metas {
		metas[s] = []loki.LabelPairAdapter{{Name: "container_id", Value: fmt.Sprintf("%064x", s)}, {Name: "image", Value: "loggen:1"}}
		acks[s] = &progress{all: true, done: make(chan struct{}), want: perStream - 1, last: -1}
	}
	start := time.Now()
	for i := 0; i < perStream; i++ {
		for s := 0; s < streams; s++ {
			e := loki.Entry{Stream: stream(s), TimeNano: ts(s, i), Line: line(s, i), Metadata: metas[s], Acker: acks[s], Offset: int64(i)}
			// The default queue (64 MiB) holds all ~30 MB: nothing may
			// be refused.
			if err := d.Handle(e); err != nil {
				t.Fatalf("stream %d entry %d: %v", s, i, err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for s, a := range acks {
		select {
		case <-a.done:
		case <-ctx.Done():
			t.Fatalf("stream %d: acknowledged up to %d of %d", s, a.last, perStream-1)
		}
		if !a.all {
			t.Fatalf("stream %d: some entries were not delivered", s)
		}
	}
	t.Logf("pushed %d entries in %v", streams*perStream, time.Since(start))
	if err := d.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if got := counterValue(t, reg, "logferry_loki_entries_sent_total"); got != streams*perStream {
		t.Fatalf("entries_sent_total %v", got)
	}
	d.Release()

	got, err := srv.QueryAll(ctx, fmt.Sprintf(`{run=%q}`, run), time.Unix(0, base-1), time.Unix(0, ts(streams, perStream)+1))
	if err != nil {
		t.Fatal(err)
	}
	if n := lokitest.Count(got); n != streams*perStream {
		t.Fatalf("Loki returned %d entries, want %d", n, streams*perStream)
	}
	byName := map[string]lokitest.Stream{}
	for _, s := range got {
		byName[s.Labels["container_name"]] = s
	}
	for s := 0; s < streams; s++ {
		name := fmt.Sprintf("itest-%02d", s)
		st, ok := byName[name]
		if !ok {
			t.Fatalf("stream %s missing", name)
		}
		if want := stream(s); lokitest.LabelString(st.Labels) != want {
			t.Fatalf("labels %s, want %s", lokitest.LabelString(st.Labels), want)
		}
		if len(st.Entries) != perStream {
			t.Fatalf("%s: %d entries", name, len(st.Entries))
		}
		for i, e := range st.Entries {
			if e.Timestamp != ts(s, i) || e.Line != line(s, i) {
				t.Fatalf("%s entry %d: %d %q, want %d %q", name, i, e.Timestamp, e.Line, ts(s, i), line(s, i))
			}
			if e.StructuredMetadata["container_id"] != metas[s][0].Value || e.StructuredMetadata["image"] != "loggen:1" {
				t.Fatalf("%s entry %d: structured metadata %v", name, i, e.StructuredMetadata)
			}
		}
	}
}

// counterValue sums the series of a counter family in reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
