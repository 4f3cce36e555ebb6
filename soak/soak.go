// Package soak is logferry's soak harness (make soak, issue 17): the
// plugin and the sidecar at once against a private dockerd and a real Loki,
// under a steady line rate, container churn and scheduled disturbances, for
// minutes to hours. It owns the run, the sampling of the three processes,
// the latency prober, the exact-delivery check and the report.
package soak

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logferry/logferry/internal/dockertest"
	"github.com/logferry/logferry/internal/lokitest"
	"github.com/logferry/logferry/internal/repo"
)

// Config sizes a soak run. DefaultConfig is make soak's; ShortConfig the
// 3-minute form of make test.
type Config struct {
	Duration    time.Duration // how long the containers log
	Warmup      time.Duration // samples before this are not fitted
	Rate        float64       // lines per second of the long-lived containers, both binaries together
	Containers  int           // long-lived containers per binary
	LineSize    int           // typical line size, bytes
	LongEvery   uint64        // every K-th line is LongSize bytes; a multiple of 100 (the probe samples seq%100 == 0)
	LongSize    int
	StderrShare float64
	RotateSize  string // max-size of the rotating containers (max-file 2)

	ChurnPerMinute int           // containers started (and removed) per minute
	ChurnRate      float64       // lines per second of a churn container
	RmDelay        time.Duration // from a container's exit to docker rm

	SampleEvery time.Duration // process sampling
	ProbeEvery  time.Duration // latency probe: poll interval, and tail reconnect interval

	LokiEvery        time.Duration // Loki restarted this often (0: never)
	LokiDown         time.Duration // for this long
	SidecarKillEvery time.Duration // sidecar SIGKILL and restart (0: never)
	PluginCycleEvery time.Duration // docker plugin disable -f / enable (0: never)

	// Targets.
	P99Limit      time.Duration // write -> queryable p99 outside disturbances
	RecoveryLimit time.Duration // backlog drained after Loki is back
	// Slack per leak metric (goroutines, fds, rss in KiB, streams,
	// positions; per minute): a slope passes when its interval reaches into
	// [-slack, +slack]. None (make soak): the interval must include 0. Three
	// minutes cannot tell settling, or a lag behind the churn, from a slow
	// leak, so the short form only catches leaks of about one item per four
	// containers churned, or 4 MiB/min.
	Slack map[string]float64
	// DockerdReported: dockerd's slopes are reported, not asserted (the
	// short form). Its first minutes after start are no steady state: in
	// three 3-minute runs of 2026-12-07 its goroutines grew +8 to +14 a
	// minute and its FDs +6 to +8 (intervals' lower ends up to +3.4),
	// where the 30-minute runs' intervals include 0.
	DockerdReported bool

	// HeapProfiles: the plugin and the sidecar serve Go's profiler, and
	// the soak saves their heap profiles (heap-<proc>-<minute>m.pb.gz in
	// OutDir) at the end of the warm-up, every HeapProfileEvery after it
	// and a minute before the end: what an RSS slope is made of.
	HeapProfiles     bool
	HeapProfileEvery time.Duration
	// CPUProfiles: the binaries serve Go's profiler, and at the same
	// moments the soak saves a CPUProfileLength CPU profile of each, both
	// at once (cpu-<proc>-<minute>m.pb.gz): where the steady-rate CPU goes
	// under the soak's churn, which steadybench does not have.
	CPUProfiles      bool
	CPUProfileLength time.Duration

	OutDir string    // report, charts and CSV
	Log    io.Writer // progress and events (the program: stderr)
}

// DefaultConfig is issue 17's soak: 30 minutes, 5,000 lines/s over 25
// long-lived containers per binary, 30 containers a minute of churn, Loki
// restarted every 10 minutes for 20 s, the sidecar killed and the plugin
// cycled once an hour (once in a shorter run).
func DefaultConfig() Config {
	return Config{
		Duration: 30 * time.Minute, Rate: 5000, Containers: 25, LineSize: 200, LongEvery: 500,
		LongSize: 40 << 10, StderrShare: 0.2, RotateSize: "1m",
		ChurnPerMinute: 30, ChurnRate: 20, RmDelay: time.Second,
		SampleEvery: 5 * time.Second, ProbeEvery: 200 * time.Millisecond,
		LokiEvery: 10 * time.Minute, LokiDown: 20 * time.Second,
		SidecarKillEvery: time.Hour, PluginCycleEvery: time.Hour,
		P99Limit: time.Second + 250*time.Millisecond, RecoveryLimit: 10 * time.Second,
	}
}

// ShortConfig is the 3-minute form: 1,000 lines/s over 4 containers per
// binary, 20 containers a minute, each disturbance once, Loki down 10 s,
// samples every 2 s, leak slopes within the Slack bounds.
func ShortConfig() Config {
	c := DefaultConfig()
	c.Duration, c.Rate, c.Containers, c.ChurnPerMinute = 3*time.Minute, 1000, 4, 20
	c.SampleEvery, c.LokiDown = 2*time.Second, 10*time.Second
	c.Slack = map[string]float64{"goroutines": 5, "fds": 5, "streams": 5, "positions": 5, "rss": 4096}
	c.DockerdReported = true
	return c
}

// withDefaults fills what the caller left out.
func (c Config) withDefaults() Config {
	if c.Warmup == 0 {
		c.Warmup = min(5*time.Minute, max(30*time.Second, c.Duration/6))
	}
	if c.Log == nil {
		c.Log = os.Stderr
	}
	if (c.HeapProfiles || c.CPUProfiles) && c.HeapProfileEvery <= 0 {
		c.HeapProfileEvery = 10 * time.Minute
	}
	if c.CPUProfiles && c.CPUProfileLength <= 0 {
		c.CPUProfileLength = 30 * time.Second
	}
	return c
}

// Validate reports every unusable setting at once.
func (c Config) Validate() error {
	var errs []error
	if c.Duration < time.Minute {
		errs = append(errs, fmt.Errorf("duration %v: want at least 1m", c.Duration))
	}
	if c.Rate <= 0 || c.Containers <= 0 {
		errs = append(errs, fmt.Errorf("rate %v over %d containers: both must be positive", c.Rate, c.Containers))
	}
	if c.LongEvery%100 != 0 {
		errs = append(errs, fmt.Errorf("long-every %d: want a multiple of 100 (the probe samples every 100th line)", c.LongEvery))
	}
	if c.SampleEvery <= 0 || c.ProbeEvery <= 0 {
		errs = append(errs, errors.New("sample and probe intervals must be positive"))
	}
	if c.ChurnPerMinute < 0 || c.ChurnRate <= 0 {
		errs = append(errs, fmt.Errorf("churn %d/min at %v lines/s: want >= 0 and > 0", c.ChurnPerMinute, c.ChurnRate))
	}
	if c.OutDir == "" {
		errs = append(errs, errors.New("no output directory"))
	}
	return errors.Join(errs...)
}

// env is one run's world.
type env struct {
	ctx context.Context // the caller's: interrupts the run
	cfg Config
	// The tree the binaries are built from, read before they are.
	revision, dirty string
	tb              *harnessTB
	runID           string
	start           time.Time

	d             *dockertest.Daemon
	loki          *lokitest.Server
	image         string
	driver        string // the plugin's name
	pluginID      string
	pluginMetrics string
	sc            *sidecar

	work  *workload
	dist  *disturber
	samp  *sampler
	probe *prober
	drain *drainer

	logMu    sync.Mutex
	hangOnce sync.Once
}

func (e *env) logf(format string, args ...any) {
	e.logMu.Lock()
	defer e.logMu.Unlock()
	if e.cfg.Log != nil && e.tb.TB == nil {
		fmt.Fprintf(e.cfg.Log, "%s soak: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
		return
	}
	e.tb.Logf("soak: "+format, args...)
}

// Run runs one soak and writes its report to cfg.OutDir. parent is the
// test that runs it, or nil in the program (then the caller calls
// dockertest.Shutdown when done). The error is about the harness; missed
// targets are in the Result.
func Run(parent testing.TB, cfg Config) (*Result, error) {
	return RunContext(context.Background(), parent, cfg)
}

// RunContext is Run until ctx ends: then it stops the containers, writes
// no report, cleans up (containers, the sidecar, Loki, the plugin) and
// returns ctx's error (logferry-soak on SIGINT or SIGTERM).
func RunContext(ctx context.Context, parent testing.TB, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return nil, err
	}
	tb := newHarnessTB(parent, cfg.Log)
	defer tb.close()
	e := &env{ctx: ctx, cfg: cfg, tb: tb, runID: fmt.Sprintf("%x", time.Now().UnixNano()%0xfffffff),
		revision: gitRevision(), dirty: dirtyGoFiles()}
	var res *Result
	err := guard(func() {
		if err := e.setup(); err != nil {
			tb.Fatalf("setup: %v", err)
		}
		res = e.soak()
	})
	// The report first: a hung dockerd must not keep the results.
	var reportErr error
	if err == nil {
		reportErr = writeReport(cfg.OutDir, res)
	}
	e.cleanupContainers()
	if err != nil {
		return res, err
	}
	if reportErr != nil {
		return res, fmt.Errorf("writing the report: %w", reportErr)
	}
	return res, nil
}

// lokiReadyTimeout is how long Loki has to answer /ready, at the start and
// after each restart.
const lokiReadyTimeout = 5 * time.Minute

// setup starts dockerd, Loki, the plugin and the sidecar.
func (e *env) setup() error {
	began := time.Now()
	e.d = dockertest.Start(e.tb)
	// A restarted Loki replays its write-ahead log before /ready says 200;
	// on a machine the workload keeps busy that took over lokitest's
	// default minute once, which left the rest of the run unjudgeable.
	// The outage counts until Loki is ready, so a slow return shows in the
	// drain's bound and the report.
	e.loki = lokitest.Start(e.tb, lokitest.WithLogFile(filepath.Join(e.cfg.OutDir, "loki.log")),
		lokitest.WithReadyTimeout(lokiReadyTimeout))
	e.image = e.d.EnsureTestImage(e.tb)
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	e.pluginMetrics = addr
	settings := []string{"LOKI_URL=" + e.loki.PushURL(), "METRICS_ADDR=" + addr}
	if e.cfg.HeapProfiles || e.cfg.CPUProfiles {
		settings = append(settings, "PPROF=true")
	}
	e.driver = strings.TrimSuffix(e.d.InstallPlugin(e.tb, "lfsoak", settings...), ":latest")
	if err := waitReady(context.Background(), addr, nil, time.Minute); err != nil {
		return fmt.Errorf("the plugin: %w", err)
	}
	out, stderr, err := e.d.DockerErr("plugin", "inspect", "-f", "{{.Id}}", e.driver)
	if err != nil {
		return fmt.Errorf("%w: %s", err, stderr)
	}
	e.pluginID = strings.TrimSpace(out)

	root, err := repo.Root("scripts/soak")
	if err != nil {
		return err
	}
	binDir := e.tb.TempDir()
	bin := filepath.Join(binDir, "logferry-sidecar")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/logferry-sidecar")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building the sidecar: %w\n%s", err, out)
	}
	scAddr, err := freeAddr()
	if err != nil {
		return err
	}
	state := e.tb.TempDir()
	e.sc = &sidecar{bin: bin, metrics: scAddr, logPath: filepath.Join(e.cfg.OutDir, "sidecar.log"),
		args: append([]string{"--docker-host", e.d.Host(), "--containers-dir", filepath.Join(e.d.Dir(), "data", "containers"),
			"--state-dir", state, "--listen", scAddr, "--loki-url", e.loki.PushURL(), "--plugin-name", e.driver},
			sidecarLokiFlags...)}
	if e.cfg.HeapProfiles || e.cfg.CPUProfiles {
		e.sc.args = append(e.sc.args, "--pprof=true")
	}
	if err := e.sc.start(context.Background()); err != nil {
		return fmt.Errorf("the sidecar: %w (its log: %s)", err, e.sc.logPath)
	}
	e.tb.Cleanup(func() { e.sc.stop(syscall.SIGTERM) })
	e.logf("ready in %v: dockerd %s, Loki %s, plugin %s (metrics %s), sidecar (metrics %s); run id %s",
		time.Since(began).Round(time.Millisecond), e.d.Host(), e.loki.URL(), e.driver, addr, scAddr, e.runID)
	return nil
}

// soak runs the workload for Duration, then drains, checks and analyses.
func (e *env) soak() *Result {
	cfg := e.cfg
	e.work = newWorkload(e)
	e.dist = &disturber{e: e}
	e.samp = newSampler(e)
	e.probe = newProber(e)
	e.drain = newDrainer(e)
	e.start = time.Now()
	end := e.start.Add(cfg.Duration)

	// Observers run until the delivery check; the workload and the
	// disturbances until the end of the run.
	obsCtx, stopObs := context.WithCancel(context.Background())
	defer stopObs()
	runCtx, stopRun := context.WithDeadline(e.ctx, end)
	defer stopRun()
	var obs, run sync.WaitGroup
	goOwned := func(wg *sync.WaitGroup, f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	goOwned(&obs, func() { e.samp.run(obsCtx) })
	goOwned(&obs, func() { e.probe.run(obsCtx) })
	goOwned(&obs, func() { e.drain.run(obsCtx) })
	goOwned(&obs, func() { e.progress(obsCtx, end) })
	if cfg.HeapProfiles || cfg.CPUProfiles {
		goOwned(&run, func() { e.profiles(runCtx) })
	}
	evs := plan(cfg)
	e.logf("run of %v: %v lines/s over %d long-lived containers per binary, %d containers/min of churn; disturbances %v",
		cfg.Duration, cfg.Rate, cfg.Containers, cfg.ChurnPerMinute, evs)
	goOwned(&run, func() { e.dist.run(runCtx, e.start, evs) })
	// Containers are not tied to runCtx: they end by themselves.
	workCtx, abortWork := context.WithCancel(context.Background())
	defer abortWork()
	goOwned(&run, func() { e.work.startLongLived(runCtx, workCtx, end) })
	goOwned(&run, func() { e.work.churn(runCtx, workCtx, end) })
	run.Wait()
	// The long-lived containers write until end by themselves; without
	// churn and disturbances the goroutines above return at once, and the
	// 5 minutes below must count from end, not from now.
	sleepCtx(e.ctx, time.Until(end))
	done := make(chan struct{})
	go func() { e.work.wg.Wait(); close(done) }()
	// Interrupted during the run or after it (waiting for the containers,
	// for the binaries to be idle, checking): no report.
	interrupted := func() {
		err := e.ctx.Err()
		if err == nil {
			return
		}
		e.logf("interrupted (%v): stopping the containers and cleaning up; no report", err)
		abortWork()
		<-done
		stopObs()
		obs.Wait()
		e.tb.Fatalf("interrupted: %v", err)
	}
	interrupted()
	e.logf("run over; waiting for the containers to exit")
	select {
	case <-done:
	case <-e.ctx.Done():
		interrupted()
	case <-time.After(5 * time.Minute):
		e.logf("containers still running 5 minutes after the end; stopping them")
		abortWork()
		<-done
	}
	ranEnd := time.Now()
	if !waitIdle(e.ctx, e, 3*time.Minute) {
		interrupted()
		e.logf("the binaries were not idle within 3 minutes (queue, spool or streams left); checking anyway")
	}
	e.logf("checking every line in Loki")
	var ran []*container
	for _, c := range e.work.containers() {
		if c.ran.Load() {
			ran = append(ran, c)
		}
	}
	deliveries, checkErr := checkAll(e.ctx, e, ran, e.start.Add(-time.Minute), 2*time.Minute)
	interrupted()
	stopObs()
	obs.Wait()
	return analyze(e, ranEnd, deliveries, checkErr)
}

// cleanupContainers removes every container of this run that is left.
func (e *env) cleanupContainers() {
	if e.d == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, _, err := e.d.DockerCtx(ctx, "ps", "-a", "-q", "--filter", "label=soak="+e.runID)
	if err != nil {
		e.logf("listing the containers left: %v", err)
		return
	}
	if ids := strings.Fields(out); len(ids) > 0 {
		if _, stderr, err := e.d.DockerCtx(ctx, append([]string{"rm", "-f", "-v"}, ids...)...); err != nil {
			e.logf("removing %d containers left: %v %s (dockerd's own cleanup removes them)", len(ids), err, strings.TrimSpace(stderr))
		}
	}
}

// progress logs a line every 30 s: elapsed, lines written and shipped,
// the latency so far and the current leak slopes.
func (e *env) progress(ctx context.Context, end time.Time) {
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		var written uint64
		for _, c := range e.work.containers() {
			written += c.written(now)
		}
		var lat []time.Duration
		ls := e.probe.latencies()
		ws := settle(e.dist.all(), ls)
		for _, l := range ls {
			if !inWindows(ws, l.Write, windowBefore, latencyAfter) {
				lat = append(lat, l.Value())
			}
		}
		p := percentiles(lat)
		fits := leakFits(e.cfg, e.start, e.samp.all(), ws)
		var slopes []string
		for _, proc := range procs {
			for _, m := range []string{"goroutines", "fds"} {
				if f, ok := fits[proc][m]; ok && f.OK {
					slopes = append(slopes, fmt.Sprintf("%s %s %+.2f/min [%+.2f, %+.2f]", proc, m, f.Slope, f.Lo, f.Hi))
				}
			}
		}
		if len(slopes) == 0 {
			slopes = []string{"(warming up)"}
		}
		e.logf("%v of %v: %d lines written, %.0f shipped (acked by Loki), %d alive; p99 %v over %d samples; %s",
			now.Sub(e.start).Round(time.Second), end.Sub(e.start), written, e.samp.shipped(), e.work.aliveTotal(),
			p.P99.Round(time.Millisecond), p.N, strings.Join(slopes, "; "))
	}
}
