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

// A take that brings a queue of two batches or more below one batch
// reports a drained backlog, once; the queue of a steady rate, under a
// batch at each take, never does.
func TestQueueReportsADrainedBacklog(t *testing.T) {
	cfg := DefaultConfig()
	cfg.BatchSize, cfg.QueueBytes = 1000, 1<<20
	q := newMemQueue(cfg, &endpointMetrics{queueBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "b"}),
		queueEntries: prometheus.NewGauge(prometheus.GaugeOpts{Name: "e"})})
	push := func(n int) {
		q.mu.Lock()
		defer q.mu.Unlock()
		for range n {
			q.pushLocked(Entry{Line: strings.Repeat("x", 84)}, 100) // 100 bytes
		}
	}
	take := func() {
		b := newBatch()
		q.take(b)
	}
	for range 5 { // steady: 9 entries a batch
		push(9)
		take()
		if q.backlogDrained() {
			t.Fatal("a steady queue reported a drained backlog")
		}
	}
	push(25) // two and a half batches
	take()
	if q.backlogDrained() {
		t.Fatalf("a backlog still holding %d bytes (a batch or more) reported drained", q.bytes)
	}
	take()
	if !q.backlogDrained() {
		t.Fatalf("a backlog taken down to %d bytes did not report drained", q.bytes)
	}
	if q.backlogDrained() {
		t.Fatal("a drained backlog was reported twice")
	}
	push(9)
	take()
	if q.backlogDrained() {
		t.Fatal("the steady queue after a backlog reported drained again")
	}
}
