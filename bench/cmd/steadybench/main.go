// Command steadybench measures what the plugin or the sidecar costs at a
// steady, realistic rate rather than flat out (package bench): containers
// writing a few hundred lines a second each, paced in small bursts every
// 10 ms as applications write, 200-byte lines with one 40 KiB line every
// 250, a third on stderr.
//
//	steadybench -target plugin    the plugin binary, one FIFO per container,
//	                              frames written as dockerd writes them
//	steadybench -target sidecar   the sidecar binary, one json-file log per
//	                              container, entries appended as dockerd's
//	                              json-file driver appends them
//
// After -warmup, it reads the shipper's CPU (utime+stime from
// /proc/<pid>/stat, every thread), system calls (/proc/<pid>/io), context
// switches, and allocations (its /metrics) at the start and the end of
// -duration and prints one RESULT line: % of one core, CPU-seconds per
// million lines, lines written and delivered, the sink's pushes, and the
// same per line. The run fails unless the sink got exactly every line
// written. -profile-dir DIR then keeps the containers writing for a CPU
// profile and allocation profiles, and strace -c (-strace-for), of the
// shipper; those parts' figures are printed on lines of their own and are
// distorted by the profilers. Exit status 1 when a run failed.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/logferry/logferry/bench"
)

type flags struct {
	target     string
	bin        string
	containers int
	rate       int
	size       int
	longEvery  int
	longSize   int
	stderr     float64
	tick       time.Duration
	warmup     time.Duration
	duration   time.Duration
	runs       int
	profileDir string
	profileFor time.Duration
	straceFor  time.Duration
	env        string
	logOpts    string
	args       string
	keep       bool
	loki       string
}

func main() {
	var f flags
	flag.StringVar(&f.target, "target", bench.TargetPlugin, "plugin, sidecar, or a peer built by scripts/peers: grafana-driver (fed like the plugin) or promtail (tailing like the sidecar); a peer needs -bin and -long-every -1")
	flag.StringVar(&f.bin, "bin", "", "the target's binary (default: CGO_ENABLED=0 go build -trimpath ./cmd/logferry-<target> into a temporary directory)")
	flag.IntVar(&f.containers, "containers", 25, "containers writing at once")
	flag.IntVar(&f.rate, "rate", 200, "lines per second each container writes")
	flag.IntVar(&f.size, "size", 200, "bytes of a typical line")
	flag.IntVar(&f.longEvery, "long-every", 250, "every Nth line is -long-size bytes (cut into 16 KiB partial messages as dockerd cuts it); -1: none")
	flag.IntVar(&f.longSize, "long-size", 40<<10, "bytes of a long line")
	flag.Float64Var(&f.stderr, "stderr", 0.3, "share of the lines on stderr (-1: none)")
	flag.DurationVar(&f.tick, "tick", 10*time.Millisecond, "each container writes the lines due every tick")
	flag.DurationVar(&f.warmup, "warmup", 10*time.Second, "writing before the measured window")
	flag.DurationVar(&f.duration, "duration", 60*time.Second, "the measured window")
	flag.IntVar(&f.runs, "runs", 1, "runs, a fresh shipper process each")
	flag.StringVar(&f.profileDir, "profile-dir", "", "after the measured window, keep writing and profile the shipper into `DIR`: cpu.pprof (-profile-for), allocs-0.pprof and allocs-1.pprof around it (go tool pprof -sample_index=alloc_objects -base), strace.txt (-strace-for)")
	flag.DurationVar(&f.profileFor, "profile-for", 30*time.Second, "length of the CPU profile (at most 60 s)")
	flag.DurationVar(&f.straceFor, "strace-for", 20*time.Second, "with -profile-dir: strace -c -f the shipper this long after the CPU profile (0: not at all)")
	flag.StringVar(&f.env, "env", "", "space-separated KEY=VALUE added to the shipper's environment, e.g. \"GOMAXPROCS=1\"")
	flag.StringVar(&f.logOpts, "log-opts", "", "plugin: space-separated KEY=VALUE log-opts of every container, e.g. \"no-file=true\"")
	flag.StringVar(&f.args, "sidecar-flags", "", "space-separated flags added to the sidecar's")
	flag.BoolVar(&f.keep, "keep", false, "keep each run's directory (socket, state, logs)")
	flag.StringVar(&f.loki, "loki", "", "a real Loki's push `URL` (e.g. scripts/loki start DIR; DIR/loki.url + /loki/api/v1/push): the sink hands it every push before answering, and the latency runs to Loki's acceptance")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "steadybench: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, f); err != nil {
		fmt.Fprintln(os.Stderr, "steadybench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, f flags) error {
	switch f.target {
	case bench.TargetPlugin, bench.TargetSidecar:
	case bench.TargetGrafanaDriver, bench.TargetPromtail:
		if f.bin == "" {
			return fmt.Errorf("-target %s needs -bin: its binary from scripts/peers build", f.target)
		}
	default:
		return fmt.Errorf("-target %q: want plugin, sidecar, grafana-driver or promtail", f.target)
	}
	if f.containers <= 0 || f.rate <= 0 || f.duration <= 0 || f.runs <= 0 {
		return fmt.Errorf("-containers, -rate, -duration and -runs must be positive")
	}
	if f.profileDir != "" {
		abs, err := filepath.Abs(f.profileDir)
		if err != nil {
			return err
		}
		f.profileDir = abs
	}
	opts := map[string]string{}
	for _, kv := range strings.Fields(f.logOpts) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || f.target != bench.TargetPlugin && f.target != bench.TargetGrafanaDriver {
			return fmt.Errorf("-log-opts %q: want KEY=VALUE items, for -target plugin or grafana-driver", f.logOpts)
		}
		opts[k] = v
	}
	bin := f.bin
	if bin == "" {
		dir, err := bench.TempDir("lf-steadybench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		build := bench.BuildPlugin
		if f.target == bench.TargetSidecar {
			build = bench.BuildSidecar
		}
		if bin, err = build(ctx, dir); err != nil {
			return err
		}
	}
	fmt.Printf("# steadybench: %s %s%s, %d CPUs, load average %s\n", f.target, bin, note(" with ", f.env+" "+f.args+" "+f.logOpts), runtime.NumCPU(), bench.LoadAvg())
	cfg := bench.SteadyConfig{
		Target: f.target, Binary: bin, Containers: f.containers, Rate: f.rate, LineSize: f.size,
		LongEvery: f.longEvery, LongSize: f.longSize, StderrShare: f.stderr, Tick: f.tick,
		Warmup: f.warmup, Duration: f.duration, ProfileDir: f.profileDir, ProfileFor: f.profileFor,
		StraceFor: f.straceFor, LogOpts: opts, Env: strings.Fields(f.env), Args: strings.Fields(f.args), KeepDir: f.keep,
		Forward: f.loki,
	}
	for i := 1; i <= f.runs; i++ {
		r, err := bench.RunSteady(ctx, cfg)
		if err != nil {
			return fmt.Errorf("run %d: %w", i, err)
		}
		printResult(r)
	}
	return nil
}

func printResult(r bench.SteadyResult) {
	c, w := r.Config, r.Window
	long := "no long lines"
	if c.LongEvery > 0 {
		long = fmt.Sprintf("one of %d KiB every %d", c.LongSize>>10, c.LongEvery)
	}
	fmt.Printf("RESULT steady %s %d x %d lines/s (%d B lines, %s, %.0f%% stderr, every %s) for %.0f s after %s warm-up: CPU %.2f s (user %.2f, sys %.2f) = %.1f%% of one core, %.1f CPU-s per million lines; %d lines written and %d delivered in the window (%.0f lines/s), all %d written lines at the sink once each: OK; write -> %s latency in the window %s; %d pushes; peak RSS %.1f MiB; load average %s\n",
		c.Target, c.Containers, c.Rate, c.LineSize, long, c.StderrShare*100, c.Tick, w.Wall.Seconds(), c.Warmup,
		w.CPU().Seconds(), w.User.Seconds(), w.System.Seconds(), 100*w.CoreShare(), w.CPUSecondsPerMillion(),
		w.Lines, w.Delivered, float64(w.Lines)/w.Wall.Seconds(), r.Written, latencyEnd(c), r.Latency, w.Pushes, bench.MiB(r.PeakRSS), bench.LoadAvg())
	printPerLine("measured window", w)
	if r.Profiled.Lines > 0 {
		printPerLine("CPU-profile phase (profiler on)", r.Profiled)
	}
	if r.Straced.Lines > 0 {
		printPerLine("strace phase (strace attached: slow)", r.Straced)
	}
	if r.StraceErr != nil {
		fmt.Printf("  strace: %v\n", r.StraceErr)
	}
	for _, p := range r.Profiles {
		fmt.Printf("  wrote %s\n", p)
	}
	if len(r.Profiles) > 0 {
		fmt.Printf("  read with: go tool pprof -top %s %s; go tool pprof -sample_index=alloc_objects -top -base %s %s %s\n",
			r.Config.Binary, filepath.Join(r.Config.ProfileDir, "cpu.pprof"), filepath.Join(r.Config.ProfileDir, "allocs-0.pprof"),
			r.Config.Binary, filepath.Join(r.Config.ProfileDir, "allocs-1.pprof"))
	}
	if r.Dir != "" {
		fmt.Printf("  kept %s\n", r.Dir)
	}
}

func printPerLine(label string, w bench.SteadyWindow) {
	k := func(v float64) float64 { return 1000 * w.PerLine(v) }
	fmt.Printf("  %s: %.1f s, %d lines, %d daemon writes; shipper CPU %.2f s = %.1f%% of a core, %.2f us/line; per 1,000 lines: %.0f read calls, %.0f write calls, %.0f voluntary + %.0f involuntary context switches, %.0f allocations (%.0f KiB), %.2f GCs, %.2f pushes, %.2f position saves; benchmark's own CPU %.2f s\n",
		label, w.Wall.Seconds(), w.Lines, w.DaemonWrites, w.CPU().Seconds(), 100*w.CoreShare(), float64(w.CPU())/float64(time.Microsecond)/float64(w.Lines),
		k(float64(w.ReadCalls)), k(float64(w.WriteCalls)), k(float64(w.CtxSwitches)), k(float64(w.Involuntary)),
		k(w.Mallocs), k(w.AllocBytes)/1024, k(w.GCs), k(float64(w.Pushes)), k(w.PositionsSaved), w.BenchCPU.Seconds())
}

// latencyEnd names where the latency was taken.
func latencyEnd(c bench.SteadyConfig) string {
	if c.Forward != "" {
		return "accepted by Loki"
	}
	return "push"
}

func note(prefix, s string) string {
	if strings.TrimSpace(s) == "" {
		return ""
	}
	return prefix + strings.TrimSpace(s)
}
