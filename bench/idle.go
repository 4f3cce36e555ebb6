package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/logferry/logferry/internal/loggen"
)

// IdleConfig is one idle-streams run: Streams containers that each wrote
// one line and then nothing, with their FIFOs held open as the daemon holds
// them for a running container.
type IdleConfig struct {
	Binary   string
	Streams  int
	LineSize int
	// Lines is how many lines each stream writes before it goes quiet
	// (default 1). Written in one write, more than 4 KiB of them fill the
	// plugin's read buffer as a container's burst at start-up would.
	Lines   int
	LogOpts map[string]string
	// Settle is how long to wait after the lines were delivered before the
	// second reading (the Go runtime returns freed memory to the system
	// over a few minutes; RSS is read both at once and after Settle).
	Settle  time.Duration
	Timeout time.Duration // whole run, default 5 minutes
	KeepDir bool
	// PluginEnv is added to the plugin's environment.
	PluginEnv []string
}

// Snapshot is the plugin's footprint at one moment.
type Snapshot struct {
	RSS        int64   // VmRSS
	PeakRSS    int64   // VmHWM
	Threads    int     // OS threads
	FDs        int     // open file descriptors
	Goroutines float64 // go_goroutines
	HeapInuse  float64 // go_memstats_heap_inuse_bytes
	Sys        float64 // go_memstats_sys_bytes: what the Go runtime got from the OS
	Streams    float64 // logferry_plugin_streams_active
}

// ErrNotBackToBaseline: after every stream stopped, the plugin kept more
// goroutines than it had before the first one started.
var ErrNotBackToBaseline = errors.New("the plugin's goroutines did not return to the baseline")

// IdleResult is what an idle-streams run measured.
type IdleResult struct {
	Streams  int
	Lines    int           // per stream
	Base     Snapshot      // plugin ready, no stream
	One      Snapshot      // the first stream open and its line delivered (the shared dispatcher exists)
	Loaded   Snapshot      // every stream open, its line delivered
	Settled  Snapshot      // Loaded, Settle later
	Stopped  Snapshot      // every stream stopped, goroutines back to Base (or the wait timed out)
	Received int64         // entries at the sink
	Labels   int           // distinct streams at the sink
	StartAll time.Duration // StartLogging and one write for streams 2..Streams
	StopWait time.Duration // from the first StopLogging until the goroutines were back
	Settle   time.Duration
	Dir      string
}

// RSSPerStream is the RSS each idle stream adds: from One to Loaded, so
// the dispatcher all streams share is not spread over them.
func (r IdleResult) RSSPerStream() float64 {
	if r.Streams < 2 {
		return float64(r.Loaded.RSS - r.Base.RSS)
	}
	return float64(r.Loaded.RSS-r.One.RSS) / float64(r.Streams-1)
}

// GoroutinesPerStream is the goroutines each idle stream adds, from One to
// Loaded.
func (r IdleResult) GoroutinesPerStream() float64 {
	if r.Streams < 2 {
		return r.Loaded.Goroutines - r.Base.Goroutines
	}
	return (r.Loaded.Goroutines - r.One.Goroutines) / float64(r.Streams-1)
}

// SharedGoroutines are the goroutines the first stream brought beyond its
// own: the endpoint's dispatcher and its HTTP connection.
func (r IdleResult) SharedGoroutines() float64 {
	return r.One.Goroutines - r.Base.Goroutines - r.GoroutinesPerStream()
}

func snapshot(ctx context.Context, p *Plugin) (Snapshot, error) {
	mem, err := ReadProcMem(p.PID())
	if err != nil {
		return Snapshot{}, err
	}
	m, err := p.Metrics(ctx)
	if err != nil {
		return Snapshot{}, err
	}
	// A connection's goroutine ends a moment after its answer went out:
	// the steady count is the lowest of a few reads.
	for i := 0; i < 4; i++ {
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return Snapshot{}, ctx.Err()
		case <-t.C:
		}
		again, err := p.Metrics(ctx)
		if err != nil {
			return Snapshot{}, err
		}
		m["go_goroutines"] = min(m["go_goroutines"], again["go_goroutines"])
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.PID()))
	if err != nil {
		return Snapshot{}, err
	}
	return Snapshot{
		RSS: mem.RSS, PeakRSS: mem.PeakRSS, Threads: mem.Threads, FDs: len(fds),
		Goroutines: m["go_goroutines"], HeapInuse: m["go_memstats_heap_inuse_bytes"],
		Sys: m["go_memstats_sys_bytes"], Streams: m["logferry_plugin_streams_active"],
	}, nil
}

// RunIdle starts the plugin and a sink, takes a baseline, starts cfg.Streams
// streams that each write cfg.Lines lines and then nothing, waits until the
// sink has every line and takes the loaded reading (and another one
// cfg.Settle later); then stops every stream and waits until the plugin's
// goroutines are back to the baseline.
func RunIdle(ctx context.Context, cfg IdleConfig) (res IdleResult, err error) {
	if cfg.Streams <= 0 {
		return res, errors.New("idle: Streams must be positive")
	}
	if cfg.LineSize <= 0 {
		cfg.LineSize = 250
	}
	if cfg.Lines <= 0 {
		cfg.Lines = 1
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	res.Streams, res.Lines, res.Settle = cfg.Streams, cfg.Lines, cfg.Settle

	dir, err := TempDir("lf-idle-")
	if err != nil {
		return res, err
	}
	if cfg.KeepDir {
		res.Dir = dir
	} else {
		defer os.RemoveAll(dir)
	}
	sink, err := NewSink()
	if err != nil {
		return res, err
	}
	defer sink.Close()
	p, err := StartPlugin(ctx, PluginConfig{Binary: cfg.Binary, Dir: dir, LokiURL: sink.URL(), Env: cfg.PluginEnv})
	if err != nil {
		return res, err
	}
	defer p.Stop()
	if res.Base, err = snapshot(ctx, p); err != nil {
		return res, err
	}
	// With PPROF=true, a failure to return to the baseline names the
	// goroutines that stayed (this run's own CI failure did not).
	baseStacks, _ := p.Goroutines(ctx)

	fifos := make([]string, cfg.Streams)
	writers := make([]*os.File, 0, cfg.Streams)
	defer func() {
		for _, w := range writers {
			w.Close()
		}
	}()
	start := time.Now()
	for i := range fifos {
		fifos[i] = filepath.Join(dir, fmt.Sprintf("idle-%04d.fifo", i))
		if err := MakeFIFO(fifos[i]); err != nil {
			return res, err
		}
		name := fmt.Sprintf("/idle-%04d", i)
		if err := p.StartLogging(ctx, fifos[i], ContainerInfo(name, cfg.LogOpts)); err != nil {
			return res, fmt.Errorf("stream %d: %w", i, err)
		}
		w, err := OpenWriter(fifos[i])
		if err != nil {
			return res, err
		}
		writers = append(writers, w)
		fr, err := EncodeFrames(loggen.Config{ID: name[1:], Lines: uint64(cfg.Lines), Size: cfg.LineSize}, time.Now())
		if err != nil {
			return res, err
		}
		if _, err := w.Write(fr.Buf); err != nil {
			return res, fmt.Errorf("stream %d: writing its lines: %w", i, err)
		}
		if i == 0 {
			if err := sink.WaitEntries(ctx, int64(cfg.Lines), nil); err != nil {
				return res, fmt.Errorf("waiting for the first line: %w; the plugin's log:\n%s", err, p.LogTail(20))
			}
			if res.One, err = snapshot(ctx, p); err != nil {
				return res, err
			}
			start = time.Now()
		}
	}
	res.StartAll = time.Since(start)
	if err := sink.WaitEntries(ctx, int64(cfg.Streams*cfg.Lines), nil); err != nil {
		return res, fmt.Errorf("waiting for the lines: %w; the plugin's log:\n%s", err, p.LogTail(20))
	}
	res.Received, res.Labels = sink.Entries(), sink.Streams()
	if res.Loaded, err = snapshot(ctx, p); err != nil {
		return res, err
	}
	if cfg.Settle > 0 {
		t := time.NewTimer(cfg.Settle)
		select {
		case <-ctx.Done():
			t.Stop()
			return res, ctx.Err()
		case <-t.C:
		}
	}
	if res.Settled, err = snapshot(ctx, p); err != nil {
		return res, err
	}

	stop := time.Now()
	for i, f := range fifos {
		if err := p.StopLogging(ctx, f); err != nil {
			return res, err
		}
		writers[i].Close()
	}
	writers = nil
	// Back to the baseline: every stream's goroutine ended and the
	// dispatcher the streams shared has drained and stopped.
	stopCtx, stopCancel := context.WithTimeout(ctx, 30*time.Second)
	defer stopCancel()
	for {
		if res.Stopped, err = snapshot(ctx, p); err != nil {
			return res, err
		}
		if res.Stopped.Streams == 0 && res.Stopped.Goroutines <= res.Base.Goroutines {
			break
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-stopCtx.Done():
			t.Stop()
			res.StopWait = time.Since(stop)
			err := fmt.Errorf("%w: 30 s after stopping every stream: %v streams active, %v goroutines (baseline %v)",
				ErrNotBackToBaseline, res.Stopped.Streams, res.Stopped.Goroutines, res.Base.Goroutines)
			if now, gerr := p.Goroutines(ctx); gerr == nil && baseStacks != "" {
				err = fmt.Errorf("%w; goroutines beyond the baseline's:\n%s", err, moreStacks(baseStacks, now))
			}
			return res, err
		case <-t.C:
		}
	}
	res.StopWait = time.Since(stop)
	return res, nil
}

// moreStacks returns the stacks of a goroutine?debug=1 dump after that
// have more goroutines than in before, with the counts.
func moreStacks(before, after string) string {
	count := func(dump string) map[string]int {
		m := map[string]int{}
		for _, block := range strings.Split(dump, "\n\n") {
			head, stack, ok := strings.Cut(block, "\n")
			n, _, found := strings.Cut(head, " @ ")
			if !ok || !found {
				continue
			}
			k, err := strconv.Atoi(n)
			if err == nil {
				m[stack] += k
			}
		}
		return m
	}
	b, a := count(before), count(after)
	var out []string
	for stack, n := range a {
		if n > b[stack] {
			out = append(out, fmt.Sprintf("%d more (%d, baseline %d):\n%s", n-b[stack], n, b[stack], stack))
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}
