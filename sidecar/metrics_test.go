package sidecar

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestReusedNameKeepsItsSeries: a draining container's shipper ends after a
// new container took its name; the new one's series stay.
func TestReusedNameKeepsItsSeries(t *testing.T) {
	m := NewMetrics(nil)
	old := m.forContainer("web")
	old.lines("stdout").Add(5)
	next := m.forContainer("web")
	old.forget()
	next.lines("stdout").Inc()
	if got := testutil.CollectAndCount(m.linesRead); got != 2 {
		t.Fatalf("%d lines series after the old shipper forgot, want 2 (web stdout and stderr)", got)
	}
	if got := testutil.ToFloat64(m.linesRead.WithLabelValues("web", "stdout")); got != 6 {
		t.Fatalf("web stdout = %v, want 6", got)
	}
	next.forget()
	if got := testutil.CollectAndCount(m.linesRead) + testutil.CollectAndCount(m.bytesRead); got != 0 {
		t.Fatalf("%d series left after both forgot", got)
	}
}
