package loki

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// After the last dispatcher of an endpoint is released, what it sent and
// dropped is still there to scrape; only its queue gauges go.
func TestMetricsOutliveReleasedDispatcher(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	loki := newFakeLoki(t, status(400))
	d, err := New(testConfig(loki.url()), m, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := d.Handle(Entry{Stream: `{a="b"}`, TimeNano: int64(i + 1), Line: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	d.Release()
	if n := testutil.CollectAndCount(m.dropped); n != 1 {
		t.Fatalf("%d dropped series after release, want 1", n)
	}
	if got := testutil.ToFloat64(m.dropped.WithLabelValues(d.cfg.Endpoint(), d.cfg.TenantID, "too_far_behind")); got != 3 {
		t.Fatalf("dropped %v after release, want 3", got)
	}
	if n := testutil.CollectAndCount(m.entriesReceived); n != 1 {
		t.Fatalf("%d received series after release, want 1", n)
	}
	if n := testutil.CollectAndCount(m.queueBytes) + testutil.CollectAndCount(m.queueEntries); n != 0 {
		t.Fatalf("%d queue gauge series after release, want 0", n)
	}
}
