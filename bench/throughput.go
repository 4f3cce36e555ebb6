package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/logferry/logferry/internal/loggen"
)

// ErrDropped: the plugin dropped entries during a throughput run.
var ErrDropped = errors.New("the plugin dropped entries")

// ThroughputConfig is one FIFO -> plugin -> sink run.
type ThroughputConfig struct {
	Binary   string // plugin binary, from BuildPlugin
	Lines    int    // frames to write (one line each)
	LineSize int    // bytes per line
	// JSONLines writes JSON objects instead of plain loggen lines (see
	// loggen.Config.JSON), for the pipelines that parse JSON.
	JSONLines bool
	LogOpts   map[string]string // the container's log-opts, e.g. no-file=true
	// WriteSize is the size of each write into the FIFO (default 1 MiB): the
	// write returns when the plugin has read all but the pipe's last 64 KiB.
	WriteSize int
	// FrameWrites writes each frame with a write(2) of its own, as dockerd's
	// plugin adapter does, instead of WriteSize chunks: a plugin that keeps
	// up then reads about one frame per read(2).
	FrameWrites bool
	// Timeout bounds the whole run (default 10 minutes).
	Timeout time.Duration
	// DeliveryTimeout bounds the wait for the sink to have every entry
	// once the FIFO is closed (default 2 minutes).
	DeliveryTimeout time.Duration
	// PerfData, when set, records a CPU profile of the plugin with
	// `perf record -g` into this file while the frames are written and
	// delivered. perf's sampling costs the plugin a little: do not take the
	// figures of a profiled run.
	PerfData string
	// KeepDir keeps the run's directory (socket, state, plugin.log).
	KeepDir bool
	// PluginEnv is added to the plugin's environment (e.g. GOMAXPROCS=1).
	PluginEnv []string
	// SinkDelay delays every push's answer, as a slow Loki would (the
	// plugin then fills its queue and drops: the run fails with ErrDropped).
	SinkDelay time.Duration
}

// ThroughputResult is what a run measured. CPU is the plugin's alone (every
// thread, user and system) from just before StartLogging until the sink had
// every entry.
type ThroughputResult struct {
	Frames      int64
	FrameBytes  int64 // what went into the FIFO, length prefixes included
	LineBytes   int64
	Received    int64   // entries the sink counted
	Dropped     float64 // entries the plugin counted as dropped
	WriteTime   time.Duration
	Wall        time.Duration // first write to the last entry at the sink
	User        time.Duration
	System      time.Duration
	PeakRSS     int64 // VmHWM, for the whole life of the plugin process
	RSS         int64 // VmRSS at the end
	Threads     int
	Pushes      int64
	ReadFrames  float64 // logferry_plugin_frames_read_total
	Dir         string  // the run's directory if KeepDir
	LogOpts     map[string]string
	PerfData    string
	LineSize    int
	FrameWrites bool
	StartupCPU  time.Duration // CPU the plugin used to start, not counted
	GoRoutines  float64       // go_goroutines after the run
	HeapInuse   float64       // go_memstats_heap_inuse_bytes after the run
	GCCount     float64       // go_gc_duration_seconds_count after the run
	AllocsBytes float64       // go_memstats_alloc_bytes_total after the run
	ReadCalls   int64         // read(2) calls the plugin made during the run
	WriteCalls  int64         // write(2) calls the plugin made during the run
}

// CPU is the plugin's user + system time for the run.
func (r ThroughputResult) CPU() time.Duration { return r.User + r.System }

// MiBPerCPUSecond is MiB of frames per second of the plugin's CPU: the
// figure the goal is set in.
func (r ThroughputResult) MiBPerCPUSecond() float64 {
	return MiB(r.FrameBytes) / r.CPU().Seconds()
}

// LinesPerSecond is lines delivered per second of wall time.
func (r ThroughputResult) LinesPerSecond() float64 {
	return float64(r.Received) / r.Wall.Seconds()
}

// WallMiBPerSecond is MiB of frames per second of wall time.
func (r ThroughputResult) WallMiBPerSecond() float64 {
	return MiB(r.FrameBytes) / r.Wall.Seconds()
}

// RunThroughput starts the plugin and a sink, writes cfg.Lines frames into
// one FIFO as fast as the plugin takes them, stops the stream and waits
// until the sink has every entry the plugin did not drop. A run in which the
// plugin dropped entries fails with ErrDropped (its figures are in res).
func RunThroughput(ctx context.Context, cfg ThroughputConfig) (res ThroughputResult, err error) {
	if cfg.Lines <= 0 || cfg.LineSize <= 0 {
		return res, errors.New("throughput: Lines and LineSize must be positive")
	}
	if cfg.WriteSize <= 0 {
		cfg.WriteSize = 1 << 20
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Minute
	}
	if cfg.DeliveryTimeout <= 0 {
		cfg.DeliveryTimeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	res.LogOpts, res.LineSize, res.FrameWrites = cfg.LogOpts, cfg.LineSize, cfg.FrameWrites

	frames, err := EncodeFrames(loggen.Config{ID: "bench", Lines: uint64(cfg.Lines), Size: cfg.LineSize, JSON: cfg.JSONLines}, time.Now())
	if err != nil {
		return res, err
	}
	res.Frames, res.FrameBytes, res.LineBytes = frames.Count, int64(len(frames.Buf)), frames.LineBytes

	keep := cfg.KeepDir // a failure below keeps the directory too
	dir, sink, done, err := runDirAndSink("lf-bench-", &keep, &res.Dir)
	if err != nil {
		return res, err
	}
	defer done()
	sink.SetDelay(cfg.SinkDelay)
	p, err := StartPlugin(ctx, PluginConfig{Binary: cfg.Binary, Dir: dir, LokiURL: sink.URL(), Env: cfg.PluginEnv})
	if err != nil {
		return res, err
	}
	defer p.Stop()

	// A second stream with the same options, idle, keeps the endpoint's
	// dispatcher alive after the measured stream ended: its series, and the
	// count of what it dropped, are deleted with it.
	keepalive := filepath.Join(dir, "keepalive.fifo")
	if err := MakeFIFO(keepalive); err != nil {
		return res, err
	}
	if err := p.StartLogging(ctx, keepalive, ContainerInfo("/bench-keepalive", cfg.LogOpts)); err != nil {
		return res, err
	}
	kw, err := OpenWriter(keepalive)
	if err != nil {
		return res, err
	}
	defer kw.Close()

	fifo := filepath.Join(dir, "bench.fifo")
	if err := MakeFIFO(fifo); err != nil {
		return res, err
	}
	var perf *exec.Cmd
	if cfg.PerfData != "" {
		if perf, err = startPerf(p.PID(), cfg.PerfData); err != nil {
			return res, err
		}
		res.PerfData = cfg.PerfData
		defer stopPerf(perf)
	}

	u0, s0, err := ProcCPU(p.PID())
	if err != nil {
		return res, err
	}
	res.StartupCPU = u0 + s0
	io0, err := ReadProcIO(p.PID())
	if err != nil {
		return res, err
	}
	if err := p.StartLogging(ctx, fifo, ContainerInfo("/bench", cfg.LogOpts)); err != nil {
		return res, err
	}
	w, err := OpenWriter(fifo)
	if err != nil {
		return res, err
	}
	start := time.Now()
	for off := 0; off < len(frames.Buf); {
		end := min(off+cfg.WriteSize, len(frames.Buf))
		if cfg.FrameWrites {
			end = off + 4 + int(binary.BigEndian.Uint32(frames.Buf[off:]))
		}
		_, err := w.Write(frames.Buf[off:end])
		off = end
		if err != nil {
			w.Close()
			return res, fmt.Errorf("writing the FIFO: %w; the plugin's log:\n%s", err, p.LogTail(20))
		}
		if ctx.Err() != nil {
			w.Close()
			return res, ctx.Err()
		}
	}
	res.WriteTime = time.Since(start)
	// The daemon's order: StopLogging, then close its end.
	if err := p.StopLogging(ctx, fifo); err != nil {
		w.Close()
		return res, err
	}
	if err := w.Close(); err != nil {
		return res, err
	}

	// Delivery has its own bound: a stuck plugin fails the run in minutes.
	wctx, wcancel := context.WithTimeout(ctx, cfg.DeliveryTimeout)
	defer wcancel()
	want := frames.Count
	fail := func(what string, err error) (ThroughputResult, error) {
		diag := p.Diagnose(context.Background())
		// A goroutine dump shows where it is stuck.
		keep = true
		p.Quit()
		return res, fmt.Errorf("%s: %w; sink: %d entries, %d pushes, %d rejected; plugin: %s; the plugin's goroutines are dumped in %s",
			what, err, sink.Entries(), sink.Requests(), sink.Rejected(), diag, filepath.Join(dir, "plugin.log"))
	}
	// Once the dispatcher has been handed every entry, what it dropped is
	// final; then the keep-alive stream goes and the dispatcher flushes.
	if res.Dropped, err = waitHandedOver(wctx, p, want); err != nil {
		return fail("waiting for the plugin to hand every entry to its dispatcher", err)
	}
	if err := p.StopLogging(ctx, keepalive); err != nil {
		return res, err
	}
	kw.Close()
	err = sink.WaitEntries(wctx, want-int64(res.Dropped), nil)
	res.Wall = time.Since(start)
	u1, s1, cpuErr := ProcCPU(p.PID())
	io1, ioErr := ReadProcIO(p.PID())
	res.ReadCalls, res.WriteCalls = io1.ReadCalls-io0.ReadCalls, io1.WriteCalls-io0.WriteCalls
	res.Received = sink.Entries()
	res.Pushes = sink.Requests()
	if err != nil {
		return fail(fmt.Sprintf("waiting for delivery (%.0f entries dropped)", res.Dropped), err)
	}
	if err := errors.Join(cpuErr, ioErr); err != nil {
		return res, err
	}
	res.User, res.System = u1-u0, s1-s0
	if cfg.PerfData != "" {
		stopPerf(perf)
	}
	mem, err := ReadProcMem(p.PID())
	if err != nil {
		return res, err
	}
	res.PeakRSS, res.RSS, res.Threads = mem.PeakRSS, mem.RSS, mem.Threads
	m, err := p.Metrics(ctx)
	if err != nil {
		return res, err
	}
	res.ReadFrames = m["logferry_plugin_frames_read_total"]
	res.GoRoutines = m["go_goroutines"]
	res.HeapInuse = m["go_memstats_heap_inuse_bytes"]
	res.GCCount = m["go_gc_duration_seconds_count"]
	res.AllocsBytes = m["go_memstats_alloc_bytes_total"]
	if res.Dropped > 0 {
		return res, fmt.Errorf("%w: %.0f of %d entries (the sink or the machine was slower than the plugin's reading, and its queue filled); the figures are not comparable",
			ErrDropped, res.Dropped, want)
	}
	if res.Received+int64(res.Dropped) != want {
		return res, fmt.Errorf("the sink has %d entries and the plugin dropped %.0f, of %d written", res.Received, res.Dropped, want)
	}
	if sink.Rejected() > 0 {
		return res, fmt.Errorf("the sink could not decode %d pushes", sink.Rejected())
	}
	if got := sink.Bytes(); got != frames.LineBytes {
		return res, fmt.Errorf("the sink received %d line bytes, %d were written", got, frames.LineBytes)
	}
	return res, nil
}

// waitHandedOver waits until the plugin's dispatchers have been handed n
// entries (queued or dropped: logferry_loki_entries_received_total counts
// both) and returns how many they dropped.
func waitHandedOver(ctx context.Context, p *Plugin, n int64) (dropped float64, err error) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		m, err := p.Metrics(ctx)
		if err == nil && m["logferry_loki_entries_received_total"] >= float64(n) {
			return m["logferry_loki_entries_dropped_total"], nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("%.0f of %d handed over", m["logferry_loki_entries_received_total"], n)
			}
			return 0, fmt.Errorf("%w (%v)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// startPerf records a call-graph profile of pid until stopPerf.
func startPerf(pid int, out string) (*exec.Cmd, error) {
	path, err := exec.LookPath("perf")
	if err != nil {
		return nil, fmt.Errorf("-perf needs perf (Debian: linux-perf): %w", err)
	}
	cmd := exec.Command(path, "record", "-g", "-F", "999", "-p", strconv.Itoa(pid), "-o", out, "--quiet")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	// perf needs a moment to attach to every thread.
	time.Sleep(500 * time.Millisecond)
	return cmd, nil
}

// stopPerf ends a recording (SIGINT, as Ctrl-C does) and waits for perf to
// write it; a second call does nothing.
func stopPerf(cmd *exec.Cmd) {
	if cmd == nil || cmd.ProcessState != nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	_ = cmd.Wait()
}
