// Command sidecarbench measures the sidecar with no Docker daemon: it writes
// a container's json-file log as the daemon writes it, builds
// ./cmd/logferry-sidecar and runs it as its own process, plays the Docker
// Engine API on a unix socket (one running json-file container), and plays
// Loki with a sink that decodes and counts every push (package bench).
//
//	sidecarbench    1,000,000 lines of 250 bytes (30% stderr) in one
//	                pre-written <id>-json.log, read by a sidecar started
//	                with no saved position; MiB of json-file per CPU-second
//	                of the sidecar, lines/s wall (sidecar start to the last
//	                line at the sink), peak RSS; the median of -runs runs
//
// Every run prints one line; the line starting with RESULT sums up the runs
// against the goals. -cpuprofile FILE runs once more, with a CPU profile
// fetched from the sidecar's /debug/pprof/profile (that run's figures are
// not used). Exit status 1 when a run failed (not when a goal was missed).
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/logferry/logferry/bench"
	"github.com/logferry/logferry/internal/loggen"
)

// Goals, from the issue that asked for this benchmark.
const (
	goalMiBPerCPUSecond = 150.0
	goalPeakRSSMiB      = 64.0
)

type flags struct {
	lines        int
	size         int
	stderr       float64
	runs         int
	sidecarBin   string
	announce     bool
	timeout      time.Duration
	cpuProfile   string
	profileFor   time.Duration
	keep         bool
	sidecarEnv   string
	sidecarFlags string
	pipeline     string
	jsonLines    bool
}

func main() {
	var f flags
	flag.IntVar(&f.lines, "lines", 1_000_000, "lines in the json-file log")
	flag.IntVar(&f.size, "size", 250, "bytes of text per line")
	flag.Float64Var(&f.stderr, "stderr", 0.3, "share of the lines on stderr")
	flag.IntVar(&f.runs, "runs", 3, "measured runs (a fresh sidecar process and state directory each, the same log)")
	flag.StringVar(&f.sidecarBin, "sidecar-bin", "", "sidecar binary to run (default: CGO_ENABLED=0 go build -trimpath ./cmd/logferry-sidecar into a temporary directory)")
	flag.BoolVar(&f.announce, "announce", false, "report the container with a start event once the sidecar is ready, instead of listing it from the start as a container that ran before the sidecar")
	flag.DurationVar(&f.timeout, "timeout", 5*time.Minute, "how long a run may wait for the sink to have every line")
	flag.StringVar(&f.cpuProfile, "cpuprofile", "", "after the measured runs, one more run with a CPU profile of the sidecar (its /debug/pprof/profile) written to `FILE`; read it with go tool pprof -top FILE")
	flag.DurationVar(&f.profileFor, "profile-for", 0, "length of the -cpuprofile profile (default: the longest measured run's wall time plus 1 s, or 30 s with -runs 0)")
	flag.StringVar(&f.sidecarEnv, "sidecar-env", "", "space-separated KEY=VALUE added to the sidecar's environment, e.g. \"GOMAXPROCS=1 GOGC=200\"")
	flag.StringVar(&f.sidecarFlags, "sidecar-flags", "", "space-separated flags added to the sidecar's, e.g. \"--loki-batch-size=4MiB\"")
	flag.StringVar(&f.pipeline, "pipeline", "", "add one of the benchmarks' pipelines ("+bench.PipelineNames()+"; see bench.Pipelines) through a --config file")
	flag.BoolVar(&f.jsonLines, "json-lines", false, "write JSON lines ({\"level\":...,\"seq\":N,\"stream\":...,\"msg\":\"loggen ...\"}), as a service that logs JSON does; -pipeline json reads them")
	flag.BoolVar(&f.keep, "keep", false, "keep each run's directory (socket, state, sidecar.log)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "sidecarbench: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, f); err != nil {
		fmt.Fprintln(os.Stderr, "sidecarbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, f flags) error {
	if f.lines <= 0 || f.size <= 0 || f.runs < 0 {
		return fmt.Errorf("-lines and -size must be positive, -runs not negative")
	}
	if f.runs == 0 && f.cpuProfile == "" {
		return fmt.Errorf("-runs 0 without -cpuprofile: nothing to do")
	}
	if f.cpuProfile != "" {
		// The profile is written by the run, whose working directory is
		// not the caller's business: resolve it now.
		abs, err := filepath.Abs(f.cpuProfile)
		if err != nil {
			return err
		}
		f.cpuProfile = abs
	}
	dir, err := bench.TempDir("lf-sidecarbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := f.sidecarBin
	if bin == "" {
		if bin, err = bench.BuildSidecar(ctx, dir); err != nil {
			return err
		}
	}
	fmt.Printf("# sidecarbench: sidecar %s%s%s, %d CPUs, load average %s\n", bin, note(" with env ", f.sidecarEnv), note(" with flags ", f.sidecarFlags), runtime.NumCPU(), bench.LoadAvg())

	log, err := bench.WriteJSONFileLog(filepath.Join(dir, "containers"), "sidecarbench",
		loggen.Config{ID: "sidecarbench", Lines: uint64(f.lines), Size: f.size, StderrShare: f.stderr, JSON: f.jsonLines}, time.Now())
	if err != nil {
		return fmt.Errorf("writing the json-file log: %w", err)
	}
	discovery := "listed at start (running before the sidecar)"
	if f.announce {
		discovery = "announced by a start event once the sidecar is ready"
	}
	fmt.Printf("# json-file log: %d lines (%d on stderr) of %d B text, %.1f MiB on disk (%.1f MiB of text), %s, written in %.2f s; the container is %s\n",
		log.Lines, log.Stderr, f.size, bench.MiB(log.FileBytes), bench.MiB(log.LineBytes), log.Path, log.WriteTime.Seconds(), discovery)

	args := strings.Fields(f.sidecarFlags)
	if f.pipeline != "" {
		path, err := bench.WritePipelineConfig(dir, f.pipeline)
		if err != nil {
			return fmt.Errorf("-pipeline: %w", err)
		}
		args = append(args, "--config="+path)
		fmt.Printf("# pipeline %s: %s\n", f.pipeline, bench.Pipelines[f.pipeline])
	}
	cfg := bench.SidecarThroughputConfig{
		Binary: bin, Log: log, Announce: f.announce, DeliveryTimeout: f.timeout, KeepDir: f.keep,
		SidecarEnv: strings.Fields(f.sidecarEnv), SidecarArgs: args,
	}
	var rates, speeds, hwms, walls []float64
	for i := 1; i <= f.runs; i++ {
		r, err := bench.RunSidecarThroughput(ctx, cfg)
		if err != nil {
			return fmt.Errorf("run %d: %w", i, err)
		}
		printRun(fmt.Sprintf("run %d/%d", i, f.runs), r)
		rates = append(rates, r.MiBPerCPUSecond())
		speeds = append(speeds, r.LinesPerSecond())
		hwms = append(hwms, bench.MiB(r.PeakRSS))
		walls = append(walls, r.Wall.Seconds())
	}
	if f.runs > 0 {
		rate, hwm := bench.Median(rates), bench.Median(hwms)
		fmt.Printf("RESULT sidecar throughput %d x %d B lines (%.1f MiB of json-file): median %.1f MiB of json-file per sidecar CPU-second (runs %s), median %.0f lines/s wall, median peak RSS %.1f MiB (runs %s); goals: >= %.0f MiB/CPU-s: %s, peak RSS < %.0f MiB: %s\n",
			log.Lines, f.size, bench.MiB(log.FileBytes), rate, bench.JoinFloats(rates, "%.1f"), bench.Median(speeds), hwm, bench.JoinFloats(hwms, "%.1f"),
			goalMiBPerCPUSecond, bench.Verdict(rate >= goalMiBPerCPUSecond), goalPeakRSSMiB, bench.Verdict(hwm < goalPeakRSSMiB))
	}
	if f.cpuProfile != "" {
		cfg.CPUProfile = f.cpuProfile
		cfg.ProfileFor = f.profileFor
		if cfg.ProfileFor <= 0 && len(walls) > 0 {
			cfg.ProfileFor = time.Duration(math.Ceil(slices.Max(walls))+1) * time.Second
		}
		r, err := bench.RunSidecarThroughput(ctx, cfg)
		if err != nil {
			return fmt.Errorf("profiled run: %w", err)
		}
		printRun("profiled run", r)
		fmt.Printf("# profile: go tool pprof -top %s   (binary %s)\n", f.cpuProfile, bin)
	}
	return nil
}

func printRun(label string, r bench.SidecarThroughputResult) {
	fmt.Printf("sidecar %s: %d lines, %.1f MiB of json-file in %.2f s wall: %.0f lines/s, %.1f MiB/s wall; sidecar CPU %.2f s (user %.2f, sys %.2f) = %.1f MiB/CPU-s, %.2f us/line; peak RSS %.1f MiB, RSS %.1f MiB, %d threads; %d pushes, %d streams; %.0f backpressure waits, %.0f GCs, %.0f MiB allocated; benchmark (sink) CPU %.2f s; load average %s\n",
		label, r.Received, bench.MiB(r.FileBytes), r.Wall.Seconds(), r.LinesPerSecond(), r.WallMiBPerSecond(),
		r.CPU().Seconds(), r.User.Seconds(), r.System.Seconds(), r.MiBPerCPUSecond(), float64(r.CPUPerLine())/float64(time.Microsecond),
		bench.MiB(r.PeakRSS), bench.MiB(r.RSS), r.Threads, r.Pushes, r.Streams, r.Waits, r.GCCount, r.AllocBytes/(1<<20), r.BenchCPU.Seconds(), bench.LoadAvg())
	if r.ExitErr != nil {
		fmt.Printf("  the sidecar exited with %v after SIGTERM\n", r.ExitErr)
	}
	if r.ProblemsN > 0 {
		fmt.Printf("  the sidecar logged %d warnings or errors, the first:\n", r.ProblemsN)
		for _, p := range r.Problems {
			fmt.Printf("    %s\n", p)
		}
	}
	if r.Dir != "" {
		fmt.Printf("  kept %s\n", r.Dir)
	}
}

func note(prefix, s string) string {
	if s == "" {
		return ""
	}
	return prefix + s
}
