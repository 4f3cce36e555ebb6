// Command fifobench measures the logging plugin with no Docker daemon: it
// builds ./cmd/logferry-plugin, runs it as its own process, plays the daemon
// over the plugin's socket and FIFOs, and plays Loki with a sink that decodes
// and counts every push (package bench).
//
//	fifobench -mode throughput   1,000,000 frames of 250-byte lines through one
//	                             FIFO, with the local copy for docker logs and
//	                             with no-file=true; MiB of frames per CPU-second
//	                             of the plugin, wall time, lines/s, peak RSS
//	fifobench -mode idle         500 streams that wrote one line each and stay
//	                             open: RSS and goroutines, per stream, and the
//	                             goroutines back to the baseline after stopping
//	fifobench                    both
//
// Every run prints one line; a line starting with RESULT sums up a mode
// against its goal. Exit status 1 when a run failed (not when a goal was
// missed).
package main

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/logferry/logferry/bench"
)

// Goals, from the issue that asked for these benchmarks.
const (
	goalMiBPerCPUSecond = 110.0
	goalIdleRSSMiB      = 40.0
	goalGoroutines      = 1.0
)

type flags struct {
	mode      string
	lines     int
	size      int
	jsonLines bool
	runs      int
	variants  string
	streams   int
	idleLines int
	settle    time.Duration
	pluginBin string
	perfDir   string
	writeSize int
	keep      bool
	sinkDelay time.Duration
	pluginEnv string
}

func main() {
	var f flags
	flag.StringVar(&f.mode, "mode", "all", "throughput, idle or all")
	flag.IntVar(&f.lines, "lines", 1_000_000, "throughput: frames to write")
	flag.IntVar(&f.size, "size", 250, "bytes per line")
	flag.BoolVar(&f.jsonLines, "json-lines", false, "throughput: write JSON lines ({\"level\":...,\"seq\":N,\"stream\":...,\"msg\":\"loggen ...\"}), as a service that logs JSON does; the +json pipeline reads them")
	flag.IntVar(&f.runs, "runs", 3, "throughput: runs of each variant (a fresh plugin process each)")
	flag.StringVar(&f.variants, "variants", "file,no-file", "throughput: comma-separated variants: file (the default, with the local copy for docker logs), no-file (log-opt no-file=true); a +frames suffix (file+frames) writes each frame with its own write(2), as dockerd does, instead of -write-size chunks")
	flag.IntVar(&f.streams, "streams", 500, "idle: streams")
	flag.IntVar(&f.idleLines, "idle-lines", 1, "idle: lines each stream writes (in one write) before it goes quiet")
	flag.DurationVar(&f.settle, "settle", 5*time.Second, "idle: wait this long after delivery for a second reading")
	flag.StringVar(&f.pluginBin, "plugin-bin", "", "plugin binary to run (default: go build ./cmd/logferry-plugin into a temporary directory)")
	flag.StringVar(&f.perfDir, "perf", "", "throughput: after the measured runs, one more run of each variant under `perf record -g`, data written to DIR/<variant>.perf.data (the profiled run's figures are not used)")
	flag.IntVar(&f.writeSize, "write-size", 1<<20, "throughput: bytes per write into the FIFO")
	flag.DurationVar(&f.sinkDelay, "sink-delay", 0, "throughput: delay every push's answer, as a slow Loki would (the plugin then drops past its queue; the run fails and says how many)")
	flag.StringVar(&f.pluginEnv, "plugin-env", "", "space-separated KEY=VALUE added to the plugin's environment, e.g. \"GOMAXPROCS=1 GOGC=200\"")
	flag.BoolVar(&f.keep, "keep", false, "keep each run's directory (socket, state, plugin.log)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "fifobench: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, f); err != nil {
		fmt.Fprintln(os.Stderr, "fifobench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, f flags) error {
	bin := f.pluginBin
	if bin == "" {
		dir, err := os.MkdirTemp("", "fifobench-bin-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if bin, err = bench.BuildPlugin(ctx, dir); err != nil {
			return err
		}
	}
	fmt.Printf("# fifobench: plugin %s%s, %d CPUs, load average %s\n", bin, envNote(f.pluginEnv), runtime.NumCPU(), bench.LoadAvg())
	switch f.mode {
	case "throughput":
		return throughput(ctx, f, bin)
	case "idle":
		return idle(ctx, f, bin)
	case "all":
		if err := throughput(ctx, f, bin); err != nil {
			return err
		}
		return idle(ctx, f, bin)
	default:
		return fmt.Errorf("-mode %q: want throughput, idle or all", f.mode)
	}
}

// variant parses a -variants item: file or no-file, then modifiers each
// after a +: frames (one write(2) per frame), or a pipeline (see
// bench.Pipelines).
func variant(v string) (opts map[string]string, frameWrites bool, err error) {
	parts := strings.Split(v, "+")
	switch parts[0] {
	case "file":
		opts = map[string]string{}
	case "no-file":
		opts = map[string]string{"no-file": "true"}
	default:
		return nil, false, fmt.Errorf("-variants: unknown variant %q (want file or no-file, then +frames or +%s)", v,
			strings.ReplaceAll(bench.PipelineNames(), ", ", ", +"))
	}
	for _, m := range parts[1:] {
		if m == "frames" {
			frameWrites = true
			continue
		}
		p, ok := bench.Pipelines[m]
		if !ok {
			return nil, false, fmt.Errorf("-variants: unknown modifier %q in %q", m, v)
		}
		maps.Copy(opts, p)
	}
	return opts, frameWrites, nil
}

func throughput(ctx context.Context, f flags, bin string) error {
	for v := range strings.SplitSeq(f.variants, ",") {
		opts, frameWrites, err := variant(v)
		if err != nil {
			return err
		}
		var rates, walls, hwms []float64
		for i := 1; i <= f.runs; i++ {
			r, err := bench.RunThroughput(ctx, bench.ThroughputConfig{
				Binary: bin, Lines: f.lines, LineSize: f.size, JSONLines: f.jsonLines, LogOpts: opts, WriteSize: f.writeSize, FrameWrites: frameWrites, KeepDir: f.keep, SinkDelay: f.sinkDelay, PluginEnv: strings.Fields(f.pluginEnv),
			})
			if err != nil {
				return fmt.Errorf("throughput %s run %d: %w", v, i, err)
			}
			printThroughput(v, fmt.Sprintf("run %d/%d", i, f.runs), r)
			rates = append(rates, r.MiBPerCPUSecond())
			walls = append(walls, r.LinesPerSecond())
			hwms = append(hwms, bench.MiB(r.PeakRSS))
		}
		rate := bench.Median(rates)
		goal := fmt.Sprintf("goal >= %.0f MiB/CPU-s: %s", goalMiBPerCPUSecond, bench.Verdict(rate >= goalMiBPerCPUSecond))
		if frameWrites {
			goal = "no goal (the goal is set for large writes)"
		}
		fmt.Printf("RESULT throughput %-14s %d x %d B lines: median %.1f MiB of frames per plugin CPU-second (runs %s), median %.0f lines/s wall, median peak RSS %.1f MiB; %s\n",
			v, f.lines, f.size, rate, bench.JoinFloats(rates, "%.1f"), bench.Median(walls), bench.Median(hwms), goal)
		if f.perfDir != "" {
			if err := os.MkdirAll(f.perfDir, 0o755); err != nil {
				return err
			}
			out := filepath.Join(f.perfDir, v+".perf.data")
			r, err := bench.RunThroughput(ctx, bench.ThroughputConfig{
				Binary: bin, Lines: f.lines, LineSize: f.size, JSONLines: f.jsonLines, LogOpts: opts, WriteSize: f.writeSize, FrameWrites: frameWrites, PerfData: out, PluginEnv: strings.Fields(f.pluginEnv),
			})
			if err != nil {
				return fmt.Errorf("throughput %s under perf: %w", v, err)
			}
			printThroughput(v, "perf run", r)
			fmt.Printf("# profile: perf report -i %s --no-children --sort symbol   (binary %s)\n", out, bin)
		}
	}
	return nil
}

func printThroughput(variant, label string, r bench.ThroughputResult) {
	fmt.Printf("throughput %-14s %s: %d frames, %.1f MiB of frames (%.1f MiB of lines) in %.2f s wall (written in %.2f s): %.0f lines/s, %.1f MiB/s wall; plugin CPU %.2f s (user %.2f, sys %.2f) = %.1f MiB/CPU-s; peak RSS %.1f MiB, RSS %.1f MiB, %d threads; %d pushes, %.0f dropped; plugin syscalls per frame: %.3f reads, %.3f writes; load average %s\n",
		variant, label, r.Frames, bench.MiB(r.FrameBytes), bench.MiB(r.LineBytes), r.Wall.Seconds(), r.WriteTime.Seconds(),
		r.LinesPerSecond(), r.WallMiBPerSecond(), r.CPU().Seconds(), r.User.Seconds(), r.System.Seconds(),
		r.MiBPerCPUSecond(), bench.MiB(r.PeakRSS), bench.MiB(r.RSS), r.Threads, r.Pushes, r.Dropped,
		float64(r.ReadCalls)/float64(r.Frames), float64(r.WriteCalls)/float64(r.Frames), bench.LoadAvg())
}

func idle(ctx context.Context, f flags, bin string) error {
	r, err := bench.RunIdle(ctx, bench.IdleConfig{
		Binary: bin, Streams: f.streams, Lines: f.idleLines, LineSize: f.size, Settle: f.settle, KeepDir: f.keep, PluginEnv: strings.Fields(f.pluginEnv),
	})
	snap := func(s bench.Snapshot) string {
		return fmt.Sprintf("RSS %.1f MiB, Go heap in use %.1f MiB, Go sys %.1f MiB, %.0f goroutines, %d threads, %d FDs, %.0f streams",
			bench.MiB(s.RSS), s.HeapInuse/(1<<20), s.Sys/(1<<20), s.Goroutines, s.Threads, s.FDs, s.Streams)
	}
	if r.Base.RSS > 0 {
		fmt.Printf("idle baseline (0 streams): %s\n", snap(r.Base))
	}
	if r.One.RSS > 0 {
		fmt.Printf("idle 1 stream: %s\n", snap(r.One))
	}
	if r.Loaded.RSS > 0 {
		fmt.Printf("idle %d streams, %d lines each, %d lines delivered to %d Loki streams (started in %.2f s): %s\n",
			r.Streams, r.Lines, r.Received, r.Labels, r.StartAll.Seconds(), snap(r.Loaded))
		fmt.Printf("idle %d streams after %s: %s\n", r.Streams, r.Settle, snap(r.Settled))
	}
	if r.Stopped.RSS > 0 {
		fmt.Printf("idle all stopped (%.2f s after the first StopLogging): %s\n", r.StopWait.Seconds(), snap(r.Stopped))
	}
	if err != nil {
		return fmt.Errorf("idle: %w", err)
	}
	rss := bench.MiB(max(r.Loaded.RSS, r.Settled.RSS))
	gps := r.GoroutinesPerStream()
	fmt.Printf("RESULT idle %d streams (%d lines each): RSS %.1f MiB (%.1f after %s; %.1f KiB per stream), %.2f goroutines per stream (+%.0f shared by all), goroutines back to %.0f (baseline %.0f) after stopping; goals: RSS < %.0f MiB: %s, <= %.0f goroutine per stream: %s\n",
		r.Streams, r.Lines, bench.MiB(r.Loaded.RSS), bench.MiB(r.Settled.RSS), r.Settle, r.RSSPerStream()/1024, gps, r.SharedGoroutines(),
		r.Stopped.Goroutines, r.Base.Goroutines, goalIdleRSSMiB, bench.Verdict(rss < goalIdleRSSMiB), goalGoroutines, bench.Verdict(gps <= goalGoroutines))
	return nil
}

func envNote(env string) string {
	if env == "" {
		return ""
	}
	return " with " + env
}
