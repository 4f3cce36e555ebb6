package sidecar

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestRelabelDropIsNeverRead: a container that loki-relabel-config drops
// gets no shipper, no file opened, no position; it is counted as dropped.
func TestRelabelDropIsNeverRead(t *testing.T) {
	r, pos, ff := newTestRouter(t, slog.New(slog.DiscardHandler))
	r.cfg.Options["loki-relabel-config"] = "- source_labels: [container_name]\n  regex: c\n  action: drop\n"
	id := strings.Repeat("0a1b2c3d", 8)
	r.start(context.Background(), ctr(id))
	if r.Active() != 0 || ff.opens != 0 {
		t.Fatalf("a dropped container is shipped: %d active, %d files opened", r.Active(), ff.opens)
	}
	if _, ok := pos.Get(id); ok {
		t.Fatal("a dropped container has a position")
	}
	if got := testutil.ToFloat64(r.m.containers.WithLabelValues(RouteDropped)); got != 1 {
		t.Fatalf("containers{route=dropped} = %v, want 1", got)
	}
}
