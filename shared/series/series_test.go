package series

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestReleaseKeepsSeriesOfAnotherHolder(t *testing.T) {
	lines := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lines_total"}, []string{"container_name", "source"})
	s := NewSet("container_name", lines)

	old := s.Hold("web") // a container that is draining
	lines.WithLabelValues("web", "stdout").Add(3)
	lines.WithLabelValues("other", "stdout").Inc()
	next := s.Hold("web") // a new container with the same name
	c := lines.WithLabelValues("web", "stdout")

	old.Release()
	old.Release() // twice is once
	if got := testutil.CollectAndCount(lines); got != 2 {
		t.Fatalf("after the draining container let go: %d series, want 2 (web and other)", got)
	}
	c.Inc()
	if got := testutil.ToFloat64(lines.WithLabelValues("web", "stdout")); got != 4 {
		t.Fatalf("web's series = %v, want 4: the successor's counts were lost", got)
	}
	if n := s.Holders("web"); n != 1 {
		t.Fatalf("holders of web = %d, want 1", n)
	}

	next.Release()
	if got := testutil.CollectAndCount(lines); got != 1 {
		t.Fatalf("after the last holder let go: %d series, want 1 (other)", got)
	}
	if n := s.Holders("web"); n != 0 {
		t.Fatalf("holders of web = %d, want 0 (no entry kept)", n)
	}
	if len(s.held) != 0 {
		t.Fatalf("held map keeps %d entries after every release", len(s.held))
	}
}
