// Package obsserver owns the HTTP listener each binary serves its
// observability endpoints on (/metrics, /ready and, only when the operator
// asks, /debug/pprof/), with the timeouts and header limits a server that
// anyone on the host can reach needs.
package obsserver

import (
	"net/http"
	"net/http/pprof"
	"runtime"
	"time"
)

// Limits of every observability server. A scrape answers in milliseconds
// and a CPU profile takes ProfileSeconds: WriteTimeout covers the longest.
const (
	ReadHeaderTimeout = 10 * time.Second
	ReadTimeout       = 30 * time.Second
	IdleTimeout       = 60 * time.Second
	MaxHeaderBytes    = 64 << 10
	// MaxProfileSeconds bounds /debug/pprof/profile?seconds=N and
	// /debug/pprof/trace: longer requests are refused.
	MaxProfileSeconds = 60
	WriteTimeout      = (MaxProfileSeconds + 10) * time.Second
)

// Options says what the server serves besides the caller's handlers.
type Options struct {
	// Pprof serves Go's profiler under /debug/pprof/. Off by default: a
	// profile names functions, files and, in goroutine dumps, arguments;
	// a CPU profile costs CPU; anyone who reaches the port can ask. A
	// binary that sets it calls SampleHeapFiner first.
	Pprof bool
}

// PprofMemProfileRate is the heap profile's sampling interval once pprof
// is on: 64 KiB rather than Go's 512 KiB, so that two profiles of a
// long run resolve a difference of a few MiB (at 512 KiB a 250 KiB buffer
// is seen in two profiles out of five, at 2.5 times its size; the soak's
// RSS steps of 2-4 MiB were within that noise). Recording a sample costs a
// stack walk, some microseconds, per 64 KiB allocated.
const PprofMemProfileRate = 64 << 10

// SampleHeapFiner sets the heap profile's rate to PprofMemProfileRate when
// o serves pprof, and leaves Go's default alone otherwise. Call it before
// the binary starts its goroutines: the runtime reads the rate on every
// allocation and wants it set once, as early as possible.
func SampleHeapFiner(o Options) {
	if o.Pprof {
		runtime.MemProfileRate = PprofMemProfileRate
	}
}

// New returns a server for mux (which the caller fills with /metrics and
// /ready) with the limits above; with o.Pprof, it also serves the profiler.
// The caller serves it on its own listener and shuts it down.
func New(mux *http.ServeMux, o Options) *http.Server {
	if o.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.Handle("/debug/pprof/profile", boundedSeconds(http.HandlerFunc(pprof.Profile)))
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.Handle("/debug/pprof/trace", boundedSeconds(http.HandlerFunc(pprof.Trace)))
	}
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
	}
}

// boundedSeconds refuses a profile or trace longer than MaxProfileSeconds,
// which the WriteTimeout would cut anyway, with a clear answer instead.
func boundedSeconds(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s := r.URL.Query().Get("seconds"); s != "" {
			var n int
			for _, c := range s {
				if c < '0' || c > '9' || n > MaxProfileSeconds {
					n = MaxProfileSeconds + 1
					break
				}
				n = n*10 + int(c-'0')
			}
			if n > MaxProfileSeconds {
				http.Error(w, "seconds: at most 60", http.StatusBadRequest)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}
