package loki

import (
	"sync"
	"time"
)

// memQueue is a Dispatcher's memory queue: the entries waiting for the
// sender, oldest first, bounded by Config.QueueBytes. Producers push live
// entries until Stop closes it; the sender takes batches; a replayer pushes
// entries read back from the spool, during Stop too.
//
// It owns its lock, mu. The methods without a suffix take it; those named
// ...Locked are for the spill (noSpool, spooler), which holds it to decide
// and queue at once, and to change the queue together with its own state:
// the spooler takes its own lock first (the order is stated at spooler).
type memQueue struct {
	limit     int // Config.QueueBytes
	batchSize int
	batchWait time.Duration
	m         *endpointMetrics // queueBytes, queueEntries
	now       func() time.Time

	mu     sync.Mutex
	ring   entryRing
	bytes  int       // Entry.size of what ring holds
	oldest time.Time // when the batch being gathered began to wait
	closed bool      // Stop began: no new live entries
	// peak is the most bytes held since the queue last held less than a
	// batch; drained is set when a take brings a backlog of at least
	// backlogBatches batches below one batch (read by backlogDrained).
	peak    int
	drained bool
}

// backlogBatches is the queue, in batches, that counts as a backlog: at a
// steady rate batches leave at the batch wait with less than one batch
// queued; two or more have queued when Loki was slow, down or refusing.
const backlogBatches = 2

func newMemQueue(cfg Config, m *endpointMetrics) *memQueue {
	return &memQueue{limit: cfg.QueueBytes, batchSize: cfg.BatchSize, batchWait: cfg.BatchWait, m: m, now: time.Now}
}

// fitsLocked reports whether a live entry of size bytes fits. q.mu is held.
func (q *memQueue) fitsLocked(size int) bool { return q.bytes+size <= q.limit }

// pushLocked queues a live entry e of size bytes, whether it fits or not.
// wake reports that the sender should look: the queue holds a batch's
// worth, or it was empty. q.mu is held; the caller checked closed.
func (q *memQueue) pushLocked(e Entry, size int) (wake bool) {
	q.addLocked(e, size)
	q.setGaugesLocked()
	return q.bytes >= q.batchSize || q.ring.len() == 1
}

// replayAhead bounds the replayed entries in the memory queue, in
// batches: the sender never waits for the next batch of a backlog that is
// on disk anyway, and a drain holds a few batches in memory instead of up
// to QueueBytes of lines (64 MiB by default) and a ring sized for them. In
// a soak the plugin's RSS went from about 45 MiB to 146-232 MiB during a
// drain (its live heap, after a GC, 33 MiB, 14 MiB of it the ring), and
// the Go runtime gave it back over minutes.
const replayAhead = 4

// replayLimit is how many bytes of replayed entries the queue takes.
func (q *memQueue) replayLimit() int { return min(q.limit, replayAhead*q.batchSize) }

// pushReplayedLocked queues entries read back from the spool, oldest first,
// while they fit under replayLimit (an empty queue takes one however
// large) and whether the queue is closed or not: a stopping dispatcher
// still sends what it replays. It returns how many it took. q.mu is held.
func (q *memQueue) pushReplayedLocked(entries []Entry) int {
	n := 0
	limit := q.replayLimit()
	for n < len(entries) {
		size := entries[n].size()
		if q.ring.len() > 0 && q.bytes+size > limit {
			break
		}
		q.addLocked(entries[n], size)
		n++
	}
	q.setGaugesLocked()
	return n
}

func (q *memQueue) addLocked(e Entry, size int) {
	if q.ring.len() == 0 {
		q.oldest = q.now()
	}
	q.ring.push(e)
	q.bytes += size
	q.peak = max(q.peak, q.bytes)
}

// take moves up to BatchSize bytes of the oldest entries into b (at least
// one entry if any). It reports whether the queue still holds entries.
func (q *memQueue) take(b *batch) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.takeLocked(b)
}

// takeLocked is take with q.mu held, for a spill that notes the batch in
// flight in the same step.
func (q *memQueue) takeLocked(b *batch) bool {
	for q.ring.len() > 0 {
		e := q.ring.peek()
		if len(b.entries) > 0 && b.bytes+e.size() > q.batchSize {
			break
		}
		q.bytes -= e.size()
		b.add(*e)
		q.ring.pop()
	}
	q.oldest = q.now()
	if q.bytes < q.batchSize {
		if q.peak >= backlogBatches*q.batchSize {
			q.drained = true
		}
		q.peak = q.bytes
	}
	q.setGaugesLocked()
	return q.ring.len() > 0
}

// backlogDrained reports whether a backlog was taken down to less than a
// batch since the last call.
func (q *memQueue) backlogDrained() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	d := q.drained
	q.drained = false
	return d
}

// ready reports whether a batch should be sent now, and if not, how long to
// wait for the oldest entry's batch-wait to expire (-1: the queue is
// empty).
func (q *memQueue) ready(flushing bool) (bool, time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.ring.len() == 0 {
		return false, -1
	}
	if flushing || q.bytes >= q.batchSize {
		return true, 0
	}
	wait := q.batchWait - q.now().Sub(q.oldest)
	return wait <= 0, wait
}

// close marks the queue closed: Stop began, and the spill refuses live
// entries from now on (ErrStopped).
func (q *memQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
}

// stopping reports whether close was called.
func (q *memQueue) stopping() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closed
}

// liveLocked copies the live (not Durable) entries, oldest first. q.mu is
// held.
func (q *memQueue) liveLocked() []Entry {
	var out []Entry
	for i := 0; i < q.ring.len(); i++ {
		if e := q.ring.at(i); !isDurable(e) {
			out = append(out, *e)
		}
	}
	return out
}

// dropLiveLocked removes the live entries, which the caller spooled, and
// keeps the durable ones in order. q.mu is held.
func (q *memQueue) dropLiveLocked() {
	var keep entryRing
	for q.ring.len() > 0 {
		e := *q.ring.peek()
		q.ring.pop()
		if isDurable(&e) {
			keep.push(e)
			continue
		}
		q.bytes -= e.size()
	}
	q.ring = keep
	q.setGaugesLocked()
}

func (q *memQueue) setGaugesLocked() {
	q.m.queueBytes.Set(float64(q.bytes))
	q.m.queueEntries.Set(float64(q.ring.len()))
}
