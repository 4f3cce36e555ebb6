// Command peerbench runs logferry and the shippers it is compared with
// under the same steady load, interleaved, and prints a table of medians
// (make bench-peers, through scripts/peers, which builds the peers):
//
//	plugin          logferry's plugin, fed through FIFOs as dockerd feeds it
//	grafana-driver  Grafana's Loki Docker driver, fed the same way
//	sidecar         logferry's sidecar, tailing json-file logs
//	promtail        Promtail tailing the same logs with its docker stage
//
// Each run is bench.RunSteady (see steadybench): -containers containers
// writing -rate lines a second each in 10 ms bursts, -size-byte lines, a
// third on stderr, measured over -duration after -warmup; the sink checks
// that every line arrived exactly once and times each from its write to its
// push. The order of the four is rotated from one round to the next. The
// peers ship each of dockerd's 16 KiB pieces of a long line as an entry of
// its own, so the load has no long lines.
//
// Then (-flat-out-lines) the sidecar and Promtail each read one json-file
// log of 250-byte lines from its start as fast as they can, -runs times,
// interleaved: MiB of json-file per CPU-second, lines/s, peak RSS.
package main

import (
	"context"
	"flag"
	"fmt"
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

type target struct {
	name, bin, version, settings string
	results                      []bench.SteadyResult
}

func main() {
	var (
		driverBin, driverVersion     string
		promtailBin, promtailVersion string
		runs, containers, rate, size int
		warmup, duration             time.Duration
		flatLines                    int
		steady                       bool
	)
	flag.StringVar(&driverBin, "driver-bin", "", "Grafana's Loki Docker driver binary (scripts/peers path grafana-driver)")
	flag.StringVar(&driverVersion, "driver-version", "", "its version, for the table")
	flag.StringVar(&promtailBin, "promtail-bin", "", "Promtail binary (scripts/peers path promtail)")
	flag.StringVar(&promtailVersion, "promtail-version", "", "its version, for the table")
	flag.IntVar(&runs, "runs", 3, "rounds; each runs all four once")
	flag.IntVar(&containers, "containers", 25, "containers writing at once")
	flag.IntVar(&rate, "rate", 200, "lines per second each container writes")
	flag.IntVar(&size, "size", 200, "bytes of a line")
	flag.DurationVar(&warmup, "warmup", 15*time.Second, "writing before each measured window")
	flag.DurationVar(&duration, "duration", 60*time.Second, "each measured window")
	flag.BoolVar(&steady, "steady", true, "run the steady-rate comparison (false: only the flat-out one)")
	flag.IntVar(&flatLines, "flat-out-lines", 1000000, "then, flat out, the plugin and the driver read this many 250-byte lines from a FIFO, and the sidecar and Promtail from a json-file log from its start, -runs times each, interleaved (0: not)")
	flag.Parse()
	if driverBin == "" || promtailBin == "" || runs <= 0 {
		fmt.Fprintln(os.Stderr, "peerbench: -driver-bin and -promtail-bin are needed (scripts/peers bench builds and passes them); -runs must be positive")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, driverBin, driverVersion, promtailBin, promtailVersion, runs, containers, rate, size, warmup, duration, flatLines, steady); err != nil {
		fmt.Fprintln(os.Stderr, "peerbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, driverBin, driverVersion, promtailBin, promtailVersion string, runs, containers, rate, size int, warmup, duration time.Duration, flatLines int, steady bool) error {
	dir, err := bench.TempDir("lf-peerbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	plugin, err := bench.BuildPlugin(ctx, dir)
	if err != nil {
		return err
	}
	sidecar, err := bench.BuildSidecar(ctx, dir)
	if err != nil {
		return err
	}
	if !steady {
		return flatOuts(ctx, dir, plugin, driverBin, driverVersion, sidecar, promtailBin, promtailVersion, runs, flatLines)
	}
	targets := []*target{
		{name: bench.TargetPlugin, bin: plugin, version: "this tree", settings: "defaults (local copy for docker logs on)"},
		{name: bench.TargetGrafanaDriver, bin: driverBin, version: driverVersion, settings: "defaults (loki-url only; local copy on)"},
		{name: bench.TargetSidecar, bin: sidecar, version: "this tree", settings: "defaults"},
		{name: bench.TargetPromtail, bin: promtailBin, version: promtailVersion, settings: "static target over */*-json.log, `docker: {}` stage, defaults otherwise"},
	}
	fmt.Printf("# peerbench: %d rounds of %d targets, %d containers x %d lines/s of %d B, %s windows after %s warm-up; %d CPUs, load average %s\n",
		runs, len(targets), containers, rate, size, duration, warmup, runtime.NumCPU(), bench.LoadAvg())
	for round := range runs {
		for i := range targets {
			t := targets[(i+round)%len(targets)]
			cfg := bench.SteadyConfig{
				Target: t.name, Binary: t.bin, Containers: containers, Rate: rate, LineSize: size,
				LongEvery: -1, Warmup: warmup, Duration: duration,
			}
			r, err := bench.RunSteady(ctx, cfg)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", round+1, t.name, err)
			}
			w := r.Window
			fmt.Printf("RUN %d %s: %.2f%% of a core, %.2f CPU-s per million lines, latency %s, peak RSS %.1f MiB, %d lines once each; load average %s\n",
				round+1, t.name, 100*w.CoreShare(), w.CPUSecondsPerMillion(), r.Latency, bench.MiB(r.PeakRSS), r.Written, bench.LoadAvg())
			t.results = append(t.results, r)
		}
	}
	fmt.Println()
	fmt.Printf("| shipper | version | CPU, %% of one core | CPU-s per million lines | write -> push p50 | p99 | max | peak RSS, MiB | every line once | settings |\n")
	fmt.Printf("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, t := range targets {
		share := medianOf(t.results, func(r bench.SteadyResult) float64 { return 100 * r.Window.CoreShare() })
		fmt.Printf("| %s | %s | **%.2f** (%s) | %.2f | %s | %s | %s | %.1f | yes, %d runs | %s |\n",
			t.name, t.version, share, all(t.results, func(r bench.SteadyResult) float64 { return 100 * r.Window.CoreShare() }),
			medianOf(t.results, func(r bench.SteadyResult) float64 { return r.Window.CPUSecondsPerMillion() }),
			ms(medianOf(t.results, func(r bench.SteadyResult) float64 { return float64(r.Latency.P50) })),
			ms(medianOf(t.results, func(r bench.SteadyResult) float64 { return float64(r.Latency.P99) })),
			ms(medianOf(t.results, func(r bench.SteadyResult) float64 { return float64(r.Latency.Max) })),
			medianOf(t.results, func(r bench.SteadyResult) float64 { return bench.MiB(r.PeakRSS) }),
			len(t.results), t.settings)
	}
	cpu := func(i int) float64 {
		return medianOf(targets[i].results, func(r bench.SteadyResult) float64 { return r.Window.CPUSecondsPerMillion() })
	}
	fmt.Printf("\nRATIO CPU per line: grafana-driver / plugin = %.1f, promtail / sidecar = %.1f\n", cpu(1)/cpu(0), cpu(3)/cpu(2))
	return flatOuts(ctx, dir, plugin, driverBin, driverVersion, sidecar, promtailBin, promtailVersion, runs, flatLines)
}

// flatOuts runs both flat-out comparisons, unless lines is 0.
func flatOuts(ctx context.Context, dir, plugin, driverBin, driverVersion, sidecar, promtailBin, promtailVersion string, runs, lines int) error {
	if lines <= 0 {
		return nil
	}
	if err := flatOutPlugin(ctx, plugin, driverBin, driverVersion, runs, lines); err != nil {
		return err
	}
	if err := idle(ctx, plugin, driverBin, driverVersion); err != nil {
		return err
	}
	return flatOut(ctx, dir, sidecar, promtailBin, promtailVersion, runs, lines)
}

// idleStreams is how many quiet containers the idle comparison opens.
const idleStreams = 500

// idle opens idleStreams containers on the plugin and on the driver, each
// writing one line and then nothing, and compares what they hold.
func idle(ctx context.Context, plugin, driverBin, driverVersion string) error {
	fmt.Printf("\n# idle streams: %d containers that wrote one 250 B line each and then nothing, read 5 s after the last line arrived; load average %s\n", idleStreams, bench.LoadAvg())
	p, err := bench.RunIdle(ctx, bench.IdleConfig{Binary: plugin, Streams: idleStreams, Settle: 5 * time.Second})
	if err != nil {
		return fmt.Errorf("idle, plugin: %w", err)
	}
	d, err := bench.RunDriverIdle(ctx, driverBin, idleStreams, 1, 250, 5*time.Second)
	if err != nil {
		return fmt.Errorf("idle, grafana-driver: %w", err)
	}
	fmt.Printf("\n| shipper, %d idle containers | version | RSS before, MiB | RSS with them, MiB | KiB per container | threads | FDs | goroutines per container |\n|---|---|---|---|---|---|---|---|\n", idleStreams)
	perStream := func(r bench.IdleResult) float64 {
		return float64(r.Settled.RSS-r.One.RSS) / float64(r.Streams-1) / 1024
	}
	fmt.Printf("| plugin | this tree | %.1f | %.1f | **%.1f** | %d | %d | %.2f |\n", bench.MiB(p.Base.RSS), bench.MiB(p.Settled.RSS), perStream(p), p.Settled.Threads, p.Settled.FDs, p.GoroutinesPerStream())
	fmt.Printf("| grafana-driver | %s | %.1f | %.1f | **%.1f** | %d | %d | (no metrics) |\n", driverVersion, bench.MiB(d.Base.RSS), bench.MiB(d.Settled.RSS), perStream(d), d.Settled.Threads, d.Settled.FDs)
	fmt.Printf("\nRATIO idle, RSS per container: grafana-driver / plugin = %.1f\n", perStream(d)/perStream(p))
	return nil
}

// flatOutPlugin has the plugin and Grafana's driver read the same frames
// from a container's FIFO as fast as they can, interleaved, both with
// their defaults (a local copy for docker logs kept).
func flatOutPlugin(ctx context.Context, plugin, driverBin, driverVersion string, runs, lines int) error {
	frames, err := bench.EncodeFrames(loggen.Config{ID: "bench", Lines: uint64(lines), Size: 250}, time.Now())
	if err != nil {
		return err
	}
	fmt.Printf("\n# flat out: %d frames of 250 B lines, %.1f MiB into one container's FIFO in 1 MiB writes, %d runs each, interleaved; load average %s\n",
		frames.Count, bench.MiB(int64(len(frames.Buf))), runs, bench.LoadAvg())
	rss := func(r bench.ThroughputResult) int64 { return r.PeakRSS }
	rs, err := interleave(runs, "MiB of frames per CPU-s", [2]string{"plugin", "grafana-driver"}, rss, [2]func() (bench.ThroughputResult, error){
		func() (bench.ThroughputResult, error) {
			return bench.RunThroughput(ctx, bench.ThroughputConfig{Binary: plugin, Lines: lines, LineSize: 250})
		},
		func() (bench.ThroughputResult, error) { return bench.RunDriverThroughput(ctx, driverBin, frames, nil) },
	})
	if err != nil {
		return err
	}
	printFlat("frames through a FIFO", "MiB of frames per CPU-s",
		flatRowOf("plugin", "this tree", rs[0], rss), flatRowOf("grafana-driver", driverVersion, rs[1], rss))
	return nil
}

// flatOut has the sidecar and Promtail read one json-file log from its
// start as fast as they can, interleaved.
func flatOut(ctx context.Context, dir, sidecar, promtailBin, promtailVersion string, runs, lines int) error {
	log, err := bench.WriteJSONFileLog(filepath.Join(dir, "containers"), "peerbench",
		loggen.Config{ID: "peerbench", Lines: uint64(lines), Size: 250, StderrShare: 0.3}, time.Now())
	if err != nil {
		return fmt.Errorf("writing the json-file log: %w", err)
	}
	fmt.Printf("\n# flat out: %d lines of 250 B, %.1f MiB of json-file read from its start, %d runs each, interleaved; load average %s\n",
		log.Lines, bench.MiB(log.FileBytes), runs, bench.LoadAvg())
	rss := func(r bench.SidecarThroughputResult) int64 { return r.PeakRSS }
	rs, err := interleave(runs, "MiB of json-file per CPU-s", [2]string{"sidecar", "promtail"}, rss, [2]func() (bench.SidecarThroughputResult, error){
		func() (bench.SidecarThroughputResult, error) {
			return bench.RunSidecarThroughput(ctx, bench.SidecarThroughputConfig{Binary: sidecar, Log: log})
		},
		func() (bench.SidecarThroughputResult, error) {
			return bench.RunPromtailThroughput(ctx, promtailBin, log)
		},
	})
	if err != nil {
		return err
	}
	printFlat("json-file read from its start", "MiB of json-file per CPU-s",
		flatRowOf("sidecar", "this tree", rs[0], rss), flatRowOf("promtail", promtailVersion, rs[1], rss))
	return nil
}

func medianOf[T any](rs []T, f func(T) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	return median(v)
}

// flatRates are what a flat-out run's result gives.
type flatRates interface {
	MiBPerCPUSecond() float64
	LinesPerSecond() float64
}

// interleave runs logferry's shipper and its peer (run[0], run[1]) once
// each per round, for runs rounds, and prints every run.
func interleave[T flatRates](runs int, unit string, names [2]string, peakRSS func(T) int64, run [2]func() (T, error)) ([2][]T, error) {
	var rs [2][]T
	for round := range runs {
		for i := range run {
			r, err := run[i]()
			if err != nil {
				return rs, fmt.Errorf("flat out, round %d, %s: %w", round+1, names[i], err)
			}
			fmt.Printf("FLAT %d %s: %.1f %s, %.0f lines/s, peak RSS %.1f MiB\n", round+1, names[i], r.MiBPerCPUSecond(), unit, r.LinesPerSecond(), bench.MiB(peakRSS(r)))
			rs[i] = append(rs[i], r)
		}
	}
	return rs, nil
}

// flatRow is one shipper's medians in a flat-out table.
type flatRow struct {
	name, version string
	mib, lps, rss float64
}

func flatRowOf[T flatRates](name, version string, rs []T, peakRSS func(T) int64) flatRow {
	return flatRow{name: name, version: version,
		mib: medianOf(rs, func(r T) float64 { return r.MiBPerCPUSecond() }),
		lps: medianOf(rs, func(r T) float64 { return r.LinesPerSecond() }),
		rss: medianOf(rs, func(r T) float64 { return bench.MiB(peakRSS(r)) }),
	}
}

// printFlat prints the table of a flat-out comparison, logferry's row
// first, and the ratio of their rates.
func printFlat(what, unit string, ours, peer flatRow) {
	fmt.Printf("\n| shipper, %s | version | %s | lines/s, wall | peak RSS, MiB |\n|---|---|---|---|---|\n", what, unit)
	for _, r := range []flatRow{ours, peer} {
		fmt.Printf("| %s | %s | **%.1f** | %.0f | %.1f |\n", r.name, r.version, r.mib, r.lps, r.rss)
	}
	fmt.Printf("\nRATIO flat out, %s: %s / %s = %.1f\n", unit, ours.name, peer.name, ours.mib/peer.mib)
}

// median of v (sorted in place).
func median(v []float64) float64 {
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func all(rs []bench.SteadyResult, f func(bench.SteadyResult) float64) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = fmt.Sprintf("%.2f", f(r))
	}
	return strings.Join(s, ", ")
}

func ms(ns float64) string { return time.Duration(ns).Round(time.Millisecond).String() }
