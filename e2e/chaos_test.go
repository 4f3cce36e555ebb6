package e2e

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logferry/logferry/internal/dockertest"
	"github.com/logferry/logferry/internal/loggen"
	"github.com/logferry/logferry/internal/lokitest"
)

// The fault suite (issue 5, "Lose nothing"). Each TestChaos* test breaks one
// thing while containers log through the plugin and the sidecar, then
// checks by the generator's sequence numbers that every line reached Loki
// once, and prints its figures on one line starting with RESULT (run with
// -v to see them; RELIABILITY.md records the last run).
//
// LF_CHAOS=full selects the long forms (make chaos); the default is the
// short form that make test runs. Not a LOGFERRY_ variable: the sidecar
// refuses unknown LOGFERRY_ settings in its environment.

// chaosForm is the size of a run.
type chaosForm struct {
	name       string
	containers int           // half through the plugin, half through the sidecar
	rate       int           // lines per second, all containers together
	outage     time.Duration // how long Loki is down
}

func chaosSize() chaosForm {
	if os.Getenv("LF_CHAOS") == "full" {
		return chaosForm{name: "full", containers: 20, rate: 1000, outage: 5 * time.Minute}
	}
	return chaosForm{name: "short", containers: 4, rate: 200, outage: 20 * time.Second}
}

// Retries and backoff short enough that an outage is spooled at once and the
// recovery is seen within the test; the same for both styles.
var (
	chaosLogOpts = []string{"--log-opt", "loki-batch-wait=100ms", "--log-opt", "loki-retries=2",
		"--log-opt", "loki-min-backoff=100ms", "--log-opt", "loki-max-backoff=2s", "--log-opt", "loki-timeout=2s"}
	chaosSidecarFlags = []string{"--loki-retries", "2", "--loki-min-backoff", "100ms", "--loki-max-backoff", "2s",
		"--loki-timeout", "2s"}
)

// rssLimit is a bound that holds with room to spare and fails if memory
// grows with the length of the outage.
const rssLimit = 200 << 20

// chaosResult is one RESULT line: key=value pairs in order.
type chaosResult []string

func (r *chaosResult) add(k string, v any) { *r = append(*r, fmt.Sprintf("%s=%v", k, v)) }

func (r chaosResult) log(t *testing.T) { t.Logf("RESULT %s", strings.Join(r, " ")) }

// rssSampler records the peak resident set of processes, read from
// /proc/<pid>/status (VmHWM, the kernel's own peak, and VmRSS) every 200 ms
// until stop. pid returns the process's current pid (0: none now).
type rssSampler struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	peak   map[string]int64 // bytes, by role
}

func sampleRSS(pids map[string]func() int) *rssSampler {
	ctx, cancel := context.WithCancel(context.Background())
	s := &rssSampler{cancel: cancel, peak: map[string]int64{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			for role, pid := range pids {
				if p := pid(); p > 0 {
					if b := peakRSS(p); b > 0 {
						s.mu.Lock()
						s.peak[role] = max(s.peak[role], b)
						s.mu.Unlock()
					}
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// stop ends sampling and returns the peaks in MiB.
func (s *rssSampler) stop() map[string]float64 {
	s.cancel()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]float64{}
	for role, b := range s.peak {
		out[role] = float64(b) / (1 << 20)
	}
	return out
}

// peakRSS returns the larger of VmHWM and VmRSS of pid in bytes, 0 if the
// process is gone.
func peakRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	var peak int64
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmHWM" && k != "VmRSS") {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 2 && f[1] == "kB" {
			if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
				peak = max(peak, n<<10)
			}
		}
	}
	return peak
}

// pidOf returns a pid function for the sampler that caches find's answer
// while the process lives.
func pidOf(comm string, find func() (int, error)) func() int {
	var cached int
	return func() int {
		if cached > 0 {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cached)); err == nil && strings.TrimSpace(string(b)) == comm {
				return cached
			}
		}
		p, err := find()
		if err != nil {
			return 0
		}
		cached = p
		return p
	}
}

func (p *sidecarProc) pid() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0, fmt.Errorf("no sidecar process")
	}
	select {
	case <-p.done:
		return 0, fmt.Errorf("the sidecar exited")
	default:
	}
	return p.cmd.Process.Pid, nil
}

// alive reports whether the sidecar process is still running.
func (p *sidecarProc) alive() bool {
	_, err := p.pid()
	return err == nil
}

// chaosEnv is the plugin (as lfchaos) and the sidecar (overflow spool) on
// the private dockerd, both shipping to one Loki.
type chaosEnv struct {
	*pluginEnv // the plugin, and e.loki for reading back
	sc         *sidecarProc
}

func setupChaos(t *testing.T) *chaosEnv {
	t.Helper()
	e := installPlugin(t, dockertest.Start(t), lokitest.Start(t), "lfchaos")
	sc := startSidecar(t, e.d, e.loki.PushURL(), t.TempDir(),
		append([]string{"--overflow", "spool", "--plugin-name", "lfchaos"}, chaosSidecarFlags...)...)
	return &chaosEnv{pluginEnv: e, sc: sc}
}

// chaosContainer is one logging container of a run.
type chaosContainer struct {
	id, name, style string // style: plugin or sidecar
	gen             loggen.Config
	stopped         bool
	written         int // lines, known once the container has ended
}

// dockerStop stops id with docker stop -t 1 and returns how long it took.
func dockerStop(t *testing.T, e *pluginEnv, id string) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	begin := time.Now()
	if _, stderr, err := e.d.DockerCtx(ctx, "stop", "-t", "1", id); err != nil {
		t.Fatalf("docker stop: %v %s", err, stderr)
	}
	return time.Since(begin)
}

// loggedLines is the number of lines docker logs has for id.
func loggedLines(t *testing.T, e *pluginEnv, id string) int {
	t.Helper()
	stdout, stderr, err := e.d.DockerErr("logs", id)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(stdout, "\n") + strings.Count(stderr, "\n")
}

// TestChaosOutage is scenarios 1 and 2: Loki down while many containers log,
// half through the plugin, half through the sidecar (json-file, overflow
// spool); the second run also kills both with SIGKILL during the outage.
// After Loki is back every line is there exactly once, docker stop -t 1
// during the outage is fast, and memory stays bounded.
func TestChaosOutage(t *testing.T) {
	form := chaosSize()
	e := setupChaos(t)
	perContainer := form.rate / form.containers
	// Still logging for a while after Loki is back.
	lines := perContainer * int((form.outage + 15*time.Second).Seconds())

	for _, kill := range []bool{false, true} {
		scenario, title := "outage", fmt.Sprintf("Loki down %v under %d containers", form.outage, form.containers)
		if kill {
			scenario, title = "outage-kill", title+", the plugin and the sidecar killed with SIGKILL"
		}
		t.Run(title, func(t *testing.T) {
			start := time.Now().Add(-time.Minute)
			rss := sampleRSS(map[string]func() int{
				"plugin":  pidOf("logferry-plugin", e.findPluginPID),
				"sidecar": pidOf("logferry-sidecar", e.sc.pid),
			})
			defer rss.stop()
			framesBefore := e.metric(t, "logferry_plugin_frames_read_total")
			readBefore := e.sc.metric("logferry_sidecar_lines_read_total")
			var cs []*chaosContainer
			for i := 0; i < form.containers; i++ {
				c := &chaosContainer{style: "plugin", gen: loggen.Config{ID: runID("chaos"), Lines: uint64(lines), Size: 150, StderrShare: 0.2}}
				driver := []string{"--log-driver", e.driver}
				if i%2 == 1 {
					c.style, driver = "sidecar", []string{"--log-driver", "json-file"}
				}
				c.name = fmt.Sprintf("ch-%s-%s", c.style, c.gen.ID)
				args := append([]string{"--name", c.name}, driver...)
				if c.style == "plugin" {
					args = append(args, chaosLogOpts...)
				}
				c.id = e.d.Run(t, append(append(args, e.image), genArgs(c.gen, "-rate", strconv.Itoa(perContainer))...)...)
				cs = append(cs, c)
			}
			half := float64(form.containers / 2)
			waitFor(t, 2*time.Minute, "two seconds of lines through both styles", func() bool {
				return e.metric(t, "logferry_plugin_frames_read_total") >= framesBefore+half*float64(2*perContainer) &&
					e.sc.metric("logferry_sidecar_lines_read_total") >= readBefore+half*float64(2*perContainer)
			})
			// The sidecar ships only the json-file containers.
			if n := metricWhere(t, e.sc.metrics, "logferry_sidecar_containers", `route="file"`); n != half {
				t.Errorf("the sidecar ships %v containers from files, want %v", n, half)
			}
			if n := metricWhere(t, e.sc.metrics, "logferry_sidecar_containers", `route="api"`); n != 0 {
				t.Errorf("the sidecar ships %v containers through the logs API, want none", n)
			}

			pluginSpooled := e.metric(t, "logferry_loki_entries_spooled_total")
			sidecarSpooled := e.sc.metric("logferry_loki_entries_spooled_total")
			e.loki.Stop()
			down := time.Now()
			t.Logf("Loki stopped")
			waitFor(t, time.Minute, "both styles to spool", func() bool {
				return e.metric(t, "logferry_loki_entries_spooled_total") > pluginSpooled &&
					e.sc.metric("logferry_loki_entries_spooled_total") > sidecarSpooled
			})
			var pluginSpooledBeforeKill float64
			if kill {
				pluginSpooledBeforeKill = e.metric(t, "logferry_loki_entries_spooled_total") - pluginSpooled
				pid := e.pluginPID(t)
				if err := exec.Command("kill", "-9", strconv.Itoa(pid)).Run(); err != nil {
					t.Fatal(err)
				}
				e.sc.stop(syscall.SIGKILL)
				waitFor(t, 30*time.Second, "the daemon to restart the plugin", func() bool {
					p, err := e.findPluginPID()
					return err == nil && p != pid
				})
				waitFor(t, 30*time.Second, "the restarted plugin's /ready", func() bool { return ready(e.metrics) })
				e.sc.start()
				t.Logf("plugin and sidecar killed and restarted %v into the outage", time.Since(down).Round(time.Millisecond))
			}
			// One container of each style is stopped during the outage.
			var longest time.Duration
			for _, c := range cs[:2] {
				took := dockerStop(t, e.pluginEnv, c.id)
				c.stopped = true
				t.Logf("docker stop -t 1 of a %s container during the outage took %v", c.style, took.Round(time.Millisecond))
				longest = max(longest, took)
			}
			// The outage lasts its full length: the scenario, not a wait
			// for a condition.
			if rest := form.outage - time.Since(down); rest > 0 {
				timer := time.NewTimer(rest)
				<-timer.C
			}
			e.loki.Restart()
			t.Logf("Loki back after %v", time.Since(down).Round(time.Millisecond))

			res := chaosResult{}
			res.add("scenario", scenario)
			res.add("form", form.name)
			res.add("containers", form.containers)
			res.add("rate", form.rate)
			res.add("outage", form.outage)
			var written, delivered, dup int
			for _, c := range cs {
				if !c.stopped {
					e.wait(t, c.id)
				}
				c.written = loggedLines(t, e.pluginEnv, c.id)
				if !c.stopped && c.written != lines {
					t.Errorf("%s: docker logs has %d of %d lines", c.name, c.written, lines)
				}
			}
			for _, c := range cs {
				got, d := e.countLines(t, c.name, c.gen, start, c.written)
				written += c.written
				delivered += got
				dup += d
				if got != c.written || d != 0 {
					t.Errorf("%s (%s): %d lines written, %d delivered, %d duplicated", c.name, c.style, c.written, got, d)
				}
			}
			e.waitDelivered(t)
			peaks := rss.stop()
			res.add("written", written)
			res.add("delivered", delivered)
			res.add("lost", written-delivered)
			res.add("duplicated", dup)
			res.add("longest_stop_ms", longest.Milliseconds())
			res.add("plugin_peak_rss_mib", fmt.Sprintf("%.1f", peaks["plugin"]))
			res.add("sidecar_peak_rss_mib", fmt.Sprintf("%.1f", peaks["sidecar"]))
			if kill {
				// Counters restart with the processes: before the kill plus
				// since the restart.
				res.add("plugin_spooled", pluginSpooledBeforeKill+e.metric(t, "logferry_loki_entries_spooled_total"))
				res.add("plugin_lines_resent_after_restart", e.metric(t, "logferry_plugin_lines_replayed_total"))
				res.add("sidecar_spooled_after_restart", e.sc.metric("logferry_loki_entries_spooled_total"))
			} else {
				res.add("plugin_spooled", e.metric(t, "logferry_loki_entries_spooled_total")-pluginSpooled)
				res.add("sidecar_spooled", e.sc.metric("logferry_loki_entries_spooled_total")-sidecarSpooled)
			}
			res.log(t)
			if longest > 3*time.Second {
				t.Errorf("docker stop -t 1 took %v during the outage; the promise is under 3 s", longest)
			}
			for role, mib := range peaks {
				if mib*(1<<20) > rssLimit {
					t.Errorf("%s peak RSS %.1f MiB, over the bound of %d MiB", role, mib, rssLimit>>20)
				}
			}
			if len(peaks) != 2 {
				t.Errorf("RSS sampled for %v only", peaks)
			}
		})
	}
}

// sidecarContainer runs one json-file container of gen for the sidecar.
func sidecarContainer(t *testing.T, e *pluginEnv, gen loggen.Config, extra ...string) (id, name string) {
	t.Helper()
	name = "ch-sidecar-" + gen.ID
	id = e.d.Run(t, append([]string{"--name", name, "--log-driver", "json-file", e.image}, genArgs(gen, extra...)...)...)
	return id, name
}

// keepEndpoint runs a json-file container that logs one line and then
// sleeps, so that the sidecar keeps its Loki endpoint, and so the spool and
// its metric series (released with the endpoint), open for the test.
func keepEndpoint(t *testing.T, e *pluginEnv) {
	t.Helper()
	sidecarContainer(t, e, loggen.Config{ID: runID("keep"), Lines: 1, Size: 50}, "-sleep-after", "1h")
}

// TestChaosRateLimit is scenario 3: Loki with a tiny ingestion limit answers
// 429 to most pushes; the sidecar (overflow spool) retries with backoff,
// every line arrives once, and the pushes Loki refuses stay well under what
// the backoff allows: no busy loop.
func TestChaosRateLimit(t *testing.T) {
	form := chaosSize()
	d := dockertest.Start(t)
	// 48 KiB/s with a 256 KiB burst: a push of at most 64 KiB of lines (and
	// their structured metadata) fits the burst, so each is taken at some
	// point, and most are refused first.
	srv := lokitest.Start(t, lokitest.WithArgs("-distributor.ingestion-rate-limit-mb=0.046875",
		"-distributor.ingestion-burst-size-mb=0.25"))
	e := &pluginEnv{d: d, loki: srv, image: d.EnsureTestImage(t)}
	const minBackoff = 200 * time.Millisecond
	sc := startSidecar(t, d, srv.PushURL(), t.TempDir(), "--overflow", "spool", "--loki-batch-size", "64k",
		"--loki-min-backoff", minBackoff.String(), "--loki-max-backoff", "2s", "--loki-retries", "5", "--loki-timeout", "5s")
	lines := 4_000
	if form.name == "full" {
		lines = 20_000
	}
	gen := loggen.Config{ID: runID("limit"), Lines: uint64(lines), Size: 150, StderrShare: 0.2}
	start := time.Now().Add(-time.Minute)
	pushes := func(match string) float64 {
		return metricWhere(t, sc.metrics, "logferry_loki_push_duration_seconds_count", match)
	}
	p0, r0 := pushes(""), pushes(`status="429"`)
	begin := time.Now()
	id, name := sidecarContainer(t, e, gen) // as fast as it can
	e.wait(t, id)
	delivered, dup := e.countLines(t, name, gen, start, lines)
	took := time.Since(begin)
	all, refused := pushes("")-p0, pushes(`status="429"`)-r0
	retries := metricWhere(t, sc.metrics, "logferry_loki_retries_total", `status="429"`)
	// One push in flight per endpoint; a refused push waits at least
	// minBackoff/2 before the next try, except the first try of a new
	// batch (after a success or after retries ran out and the batch was
	// spooled). So at most about two refused pushes per minBackoff/2.
	bound := 4 / minBackoff.Seconds()
	perSecond := refused / took.Seconds()
	res := chaosResult{}
	res.add("scenario", "rate-limit")
	res.add("form", form.name)
	res.add("written", lines)
	res.add("delivered", delivered)
	res.add("lost", lines-delivered)
	res.add("duplicated", dup)
	res.add("seconds", fmt.Sprintf("%.1f", took.Seconds()))
	res.add("pushes", all)
	res.add("refused_429", refused)
	res.add("retries_429", retries)
	res.add("refused_per_s", fmt.Sprintf("%.2f", perSecond))
	res.add("bound_per_s", bound)
	res.add("spooled", sc.metric("logferry_loki_entries_spooled_total"))
	res.add("dropped", sc.metric("logferry_loki_entries_dropped_total"))
	res.log(t)
	if delivered != lines || dup != 0 {
		t.Errorf("%d of %d lines delivered, %d duplicated", delivered, lines, dup)
	}
	if refused == 0 || retries == 0 {
		t.Errorf("Loki refused no push (%v) or nothing was retried (%v): the limit did not bite", refused, retries)
	}
	if perSecond > bound {
		t.Errorf("%.2f refused pushes per second, over the backoff's bound of %.0f: a busy loop", perSecond, bound)
	}
}

// mountTmpfs mounts a tmpfs of size bytes at a new directory and unmounts
// it when the test ends.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "lf-chaos", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// TestChaosFullDisk is scenario 4: the sidecar's spool on a 2 MiB tmpfs
// that fills up while Loki is down and a container writes 8 MB. The
// sidecar does not crash, counts what the spool refused, keeps the rest in
// the json-file log (overflow spool waits while the spool refuses), and
// once Loki is back every line arrives, and so do new ones.
func TestChaosFullDisk(t *testing.T) {
	d := dockertest.Start(t)
	srv := lokitest.Start(t)
	e := &pluginEnv{d: d, loki: srv, image: d.EnsureTestImage(t)}
	spoolDir := mountTmpfs(t, "2m")
	// The spool's own bound (16 MiB, two segments, the least allowed) is
	// above the filesystem's size, so the disk fills first.
	sc := startSidecar(t, d, srv.PushURL(), t.TempDir(), append([]string{"--overflow", "spool", "--spool-dir", spoolDir,
		"--spool-max-size", "16m", "--loki-queue-size", "1m", "--loki-batch-size", "256k"}, chaosSidecarFlags...)...)
	keepEndpoint(t, e)
	waitFor(t, time.Minute, "the sidecar to ship the keeper", func() bool {
		return metricWhere(t, sc.metrics, "logferry_sidecar_containers", `route="file"`) == 1
	})
	srv.Stop()
	down := time.Now()
	gen := loggen.Config{ID: runID("full"), Lines: 40_000, Size: 200, StderrShare: 0.2}
	start := time.Now().Add(-time.Minute)
	id, name := sidecarContainer(t, e, gen, "-rate", "4000")
	refused := func() float64 { return sc.metric("logferry_spool_records_refused_total") }
	waitFor(t, 2*time.Minute, "the spool to refuse records on the full filesystem", func() bool {
		if !sc.alive() {
			t.Fatalf("the sidecar exited:\n%s", sc.out.String())
		}
		return refused() > 0
	})
	var st syscall.Statfs_t
	if err := syscall.Statfs(spoolDir, &st); err != nil {
		t.Fatal(err)
	}
	free := st.Bavail * uint64(st.Bsize)
	e.wait(t, id)
	refusedWhileFull := refused()
	refusedWriteError := metricWhere(t, sc.metrics, "logferry_spool_records_refused_total", `reason="write_error"`)
	if !sc.alive() {
		t.Fatalf("the sidecar exited:\n%s", sc.out.String())
	}
	srv.Restart()
	t.Logf("Loki back after %v; %d bytes free on the spool's filesystem when it was full", time.Since(down).Round(time.Millisecond), free)
	delivered, dup := e.countLines(t, name, gen, start, int(gen.Lines))
	// New lines after the outage.
	gen2 := loggen.Config{ID: runID("after"), Lines: 1_000, Size: 200}
	id2, name2 := sidecarContainer(t, e, gen2)
	e.wait(t, id2)
	delivered2, dup2 := e.countLines(t, name2, gen2, start, int(gen2.Lines))
	waitFor(t, 2*time.Minute, "the spool to empty", func() bool { return sc.metric("logferry_spool_unacked_bytes") == 0 })
	if err := syscall.Statfs(spoolDir, &st); err != nil {
		t.Fatal(err)
	}
	freeAfter := st.Bavail * uint64(st.Bsize)
	dropped := sc.metric("logferry_loki_entries_dropped_total")
	// A second outage: the spool, all acknowledged now, must take records
	// again on the filesystem the first outage filled.
	srv.Stop()
	appended := func() float64 { return sc.metric("logferry_spool_records_appended_total") }
	appended0, refused0 := appended(), refused()
	gen3 := loggen.Config{ID: runID("again"), Lines: 2_000, Size: 200}
	id3, name3 := sidecarContainer(t, e, gen3)
	e.wait(t, id3)
	waitFor(t, time.Minute, "the second outage's lines to be spooled or refused", func() bool {
		return appended()-appended0 >= float64(gen3.Lines) || refused() > refused0
	})
	appended2, refused2 := appended()-appended0, refused()-refused0
	srv.Restart()
	delivered3, dup3 := e.countLines(t, name3, gen3, start, int(gen3.Lines))
	dropped3 := sc.metric("logferry_loki_entries_dropped_total") - dropped
	res := chaosResult{}
	res.add("scenario", "full-disk")
	res.add("written", gen.Lines)
	res.add("delivered", delivered)
	res.add("lost", int(gen.Lines)-delivered)
	res.add("duplicated", dup)
	res.add("spool_refused", refusedWhileFull)
	res.add("spool_refused_write_error", refusedWriteError)
	res.add("dropped", dropped)
	res.add("spooled", sc.metric("logferry_loki_entries_spooled_total"))
	res.add("after_written", gen2.Lines)
	res.add("after_delivered", delivered2)
	res.add("free_bytes_when_full", free)
	res.add("free_bytes_after", freeAfter)
	res.add("second_outage_written", gen3.Lines)
	res.add("second_outage_spooled", appended2)
	res.add("second_outage_refused", refused2)
	res.add("second_outage_delivered", delivered3)
	res.add("second_outage_dropped", dropped3)
	res.log(t)
	if refused2 != 0 {
		t.Logf("refused by reason: %v write_error, %v full, %v closed", metricWhere(t, sc.metrics, "logferry_spool_records_refused_total", `reason="write_error"`),
			metricWhere(t, sc.metrics, "logferry_spool_records_refused_total", `reason="full"`), metricWhere(t, sc.metrics, "logferry_spool_records_refused_total", `reason="closed"`))
		t.Errorf("second outage: the spool refused %v records although everything in it was acknowledged", refused2)
	}
	if delivered3 != int(gen3.Lines) || dup3 != 0 {
		t.Errorf("second outage: %d of %d lines delivered, %d duplicated", delivered3, gen3.Lines, dup3)
	}
	if t.Failed() {
		sc.mu.Lock()
		for _, l := range strings.Split(sc.out.String(), "\n") {
			if strings.Contains(l, "spool") || strings.Contains(l, "level=ERROR") {
				t.Logf("sidecar: %s", l)
			}
		}
		sc.mu.Unlock()
	}
	if !sc.alive() {
		t.Fatalf("the sidecar exited:\n%s", sc.out.String())
	}
	if refusedWhileFull == 0 || refusedWriteError == 0 {
		t.Errorf("the spool refused %v records, %v of them for write errors; want some for write errors", refusedWhileFull, refusedWriteError)
	}
	if delivered+int(dropped) != int(gen.Lines) || dup != 0 {
		t.Errorf("%d lines written, %d delivered, %v dropped (counted), %d duplicated: some went missing uncounted",
			gen.Lines, delivered, dropped, dup)
	}
	if delivered2 != int(gen2.Lines) || dup2 != 0 {
		t.Errorf("after the outage: %d of %d lines delivered, %d duplicated", delivered2, gen2.Lines, dup2)
	}
}

// TestChaosCorruptSpool is scenario 5: the sidecar spools a container's
// lines while Loki is down and is stopped; bytes in the middle of the
// segment file are flipped in three places, far apart; restarted with Loki
// up it counts three damaged records and delivers every other line.
func TestChaosCorruptSpool(t *testing.T) {
	d := dockertest.Start(t)
	srv := lokitest.Start(t)
	e := &pluginEnv{d: d, loki: srv, image: d.EnsureTestImage(t)}
	stateDir, spoolDir := t.TempDir(), t.TempDir()
	sc := startSidecar(t, d, srv.PushURL(), stateDir, append([]string{"--overflow", "spool", "--spool-dir", spoolDir}, chaosSidecarFlags...)...)
	keepEndpoint(t, e)
	srv.Stop()
	gen := loggen.Config{ID: runID("flip"), Lines: 3_000, Size: 150, StderrShare: 0.2}
	start := time.Now().Add(-time.Minute)
	id, name := sidecarContainer(t, e, gen)
	e.wait(t, id)
	waitFor(t, 2*time.Minute, "every line in the spool", func() bool {
		return sc.metric("logferry_loki_entries_spooled_total") >= float64(gen.Lines)
	})
	sc.stop(syscall.SIGTERM)
	var segs []string
	if err := filepath.WalkDir(spoolDir, func(path string, de fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(path, ".seg") {
			segs = append(segs, path)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(segs) != 1 {
		t.Fatalf("want one spool segment, have %v", segs)
	}
	b, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	const flips = 3
	for i := 1; i <= flips; i++ {
		b[len(b)*i/(flips+1)] ^= 0xff
	}
	if err := os.WriteFile(segs[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	srv.Restart()
	sc.start()
	delivered, dup := e.countLines(t, name, gen, start, int(gen.Lines)-flips)
	corrupt := func() float64 { return sc.metric("logferry_spool_records_corrupt_total") }
	waitFor(t, time.Minute, "the spool to be replayed", func() bool {
		return sc.metric("logferry_spool_unacked_bytes") == 0 && corrupt() > 0
	})
	res := chaosResult{}
	res.add("scenario", "corrupt-spool")
	res.add("written", gen.Lines)
	res.add("segment_bytes", len(b))
	res.add("bytes_flipped", flips)
	res.add("delivered", delivered)
	res.add("lost", int(gen.Lines)-delivered)
	res.add("duplicated", dup)
	res.add("corrupt_records", corrupt())
	res.add("corrupt_bytes", sc.metric("logferry_spool_bytes_corrupt_total"))
	sc.mu.Lock()
	logged := strings.Count(sc.out.String(), "skipped damaged spool data")
	sc.mu.Unlock()
	res.add("damage_logged", logged)
	res.log(t)
	if logged != flips {
		t.Errorf("the sidecar logged %d damaged runs, want %d", logged, flips)
	}
	if corrupt() != flips {
		t.Errorf("%v damaged records counted, want %d", corrupt(), flips)
	}
	if delivered != int(gen.Lines)-flips || dup != 0 {
		t.Errorf("%d of %d lines delivered, %d duplicated; want all but the %d damaged", delivered, gen.Lines, dup, flips)
	}
}
