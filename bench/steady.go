package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logferry/logferry/internal/loggen"
)

// Targets a steady run can drive.
const (
	TargetPlugin  = "plugin"
	TargetSidecar = "sidecar"
)

// SteadyConfig is one steady-rate run: Containers containers each write
// Rate lines a second, paced evenly in small bursts every Tick as a real
// application writes, into the plugin's FIFOs (one write(2) per frame, as
// dockerd's plugin adapter writes) or into json-file logs the sidecar tails
// (one write(2) per json-file entry, as dockerd's json-file driver writes).
// A line longer than 16 KiB is cut into 16 KiB chunks as dockerd cuts it.
type SteadyConfig struct {
	Target     string // TargetPlugin or TargetSidecar
	Binary     string // from BuildPlugin or BuildSidecar
	Containers int    // default 25
	Rate       int    // lines per second per container, default 200
	LineSize   int    // bytes of a typical line, default 200
	// Every LongEvery-th line is LongSize bytes (default 250 and 40 KiB;
	// LongEvery < 0: none).
	LongEvery   int
	LongSize    int
	StderrShare float64       // share of lines on stderr, default 0.3 (negative: none)
	Tick        time.Duration // pacing: each container writes what is due every Tick, default 10 ms
	Warmup      time.Duration // before the measured window, default 10 s
	Duration    time.Duration // the measured window, default 60 s
	// DeliveryTimeout bounds the wait for the sink to have every line once
	// the containers stopped writing (default 2 minutes).
	DeliveryTimeout time.Duration
	// ProfileDir, when set, adds a profile phase after the measured window
	// (the containers keep writing): a CPU profile of ProfileFor from the
	// shipper's /debug/pprof/profile (cpu.pprof), allocation profiles
	// before and after it (allocs-0.pprof, allocs-1.pprof: read with
	// go tool pprof -base), then `strace -c -f` for StraceFor
	// (strace.txt; 0: no strace). The shipper runs with its profiler on.
	ProfileDir string
	ProfileFor time.Duration // default 30 s
	StraceFor  time.Duration
	// LogOpts are every container's log-opts (plugin), e.g. no-file=true.
	LogOpts map[string]string
	Env     []string // added to the shipper's environment
	Args    []string // more sidecar flags
	KeepDir bool
	// Forward, when set, is a real Loki's push URL the sink hands every
	// push to before it answers (Sink.Forward): the latency then runs to
	// Loki's acceptance.
	Forward string
}

func (c *SteadyConfig) defaults() error {
	if c.Target != TargetPlugin && c.Target != TargetSidecar && !isPeer(c.Target) {
		return fmt.Errorf("steady: target %q: want %s, %s, %s or %s", c.Target, TargetPlugin, TargetSidecar, TargetGrafanaDriver, TargetPromtail)
	}
	setInt := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	setDur := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	setInt(&c.Containers, 25)
	setInt(&c.Rate, 200)
	setInt(&c.LineSize, 200)
	setInt(&c.LongEvery, 250)
	setInt(&c.LongSize, loggen.DefaultLongSize)
	switch {
	case c.StderrShare == 0:
		c.StderrShare = 0.3
	case c.StderrShare < 0:
		c.StderrShare = 0
	}
	setDur(&c.Tick, 10*time.Millisecond)
	setDur(&c.Warmup, 10*time.Second)
	setDur(&c.Duration, 60*time.Second)
	setDur(&c.DeliveryTimeout, 2*time.Minute)
	setDur(&c.ProfileFor, 30*time.Second)
	if isPeer(c.Target) && c.LongEvery > 0 && c.LongSize > daemonChunk {
		return fmt.Errorf("steady: %s ships each of dockerd's 16 KiB pieces of a long line as an entry of its own; run it without long lines (LongEvery < 0)", c.Target)
	}
	if c.Containers < 0 || c.Rate < 0 || c.LineSize < 0 || c.Tick < 0 || c.Warmup < 0 || c.Duration < 0 {
		return errors.New("steady: containers, rate, line size, tick, warm-up and duration must not be negative")
	}
	return nil
}

// loggen returns container name's line generator.
func (c *SteadyConfig) loggen(name string) loggen.Config {
	g := loggen.Config{ID: name, Size: c.LineSize, StderrShare: c.StderrShare}
	if c.LongEvery > 0 {
		g.LongEvery, g.LongSize = uint64(c.LongEvery), c.LongSize
	}
	return g
}

// logWriter is one container's output as the daemon writes it: the plugin's
// FIFO or the json-file log. writeLine writes one line (without its
// newline) and returns how many write(2) calls it took. Only the
// container's own goroutine calls it; Close may be called from another
// goroutine to end a write blocked on a FIFO.
type logWriter interface {
	writeLine(stream string, line []byte) (writes int, err error)
	Close() error
}

// steadyTarget is the shipper a steady run drives, running as its own
// process. The run owns it and calls close once, on every path.
type steadyTarget interface {
	proc() *child
	// listen is the shipper's listener with /metrics and /debug/pprof.
	listen() string
	metrics(ctx context.Context) (Samples, error)
	// finish is called once every line is at the sink: it ends the
	// containers' logs, stops the shipper and checks what it left
	// (positions, drops, unexpected requests).
	finish(ctx context.Context) error
	close()
}

// steadyCounts are one container's running totals, read by the run while
// the container's goroutine adds to them.
type steadyCounts struct {
	lines, lineBytes, writes atomic.Int64
}

// SteadyWindow is what one stretch of a run measured: the shipper's CPU,
// system calls and allocations, and the lines that went through.
type SteadyWindow struct {
	Wall           time.Duration
	User, System   time.Duration
	Lines          int64 // lines the containers wrote
	LineBytes      int64
	DaemonWrites   int64 // write(2) calls of the fake daemon (frames, or json-file entries)
	Delivered      int64 // entries the sink counted
	Pushes         int64 // pushes the sink accepted
	ReadCalls      int64 // the shipper's read(2)-like calls (/proc/<pid>/io syscr)
	WriteCalls     int64 // and write(2)-like calls (syscw)
	CtxSwitches    int64 // voluntary, every thread: the shipper went to sleep
	Involuntary    int64 // preempted
	Mallocs        float64
	AllocBytes     float64
	GCs            float64
	PositionsSaved float64 // sidecar: logferry_sidecar_positions_saved_total
	BenchCPU       time.Duration
}

// CPU is the shipper's user + system time.
func (w SteadyWindow) CPU() time.Duration { return w.User + w.System }

// CoreShare is the shipper's CPU as a share of one core (1 = a whole core).
func (w SteadyWindow) CoreShare() float64 { return w.CPU().Seconds() / w.Wall.Seconds() }

// CPUSecondsPerMillion is the shipper's CPU-seconds per million lines.
func (w SteadyWindow) CPUSecondsPerMillion() float64 {
	return w.CPU().Seconds() / float64(w.Lines) * 1e6
}

// PerLine divides v by the lines of the window.
func (w SteadyWindow) PerLine(v float64) float64 { return v / float64(w.Lines) }

// SteadyResult is what a steady run measured.
type SteadyResult struct {
	Config   SteadyConfig
	Window   SteadyWindow // the measured window
	Profiled SteadyWindow // the profile phase, if any (figures distorted by the profilers)
	Straced  SteadyWindow // the strace part of it
	Written  int64        // every line written, warm-up and profile phase included
	Received int64        // every line the sink counted
	Rejected int64
	Streams  int // distinct Loki streams at the sink
	// Distinct and Duplicates are the lines the sink told apart by their
	// container and sequence number.
	Distinct, Duplicates int64
	// Latency is from each line's daemon timestamp (its write) to its
	// push reaching the sink, for the entries that arrived in the window.
	Latency   Latency
	PeakRSS   int64
	RSS       int64
	Threads   int
	Dir       string
	PID       int
	Profiles  []string // files written into ProfileDir
	StraceErr error
}

// RunSteady runs the shipper cfg.Target under cfg's steady load and
// measures it over cfg.Duration after cfg.Warmup. It fails unless the sink
// got exactly every line written, every line byte, and the shipper left no
// drop or inconsistency behind.
func RunSteady(ctx context.Context, cfg SteadyConfig) (res SteadyResult, err error) {
	if err := cfg.defaults(); err != nil {
		return res, err
	}
	res.Config = cfg
	keep := cfg.KeepDir
	dir, sink, done, err := runDirAndSink("lf-steady-", &keep, &res.Dir)
	if err != nil {
		return res, err
	}
	defer done()
	sink.TrackLines()
	if cfg.Forward != "" {
		sink.Forward(cfg.Forward)
	}

	names := make([]string, cfg.Containers)
	for i := range names {
		names[i] = fmt.Sprintf("steady-%03d", i+1)
	}
	var target steadyTarget
	var writers []logWriter
	switch cfg.Target {
	case TargetPlugin:
		target, writers, err = startSteadyPlugin(ctx, cfg, dir, sink.URL(), names)
	case TargetSidecar:
		target, writers, err = startSteadySidecar(ctx, cfg, dir, sink.URL(), names)
	case TargetGrafanaDriver:
		target, writers, err = startSteadyDriver(ctx, cfg, dir, sink.URL(), names)
	case TargetPromtail:
		target, writers, err = startSteadyPromtail(ctx, cfg, dir, sink.URL(), names)
	}
	if err != nil {
		return res, err
	}
	defer target.close()
	p := target.proc()
	res.PID = p.PID()
	fail := func(what string, err error) (SteadyResult, error) {
		keep = true
		diag := diagnose(context.Background(), target.metrics, p.PID())
		return res, fmt.Errorf("%s: %w; sink: %d entries, %d pushes, %d rejected; %s: %s; its log: %s",
			what, err, sink.Entries(), sink.Requests(), sink.Rejected(), cfg.Target, diag, p.logPath)
	}

	// The containers: one goroutine each, owned here.
	wctx, stopWriting := context.WithCancel(ctx)
	defer stopWriting()
	counts := make([]steadyCounts, len(writers))
	werrs := make([]error, len(writers))
	var wg sync.WaitGroup
	start := time.Now()
	for i, w := range writers {
		// Spread the containers' bursts over a tick: applications are not
		// in step.
		phase := time.Duration(int64(cfg.Tick) * int64(i) / int64(len(writers)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			werrs[i] = paceLines(wctx, w, cfg.loggen(names[i]), cfg.Rate, cfg.Tick, start.Add(phase), &counts[i])
		}()
	}
	stopWriters := func() {
		stopWriting()
		wg.Wait()
	}
	// On a failure, a write blocked on a FIFO nobody reads ends when its
	// file is closed.
	defer func() {
		if err != nil {
			for _, w := range writers {
				w.Close()
			}
		}
		stopWriters()
	}()
	snap := func() (steadySnap, error) { return takeSnap(ctx, target, sink, counts) }
	waitFor := func(d time.Duration) error {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-p.Exited():
			return fmt.Errorf("the %s exited (%v); its log:\n%s", cfg.Target, p.waitErr, p.LogTail(20))
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := waitFor(cfg.Warmup); err != nil {
		return fail("warm-up", err)
	}
	s0, err := snap()
	if err != nil {
		return fail("measuring", err)
	}
	sink.MeasureLatency(true)
	if err := waitFor(cfg.Duration); err != nil {
		return fail("measured window", err)
	}
	s1, err := snap()
	if err != nil {
		return fail("measuring", err)
	}
	sink.MeasureLatency(false)
	res.Window, res.Latency = s1.sub(s0), sink.Latency()
	if cfg.ProfileDir != "" {
		if err := profilePhase(ctx, cfg, target, sink, counts, &res); err != nil {
			return fail("profiling", err)
		}
	}

	stopWriters()
	var total, totalBytes int64
	for i := range counts {
		total += counts[i].lines.Load()
		totalBytes += counts[i].lineBytes.Load()
	}
	res.Written = total
	if err := errors.Join(werrs...); err != nil && !errors.Is(err, context.Canceled) {
		return fail("writing the containers' logs", err)
	}
	dctx, cancel := context.WithTimeout(ctx, cfg.DeliveryTimeout)
	defer cancel()
	exited := p.HasExited
	if err := sink.WaitEntries(dctx, total, exited); err != nil {
		return fail("waiting for delivery", err)
	}
	if mem, err := ReadProcMem(p.PID()); err == nil {
		res.PeakRSS, res.RSS, res.Threads = mem.PeakRSS, mem.RSS, mem.Threads
	}
	if err := target.finish(ctx); err != nil {
		return fail("stopping", err)
	}
	res.Received, res.Rejected, res.Streams = sink.Entries(), sink.Rejected(), sink.Streams()
	var errs []error
	if res.Received != total {
		errs = append(errs, fmt.Errorf("the sink has %d entries, the containers wrote %d lines", res.Received, total))
	}
	if got := sink.Bytes(); got != totalBytes && !isPeer(cfg.Target) {
		errs = append(errs, fmt.Errorf("the sink has %d line bytes, the containers wrote %d", got, totalBytes))
	}
	if res.Rejected > 0 {
		errs = append(errs, fmt.Errorf("the sink could not decode %d pushes", res.Rejected))
	}
	var unparsed int64
	var first string
	res.Distinct, res.Duplicates, unparsed, first = sink.Lines()
	if res.Distinct != total || res.Duplicates > 0 || unparsed > 0 {
		errs = append(errs, fmt.Errorf("the sink has %d distinct lines of the %d written, %d again, %d not the generator's (first: %s)",
			res.Distinct, total, res.Duplicates, unparsed, first))
	}
	if err := errors.Join(errs...); err != nil {
		keep = true
		return res, fmt.Errorf("%w (the run's directory: %s)", err, dir)
	}
	return res, nil
}

// paceLines writes g's lines into w at rate lines a second from start on:
// every tick, the lines due since the last one. It returns ctx's error when
// ctx ends, or the first write error.
func paceLines(ctx context.Context, w logWriter, g loggen.Config, rate int, tick time.Duration, start time.Time, c *steadyCounts) error {
	if err := wait(ctx, time.Until(start)); err != nil {
		return err
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	var line []byte
	var seq uint64
	for {
		due := uint64(time.Since(start).Seconds() * float64(rate))
		for seq < due {
			seq++
			var stream string
			stream, line = g.AppendLine(line[:0], seq)
			n, err := w.writeLine(stream, line)
			c.writes.Add(int64(n))
			if err != nil {
				return fmt.Errorf("%s line %d: %w", g.ID, seq, err)
			}
			c.lines.Add(1)
			c.lineBytes.Add(int64(len(line)))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// steadySnap is the counters at one moment.
type steadySnap struct {
	at                       time.Time
	user, sys                time.Duration
	io                       ProcIO
	voluntary, involuntary   int64
	m                        Samples
	lines, lineBytes, writes int64
	delivered, pushes        int64
	bench                    time.Duration
}

func takeSnap(ctx context.Context, t steadyTarget, sink *Sink, counts []steadyCounts) (s steadySnap, err error) {
	pid := t.proc().PID()
	// The cheap readings first and close together; the scrape last.
	s.at = time.Now()
	for i := range counts {
		s.lines += counts[i].lines.Load()
		s.lineBytes += counts[i].lineBytes.Load()
		s.writes += counts[i].writes.Load()
	}
	s.delivered, s.pushes = sink.Entries(), sink.Requests()
	var errs [4]error
	s.user, s.sys, errs[0] = ProcCPU(pid)
	s.io, errs[1] = ReadProcIO(pid)
	s.voluntary, s.involuntary, errs[2] = procCtxSwitches(pid)
	if bu, bs, err := ProcCPU(os.Getpid()); err == nil {
		s.bench = bu + bs
	}
	s.m, errs[3] = t.metrics(ctx)
	return s, errors.Join(errs[:]...)
}

// sub is the window from b to s.
func (s steadySnap) sub(b steadySnap) SteadyWindow {
	d := func(name string) float64 { return s.m[name] - b.m[name] }
	return SteadyWindow{
		Wall: s.at.Sub(b.at), User: s.user - b.user, System: s.sys - b.sys,
		Lines: s.lines - b.lines, LineBytes: s.lineBytes - b.lineBytes, DaemonWrites: s.writes - b.writes,
		Delivered: s.delivered - b.delivered, Pushes: s.pushes - b.pushes,
		ReadCalls: s.io.ReadCalls - b.io.ReadCalls, WriteCalls: s.io.WriteCalls - b.io.WriteCalls,
		CtxSwitches: s.voluntary - b.voluntary, Involuntary: s.involuntary - b.involuntary,
		Mallocs: d("go_memstats_mallocs_total"), AllocBytes: d("go_memstats_alloc_bytes_total"),
		GCs: d("go_gc_duration_seconds_count"), PositionsSaved: d("logferry_sidecar_positions_saved_total"),
		BenchCPU: s.bench - b.bench,
	}
}

// procCtxSwitches sums the context switches of every thread of pid
// (/proc/<pid>/task/*/status); a thread that exited is not counted.
func procCtxSwitches(pid int) (voluntary, involuntary int64, err error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) == 0 {
		return 0, 0, fmt.Errorf("/proc/%d/task: no threads (%v)", pid, err)
	}
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // the thread exited
		}
		v, iv := parseCtxSwitches(b)
		voluntary += v
		involuntary += iv
	}
	return voluntary, involuntary, nil
}

func parseCtxSwitches(b []byte) (voluntary, involuntary int64) {
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "voluntary_ctxt_switches":
			voluntary = n
		case "nonvoluntary_ctxt_switches":
			involuntary = n
		}
	}
	return voluntary, involuntary
}
