// Command logferry-soak runs logferry's soak (make soak, scripts/soak): the
// plugin and the sidecar at once against a private dockerd and a real Loki
// for -duration, then writes soak/<date>/report.md with the targets, charts
// and raw samples. It exits 1 when a target is missed, 2 on bad flags or a
// harness failure or an interrupt (SIGINT, SIGTERM: it stops the
// containers and cleans up, without a report). Run it as root from the repository (it starts dockerd
// with scripts/dockerd and Loki with LOKI_BIN or scripts/loki).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/logferry/logferry/internal/dockertest"
	"github.com/logferry/logferry/soak"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "logferry-soak: %v\n", err)
		return 2
	}
	// internal/dockertest asks testing.Short(), which needs the testing
	// flags registered and parsed (to their defaults).
	testing.Init()
	if err := flag.CommandLine.Parse(nil); err != nil {
		fmt.Fprintf(stderr, "logferry-soak: %v\n", err)
		return 2
	}
	defer dockertest.Shutdown()
	// Ctrl-C or a SIGTERM ends the run early; it still cleans up.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := soak.RunContext(ctx, nil, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "logferry-soak: %v\n", err)
		return 2
	}
	verdict := "PASS"
	if !res.Pass {
		verdict = "FAIL"
	}
	fmt.Fprintf(stdout, "soak %s: %s\n", verdict, filepath.Join(cfg.OutDir, "report.md"))
	for _, t := range res.Targets {
		mark := "ok  "
		switch {
		case t.ReportOnly:
			mark = "info"
		case !t.Pass:
			mark = "FAIL"
		}
		fmt.Fprintf(stdout, "  %s %s: %s (%s)\n", mark, t.Name, t.Value, t.Bound)
	}
	if !res.Pass {
		return 1
	}
	return 0
}

func parseFlags(args []string, errOut io.Writer) (soak.Config, error) {
	cfg := soak.DefaultConfig()
	fs := flag.NewFlagSet("logferry-soak", flag.ContinueOnError)
	fs.SetOutput(errOut)
	short := fs.Bool("short", false, "the 3-minute form of make test (other flags then change it)")
	out := fs.String("out", "", "report directory (default soak/<UTC date and time>)")
	heap := fs.Bool("heap-profiles", false, "serve pprof on both binaries and save their heap profiles and goroutine lists in the report directory (after the warm-up, every 10 minutes, a minute before the end)")
	cpu := fs.Bool("cpu-profiles", false, "serve pprof on both binaries and save a 30 s CPU profile of each in the report directory (after the warm-up, every 10 minutes, a minute before the end)")
	var (
		duration, warmup, sample, probe, lokiEvery, lokiDown, killEvery, cycleEvery, rmDelay, p99, recovery time.Duration
		rate, churnRate                                                                                     float64
		containers, churn, lineSize                                                                         int
		longEvery                                                                                           uint64
	)
	fs.DurationVar(&duration, "duration", cfg.Duration, "how long the containers log")
	fs.DurationVar(&warmup, "warmup", 0, "samples before this are not fitted (default: a sixth of the run, 30 s to 5 m)")
	fs.Float64Var(&rate, "rate", cfg.Rate, "lines per second of the long-lived containers, both binaries together")
	fs.IntVar(&containers, "containers", cfg.Containers, "long-lived containers per binary")
	fs.IntVar(&lineSize, "line-size", cfg.LineSize, "typical line size in bytes")
	fs.Uint64Var(&longEvery, "long-every", cfg.LongEvery, "every K-th line is 40 KiB; a multiple of 100")
	fs.IntVar(&churn, "churn", cfg.ChurnPerMinute, "containers started and removed per minute")
	fs.Float64Var(&churnRate, "churn-rate", cfg.ChurnRate, "lines per second of a churn container")
	fs.DurationVar(&rmDelay, "rm-delay", cfg.RmDelay, "from a container's exit to docker rm")
	fs.DurationVar(&sample, "sample-every", cfg.SampleEvery, "process sampling interval")
	fs.DurationVar(&probe, "probe-every", cfg.ProbeEvery, "latency probe: poll Loki for the sampled lines this often (its resolution), and reconnect its live tail this often while Loki does not take it")
	fs.DurationVar(&lokiEvery, "loki-every", cfg.LokiEvery, "restart Loki this often (0: never)")
	fs.DurationVar(&lokiDown, "loki-down", cfg.LokiDown, "how long Loki stays down")
	fs.DurationVar(&killEvery, "sidecar-kill-every", cfg.SidecarKillEvery, "SIGKILL and restart the sidecar this often (0: never)")
	fs.DurationVar(&cycleEvery, "plugin-cycle-every", cfg.PluginCycleEvery, "docker plugin disable -f / enable this often (0: never)")
	fs.DurationVar(&p99, "p99", cfg.P99Limit, "target: write -> queryable p99 outside disturbances")
	fs.DurationVar(&recovery, "recovery", cfg.RecoveryLimit, "target: backlog drained after Loki is back")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *short {
		cfg = soak.ShortConfig()
	}
	// Flags given explicitly override the form.
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "duration":
			cfg.Duration = duration
		case "warmup":
			cfg.Warmup = warmup
		case "rate":
			cfg.Rate = rate
		case "containers":
			cfg.Containers = containers
		case "line-size":
			cfg.LineSize = lineSize
		case "long-every":
			cfg.LongEvery = longEvery
		case "churn":
			cfg.ChurnPerMinute = churn
		case "churn-rate":
			cfg.ChurnRate = churnRate
		case "rm-delay":
			cfg.RmDelay = rmDelay
		case "sample-every":
			cfg.SampleEvery = sample
		case "probe-every":
			cfg.ProbeEvery = probe
		case "loki-every":
			cfg.LokiEvery = lokiEvery
		case "loki-down":
			cfg.LokiDown = lokiDown
		case "sidecar-kill-every":
			cfg.SidecarKillEvery = killEvery
		case "plugin-cycle-every":
			cfg.PluginCycleEvery = cycleEvery
		case "p99":
			cfg.P99Limit = p99
		case "recovery":
			cfg.RecoveryLimit = recovery
		}
	})
	cfg.OutDir = *out
	cfg.HeapProfiles = *heap
	cfg.CPUProfiles = *cpu
	if cfg.OutDir == "" {
		cfg.OutDir = filepath.Join("soak", time.Now().UTC().Format("2006-01-02T1504Z"))
	}
	return cfg, cfg.Validate()
}
