package plugin

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestReusedNameKeepsItsSeries: a draining stream ends after a new container
// took its name; the new stream's series stay.
func TestReusedNameKeepsItsSeries(t *testing.T) {
	m := NewMetrics(nil)
	old := m.forStream("web")
	old.source("stdout").entries.Add(5)
	next := m.forStream("web")
	old.forget()
	old.forget() // discard and finish may both run: once is once
	next.source("stdout").entries.Inc()
	if got := testutil.ToFloat64(m.entries.WithLabelValues("web", "stdout")); got != 6 {
		t.Fatalf("web stdout = %v, want 6: the new stream's series were deleted", got)
	}
	next.forget()
	if got := testutil.CollectAndCount(m.entries) + testutil.CollectAndCount(m.bytes); got != 0 {
		t.Fatalf("%d series left after both forgot", got)
	}
}
