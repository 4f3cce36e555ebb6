package loki

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// A replay takes at most replayAhead batches of the memory queue, however
// large QueueBytes is: the backlog stays on disk until the sender is near
// it. An empty queue still takes one entry larger than that.
func TestReplayHoldsAFewBatches(t *testing.T) {
	cfg := DefaultConfig()
	cfg.BatchSize, cfg.QueueBytes = 1<<10, 1<<20
	q := newMemQueue(cfg, &endpointMetrics{queueBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "b"}),
		queueEntries: prometheus.NewGauge(prometheus.GaugeOpts{Name: "e"})})
	entries := make([]Entry, 1000)
	for i := range entries {
		entries[i].Line = strings.Repeat("x", 84) // size 100
	}
	q.mu.Lock()
	n := q.pushReplayedLocked(entries)
	q.mu.Unlock()
	if want := replayAhead * cfg.BatchSize / 100; n != want {
		t.Errorf("a replay into an empty queue took %d entries (%d bytes), want %d: replayAhead batches of %d bytes",
			n, q.bytes, want, cfg.BatchSize)
	}

	q = newMemQueue(cfg, q.m)
	huge := []Entry{{Line: strings.Repeat("y", 8<<10)}}
	q.mu.Lock()
	n = q.pushReplayedLocked(huge)
	q.mu.Unlock()
	if n != 1 {
		t.Errorf("an empty queue took %d of one entry larger than the replay bound, want 1", n)
	}
}
