package loki

import (
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"
	"time"
)

// WithBacklogDrained has the Dispatcher call f, on its sender's goroutine,
// each time a backlog of at least two batches has been taken down to less
// than one batch (Loki was slow, down or refusing, and has caught up). f
// must return promptly.
func WithBacklogDrained(f func()) Option { return func(d *Dispatcher) { d.onDrained = f } }

// ReturnMemoryAfterBacklog is a WithBacklogDrained hook that has the Go
// runtime give back to the system the memory a backlog made the heap take:
// a forced collection, then every free page released (debug.FreeOSMemory),
// on a goroutine of its own, at most once per every, logged. Without it
// the runtime keeps free heap up to about a tenth over its heap goal after
// the heap has been that large, so each binary's RSS stepped up at an
// outage and stayed (soak runs h and j: 2-3 MiB per binary at the first
// outage). One hook serves every dispatcher it is given to.
func ReturnMemoryAfterBacklog(every time.Duration, log *slog.Logger) func() {
	var (
		mu   sync.Mutex
		last time.Time
		busy bool
	)
	return func() {
		mu.Lock()
		defer mu.Unlock()
		if busy || time.Since(last) < every {
			return
		}
		busy, last = true, time.Now()
		go func() {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			debug.FreeOSMemory()
			runtime.ReadMemStats(&after)
			if log != nil {
				log.Info("a backlog to Loki drained: gave the memory it took back to the system",
					"released_mib", float64(after.HeapReleased-min(before.HeapReleased, after.HeapReleased))/(1<<20),
					"heap_in_use_mib", float64(after.HeapInuse)/(1<<20))
			}
			mu.Lock()
			busy = false
			mu.Unlock()
		}()
	}
}
