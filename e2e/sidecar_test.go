package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logferry/logferry/internal/dockertest"
	"github.com/logferry/logferry/internal/loggen"
	"github.com/logferry/logferry/internal/lokitest"
	"github.com/logferry/logferry/sidecar/positions"
)

// sidecarProc is a logferry-sidecar process run by the test against the
// private dockerd, stopped (or killed) by the test.
type sidecarProc struct {
	t       *testing.T
	bin     string
	args    []string
	metrics string
	cmd     *exec.Cmd
	done    chan struct{}
	out     *bytes.Buffer
	mu      sync.Mutex
}

var (
	buildSidecarOnce sync.Once
	sidecarBin       string
	sidecarBuildErr  error
)

func buildSidecar(t *testing.T) string {
	t.Helper()
	buildSidecarOnce.Do(func() {
		dir, err := os.MkdirTemp("", "logferry-sidecar-bin-")
		if err != nil {
			sidecarBuildErr = err
			return
		}
		sidecarBin = filepath.Join(dir, "logferry-sidecar")
		out, err := exec.Command("go", "build", "-o", sidecarBin, "../cmd/logferry-sidecar").CombinedOutput()
		if err != nil {
			sidecarBuildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if sidecarBuildErr != nil {
		t.Fatal(sidecarBuildErr)
	}
	return sidecarBin
}

func startSidecar(t *testing.T, d *dockertest.Daemon, lokiPush, stateDir string, extra ...string) *sidecarProc {
	t.Helper()
	p := &sidecarProc{t: t, bin: buildSidecar(t), metrics: freeAddr(t)}
	p.args = append([]string{"--docker-host", d.Host(), "--containers-dir", filepath.Join(d.Dir(), "data", "containers"),
		"--state-dir", stateDir, "--listen", p.metrics, "--loki-url", lokiPush, "--loki-batch-wait", "100ms",
		"--poll-interval", "250ms"}, extra...)
	p.start()
	t.Cleanup(func() { p.stop(syscall.SIGTERM) })
	return p
}

func (p *sidecarProc) start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.out = &bytes.Buffer{}
	p.cmd = exec.Command(p.bin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if f := os.Getenv("LF_E2E_SIDECAR_LOG"); f != "" {
		// Debugging: the sidecar's output also goes to this file.
		lf, err := os.OpenFile(f, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			p.t.Fatal(err)
		}
		// Closed after the process ended (stop runs first: cleanups
		// run last-registered first).
		p.t.Cleanup(func() { p.stop(syscall.SIGTERM); lf.Close() })
		w := io.MultiWriter(p.out, lf)
		p.cmd.Stdout, p.cmd.Stderr = w, w
	}
	// Setsid: a session of its own, as a deployed sidecar (its own service
	// or container) and the test's dockerd (scripts/dockerd) have. With
	// the kernel's autogroup scheduling, every session is one scheduling
	// entity: sharing the test's session, the sidecar shared one CPU share
	// with Loki and the test itself while dockerd had a whole one, and
	// waited 100-200 ms at a time for a CPU (per-thread run delay in
	// /proc/<pid>/task/*/schedstat), longer than a rotated file lives in
	// TestSidecarKeepsUpWithFastRotation.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setsid: true}
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(p.cmd, p.done)
	waitFor(p.t, 60*time.Second, "the sidecar's /ready", func() bool {
		select {
		case <-p.done:
			p.t.Fatalf("the sidecar exited:\n%s", p.out.String())
		default:
		}
		return ready(p.metrics)
	})
}

// stop ends the process with sig and waits for it.
func (p *sidecarProc) stop(sig syscall.Signal) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func (p *sidecarProc) metric(name string) float64 {
	e := &pluginEnv{metrics: p.metrics}
	return e.metric(p.t, name)
}

// checkStreams checks every generator line arrived exactly once, whole, in
// order per stream, and returns the label set of each source.
func checkStreams(t *testing.T, srv *lokitest.Server, name, host string, gen loggen.Config, since time.Time) map[string]string {
	t.Helper()
	got, labelSets, cut := lokiLines(t, srv, name, gen, since)
	for source, lines := range cut {
		t.Fatalf("%s: damaged line: %q", source, lines[0])
	}
	if uint64(len(got)) != gen.Lines {
		t.Fatalf("Loki has %d lines of %d for %s", len(got), gen.Lines, name)
	}
	_ = host
	return labelSets
}

// lokiLines reads the container's lines back from Loki and returns the
// time of each whole generator line by sequence number, the label set of
// each source and, by source, the lines that are not a whole generator
// line; it fails the test on a line on the wrong stream, and on one
// repeated or out of order in its stream.
func lokiLines(t *testing.T, srv *lokitest.Server, name string, gen loggen.Config, since time.Time) (got map[uint64]int64, labelSets map[string]string, cut map[string][]string) {
	t.Helper()
	got, labelSets, cut = map[uint64]int64{}, map[string]string{}, map[string][]string{}
	for _, s := range containerStreams(t, srv, name, since) {
		source := s.Labels["source"]
		labelSets[source] = lokitest.LabelString(s.Labels)
		last := uint64(0)
		for _, en := range s.Entries {
			rec, err := loggen.Parse(en.Line)
			if err != nil {
				cut[source] = append(cut[source], en.Line)
				continue
			}
			if rec.ID != gen.ID || gen.Stream(rec.Seq) != source {
				t.Fatalf("line %d of %s on %s", rec.Seq, rec.ID, source)
			}
			if rec.Seq <= last {
				t.Fatalf("%s: line %d after line %d: duplicated or out of order", source, rec.Seq, last)
			}
			last = rec.Seq
			got[rec.Seq] = en.Timestamp
		}
	}
	return got, labelSets, cut
}

func waitLoki(t *testing.T, srv *lokitest.Server, name string, n uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	q := fmt.Sprintf(`{container_name=%q}`, name)
	waitFor(t, 5*time.Minute, fmt.Sprintf("%d lines of %s in Loki", n, name), func() bool {
		s, err := srv.QueryRange(ctx, q, time.Now().Add(-time.Hour), time.Now().Add(time.Minute), 1, lokitest.Backward)
		if err != nil || len(s) == 0 {
			return false
		}
		// Cheap first: is the last line there? Then count them all.
		for _, st := range s {
			for _, e := range st.Entries {
				rec, err := loggen.Parse(e.Line)
				if err != nil || rec.Seq < n-n/10 {
					return false
				}
			}
		}
		all, err := srv.QueryAll(ctx, q, time.Now().Add(-time.Hour), time.Now().Add(time.Minute))
		return err == nil && uint64(lokitest.Count(all)) >= n
	})
}

// checkRuns checks that Loki has every line of gen exactly runs times (the
// container ran gen that many times) and nothing else.
func checkRuns(t *testing.T, srv *lokitest.Server, name string, gen loggen.Config, runs int, since time.Time) {
	t.Helper()
	streams := containerStreams(t, srv, name, since)
	seen := map[uint64]int{}
	for _, st := range streams {
		for _, en := range st.Entries {
			rec, err := loggen.Parse(en.Line)
			if err != nil || rec.ID != gen.ID || rec.Seq < 1 || rec.Seq > gen.Lines {
				t.Fatalf("unexpected line in Loki: %q (%v)", en.Line, err)
			}
			seen[rec.Seq]++
		}
	}
	for seq := uint64(1); seq <= gen.Lines; seq++ {
		if seen[seq] != runs {
			t.Fatalf("line %d is in Loki %d times, want %d (one per run)", seq, seen[seq], runs)
		}
	}
}

// waitLokiProgress waits until Loki has n lines of the container, or until
// their count has not grown for stall; it reports whether all arrived.
func waitLokiProgress(t *testing.T, srv *lokitest.Server, name string, n uint64, stall time.Duration) bool {
	t.Helper()
	q := fmt.Sprintf(`{container_name=%q}`, name)
	last, lastChange := -1, time.Now()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		all, err := srv.QueryAll(ctx, q, time.Now().Add(-time.Hour), time.Now().Add(time.Minute))
		cancel()
		got := lokitest.Count(all)
		if err == nil && uint64(got) >= n {
			return true
		}
		if got != last {
			last, lastChange = got, time.Now()
		}
		if time.Since(lastChange) > stall {
			t.Logf("Loki has %d of %d lines of %s, no more for %v (query error: %v)", got, n, name, stall, err)
			return false
		}
		time.Sleep(2 * time.Second)
	}
}

// explainMissing fails the test with what is missing from Loki and what
// the sidecar says about it.
func explainMissing(t *testing.T, srv *lokitest.Server, sc *sidecarProc, name string, gen loggen.Config, since time.Time) {
	t.Helper()
	streams := containerStreams(t, srv, name, since)
	seen := make([]int, gen.Lines+1)
	for _, s := range streams {
		for _, en := range s.Entries {
			if rec, err := loggen.Parse(en.Line); err == nil && rec.Seq <= gen.Lines {
				seen[rec.Seq]++
			}
		}
	}
	perSource := map[string]int{}
	for _, s := range streams {
		perSource[s.Labels["source"]] += len(s.Entries)
	}
	t.Logf("in Loki per source: %v", perSource)
	var gaps []string
	dups := 0
	for i := uint64(1); i <= gen.Lines; i++ {
		dups += max(seen[i]-1, 0)
	}
	for _, r := range missingRuns(int(gen.Lines), func(i int) bool { return seen[i+1] == 0 }) {
		if len(gaps) < 20 {
			gaps = append(gaps, fmt.Sprintf("%d-%d (%d)", r[0]+1, r[1]+1, r[1]-r[0]+1))
		}
	}
	resp, err := httpc.Get("http://" + sc.metrics + "/metrics")
	var metrics []string
	if err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, l := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(l, "logferry_sidecar") || strings.HasPrefix(l, "logferry_loki_entries") {
				metrics = append(metrics, l)
			}
		}
	}
	sc.mu.Lock()
	var logLines []string
	for _, l := range strings.Split(sc.out.String(), "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") || strings.Contains(l, "rotation") || strings.Contains(l, "holding") ||
			strings.Contains(l, "shipping") {
			logLines = append(logLines, l)
		}
	}
	sc.mu.Unlock()
	t.Fatalf("lines missing from Loki, first gaps (seq from-to (count)): %v; %d duplicates\nsidecar warnings:\n%s\nsidecar metrics:\n%s",
		gaps, dups, strings.Join(logLines, "\n"), strings.Join(metrics, "\n"))
}

func TestSidecar(t *testing.T) {
	d := dockertest.Start(t)
	srv := lokitest.Start(t)
	image := d.EnsureTestImage(t)
	stateDir := t.TempDir()
	// The sidecar ships through a gate, open but for the case that holds
	// Loki's answers (a container's label cannot choose its endpoint).
	g := newGate(t, srv.URL())
	sc := startSidecar(t, d, g.pushURL(), stateDir)
	host, _ := os.Hostname()

	t.Run("killed with SIGKILL at random moments: nothing lost or repeated", func(t *testing.T) {
		gen := loggen.Config{ID: runID("kill"), Lines: 60_000, Size: 200, StderrShare: 0.2}
		name := "sc-" + gen.ID
		start := time.Now().Add(-time.Minute)
		id := d.Run(t, append([]string{"--name", name, "--log-driver", "json-file", "--log-opt", "max-size=512k",
			"--log-opt", "max-file=4", image}, genArgs(gen, "-rate", "6000")...)...)
		for i := 0; i < 4; i++ {
			// The point of this test is a kill at an arbitrary moment, not
			// after some condition: the wait is random on purpose.
			time.Sleep(time.Duration(500+rand.IntN(1500)) * time.Millisecond)
			sc.stop(syscall.SIGKILL)
			sc.start()
		}
		(&pluginEnv{d: d}).wait(t, id)
		waitLoki(t, srv, name, gen.Lines)
		checkStreams(t, srv, name, host, gen, start)
	})

	t.Run("stopped while the container rotates, also compressed", func(t *testing.T) {
		for _, compress := range []string{"false", "true"} {
			gen := loggen.Config{ID: runID("gap"), Lines: 12_000, Size: 200}
			name := "sc-" + gen.ID
			start := time.Now().Add(-time.Minute)
			sc.stop(syscall.SIGTERM)
			// Written while the sidecar is down: ~2.4 MB rotates a 1 MB file
			// twice.
			id := d.Run(t, append([]string{"--name", name, "--log-driver", "json-file", "--log-opt", "max-size=1m",
				"--log-opt", "max-file=5", "--log-opt", "compress=" + compress, image}, genArgs(gen, "-sleep-after", "1h")...)...)
			logDir := filepath.Join(d.Dir(), "data", "containers", id)
			waitFor(t, time.Minute, "two rotations", func() bool {
				m, _ := filepath.Glob(filepath.Join(logDir, id+"-json.log.2*"))
				return len(m) > 0
			})
			sc.start()
			waitLoki(t, srv, name, gen.Lines)
			checkStreams(t, srv, name, host, gen, start)
			d.Docker(t, "rm", "-f", id)
		}
	})

	t.Run("a container removed while the sidecar is down: its position goes at the next start", func(t *testing.T) {
		saved := func(id string) bool {
			b, err := os.ReadFile(filepath.Join(stateDir, positions.FileName)) // replaced by rename: whole
			if err != nil {
				return false
			}
			m, err := positions.Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			_, ok := m[id]
			return ok
		}
		gen := loggen.Config{ID: runID("gone"), Lines: 100, Size: 100}
		name := "sc-" + gen.ID
		id := d.Run(t, append([]string{"--name", name, image}, genArgs(gen)...)...)
		waitLoki(t, srv, name, gen.Lines)
		waitFor(t, time.Minute, "the container's position", func() bool { return saved(id) })
		sc.stop(syscall.SIGTERM)
		d.Docker(t, "rm", "-f", id)
		if !saved(id) {
			t.Fatal("the position went with the sidecar stopped")
		}
		sc.start()
		waitFor(t, time.Minute, "the removed container's position to go", func() bool { return !saved(id) })
	})

	t.Run("local driver via the logs API; plugin containers skipped", func(t *testing.T) {
		gen := loggen.Config{ID: runID("api"), Lines: 5_000, Size: 150, StderrShare: 0.3, LongEvery: 1000, LongSize: 40 << 10}
		name := "sc-" + gen.ID
		start := time.Now().Add(-time.Minute)
		id := d.Run(t, append([]string{"--name", name, "--log-driver", "local", image}, genArgs(gen)...)...)
		(&pluginEnv{d: d}).wait(t, id)
		waitLoki(t, srv, name, gen.Lines)
		checkStreams(t, srv, name, host, gen, start)
	})

	t.Run("local driver: short containers from their first line", func(t *testing.T) {
		// The daemon stamps a container's first lines before it sets
		// State.StartedAt (one container in three on an idle machine):
		// a logs stream from StartedAt loses them.
		start := time.Now().Add(-time.Minute)
		var gens []loggen.Config
		var ids []string
		for i := range 8 {
			gen := loggen.Config{ID: runID(fmt.Sprintf("first%d", i)), Lines: 200, Size: 100, StderrShare: 0.3}
			gens = append(gens, gen)
			ids = append(ids, d.Run(t, append([]string{"--name", "sc-" + gen.ID, "--log-driver", "local", image}, genArgs(gen)...)...))
		}
		for i, gen := range gens {
			(&pluginEnv{d: d}).wait(t, ids[i])
			if !waitLokiProgress(t, srv, "sc-"+gen.ID, gen.Lines, 30*time.Second) {
				t.Errorf("container %d of %d: not every line arrived", i+1, len(gens))
			}
			checkStreams(t, srv, "sc-"+gen.ID, host, gen, start)
		}
	})

	t.Run("docker restart and stop while Loki is slow: every run shipped once, by file and by the logs API", func(t *testing.T) {
		// The die event finishes the container's shipper, which then waits
		// for Loki to acknowledge the run's last lines; the start event of
		// the next run, and that run's die, arrive meanwhile and must not
		// be lost. Loki, behind a gate that holds its answers, makes that
		// wait outlast two restarts and a stop.
		for _, driver := range []string{"json-file", "local"} {
			gen := loggen.Config{ID: runID("restart"), Lines: 500, Size: 100, StderrShare: 0.3}
			name := "sc-" + gen.ID
			start := time.Now().Add(-time.Minute)
			id := d.Run(t, append([]string{"--name", name, "--log-driver", driver,
				image}, genArgs(gen, "-sleep-after", "10m")...)...)
			waitLoki(t, srv, name, gen.Lines)
			g.hold()
			for run := uint64(2); run <= 3; run++ {
				d.Docker(t, "restart", "-t", "5", id)
				waitFor(t, time.Minute, fmt.Sprintf("run %d's lines in docker logs", run), func() bool {
					out, errOut, err := d.DockerErr("logs", id)
					return err == nil && uint64(strings.Count(out, "\n")+strings.Count(errOut, "\n")) >= run*gen.Lines
				})
			}
			d.Docker(t, "stop", "-t", "5", id)
			g.release()
			if !waitLokiProgress(t, srv, name, 3*gen.Lines, 30*time.Second) {
				t.Fatalf("%s: not every run of the container shipped", driver)
			}
			checkRuns(t, srv, name, gen, 3, start)
			// The stopped container's last shipper ends: its series go.
			waitFor(t, time.Minute, "the stopped container's shipper to end", func() bool {
				return len(metricSamples(t, sc.metrics, "logferry_sidecar_lines_read_total", fmt.Sprintf("container_name=%q", name))) == 0
			})
			d.Docker(t, "rm", "-f", id)
		}
	})

	t.Run("the same labels from the sidecar and from the plugin", func(t *testing.T) {
		metrics := freeAddr(t)
		driver := strings.TrimSuffix(d.InstallPlugin(t, "logferry", "LOKI_URL="+srv.PushURL(), "METRICS_ADDR="+metrics), ":latest")
		labels := []string{"--label", "com.docker.compose.project=shop", "--label", "com.docker.compose.service=web"}
		var sets [2]map[string]string
		for i, drv := range []string{"json-file", driver} {
			gen := loggen.Config{ID: runID("same"), Lines: 100, Size: 100, StderrShare: 0.5}
			name := "sc-same"
			start := time.Now()
			id := d.Run(t, append(append(append([]string{"--name", name, "--log-driver", drv}, labels...), image), genArgs(gen)...)...)
			(&pluginEnv{d: d}).wait(t, id)
			q := fmt.Sprintf(`{container_name=%q}`, name)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if _, err := srv.WaitForCount(ctx, q, start, time.Now().Add(time.Minute), int(gen.Lines)); err != nil {
				cancel()
				t.Fatal(err)
			}
			streams, err := srv.QueryAll(ctx, q, start, time.Now().Add(time.Minute))
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			sets[i] = map[string]string{}
			for _, s := range streams {
				sets[i][s.Labels["source"]] = lokitest.LabelString(s.Labels)
			}
			if lokitest.Count(streams) != int(gen.Lines) {
				t.Fatalf("%s: %d lines of %d (the sidecar must skip plugin containers)", drv, lokitest.Count(streams), gen.Lines)
			}
			d.Docker(t, "rm", "-f", id)
		}
		if fmt.Sprint(sets[0]) != fmt.Sprint(sets[1]) {
			t.Fatalf("label sets differ:\n sidecar %v\n plugin  %v", sets[0], sets[1])
		}
		t.Logf("both styles: %v", sets[0])
	})

	t.Run("500 containers leave nothing behind", func(t *testing.T) {
		// Detached: an attached `docker run --rm` of a container this
		// short hung once for minutes in a local run (Docker 20.10's CLI,
		// cause not found); the daemon removes each container itself.
		const batch = "logferry-e2e-many=1"
		run := func(n int) {
			var wg sync.WaitGroup
			sem := make(chan struct{}, 4)
			for i := 0; i < n; i++ {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
					defer cancel()
					_, stderr, err := d.DockerCtx(ctx, "run", "-d", "--rm", "--network", "none", "--label", dockertest.Label,
						"--label", batch, image, "-id", "many", "-n", "3")
					if err != nil {
						t.Errorf("docker run: %v %s", err, stderr)
					}
				}()
			}
			wg.Wait()
			waitFor(t, 5*time.Minute, "every container of the batch to exit and be removed", func() bool {
				out, _, err := d.DockerErr("ps", "-aq", "--filter", "label="+batch)
				return err == nil && strings.TrimSpace(out) == ""
			})
		}
		run(8)
		settle := func() {
			waitFor(t, 2*time.Minute, "the sidecar to ship nothing", func() bool {
				return sc.metric("logferry_sidecar_containers") == 0
			})
		}
		settle()
		baseG, baseFD := sc.metric("go_goroutines"), sc.metric("process_open_fds")
		baseW := sc.metric("logferry_sidecar_tail_watched_directories")
		basePos := sc.metric("logferry_sidecar_positions")
		run(500)
		settle()
		waitFor(t, 2*time.Minute, "goroutines, FDs and watches back to the baseline", func() bool {
			return sc.metric("go_goroutines") <= baseG && sc.metric("process_open_fds") <= baseFD &&
				sc.metric("logferry_sidecar_tail_watched_directories") <= baseW
		})
		t.Logf("after 500 containers: %v goroutines (baseline %v), %v FDs (baseline %v), %v watched dirs",
			sc.metric("go_goroutines"), baseG, sc.metric("process_open_fds"), baseFD, sc.metric("logferry_sidecar_tail_watched_directories"))
		if n := sc.metric("logferry_sidecar_lines_read_total"); n != 0 {
			t.Fatalf("per-container series left: %v", n)
		}
		// Removed containers leave no position behind.
		if n := sc.metric("logferry_sidecar_positions"); n > basePos {
			t.Fatalf("%v positions after the containers were removed, %v before", n, basePos)
		}
	})
}

// TestSidecarKeepsUpWithFastRotation is issue 4's first must-show: a
// container writing 200,000 lines as fast as it can with max-size=1m
// max-file=3 rotates about 50 times in a few seconds, faster than Loki takes
// the lines. A rotated file lives three rotations, 60-150 ms at this rate,
// and on a 2-core machine shared with dockerd, the container and Loki the
// sidecar's threads were measured waiting 100-200 ms at a time for a CPU
// (run delay in /proc/<pid>/task/*/schedstat), so a file can be created and
// deleted while no thread of the sidecar runs: pinning it on its create
// event (tail.Tailer.pinNewer) then comes too late, and this test failed
// about one run in five. The kernel's own reference does not need the
// sidecar to run: with --fanotify on, every file dockerd closes at a
// rotation is held (tail.keeper) until the tailer has read it. The test
// also prints how many files only fanotify held. (The sidecar runs as root
// here, as dockerd does, so fanotify is permitted.)
func TestSidecarKeepsUpWithFastRotation(t *testing.T) {
	d := dockertest.Start(t)
	srv := lokitest.Start(t)
	image := d.EnsureTestImage(t)
	sc := startSidecar(t, d, srv.PushURL(), t.TempDir(), "--log-level", "debug", "--fanotify", "on")
	host, _ := os.Hostname()
	gen := loggen.Config{ID: runID("rot"), Lines: 200_000, Size: 200, StderrShare: 0.3, LongEvery: 5000,
		LongSize: 40 << 10}
	name := "sc-" + gen.ID
	start := time.Now().Add(-time.Minute)
	id := d.Run(t, append([]string{"--name", name, "--log-driver", "json-file", "--log-opt", "max-size=1m",
		"--log-opt", "max-file=3", image}, genArgs(gen)...)...)
	(&pluginEnv{d: d}).wait(t, id)
	if !waitLokiProgress(t, srv, name, gen.Lines, time.Minute) {
		explainMissing(t, srv, sc, name, gen, start)
	}
	sets := checkStreams(t, srv, name, host, gen, start)
	want := lokitest.LabelString(map[string]string{"container_name": name, "host": host, "source": "stdout"})
	if sets["stdout"] != want {
		t.Fatalf("labels %s, want %s", sets["stdout"], want)
	}
	if v := sc.metric("logferry_sidecar_tail_fanotify"); v != 1 {
		t.Fatalf("logferry_sidecar_tail_fanotify %v with --fanotify on", v)
	}
	if v := sc.metric("logferry_sidecar_tail_rotated_unread_total"); v != 0 {
		t.Fatalf("%v rotated files let go unread", v)
	}
	// Files found only because fanotify held them: how often pinning alone
	// would have had to be scheduled in time.
	t.Logf("rotations followed %v, files taken from fanotify %v",
		sc.metric("logferry_sidecar_tail_rotations_total"), sc.metric("logferry_sidecar_tail_kept_taken_total"))
}

// gate forwards to a Loki and, while held, keeps every request waiting.
type gate struct {
	srv *httptest.Server
	mu  sync.Mutex
	ch  chan struct{} // closed: open
}

func newGate(t *testing.T, lokiURL string) *gate {
	t.Helper()
	u, err := url.Parse(lokiURL)
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{ch: make(chan struct{})}
	close(g.ch)
	proxy := httputil.NewSingleHostReverseProxy(u)
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		ch := g.ch
		g.mu.Unlock()
		select {
		case <-ch:
		case <-r.Context().Done():
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { g.release(); g.srv.Close() })
	return g
}

func (g *gate) pushURL() string { return g.srv.URL + lokitest.PushPath }

func (g *gate) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.ch:
		g.ch = make(chan struct{})
	default:
	}
}

func (g *gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.ch:
	default:
		close(g.ch)
	}
}

// missingRuns returns the runs [first, last] of indexes below n for which
// missing holds, in order.
func missingRuns(n int, missing func(i int) bool) [][2]int {
	var runs [][2]int
	for i := 0; i < n; i++ {
		if !missing(i) {
			continue
		}
		j := i
		for j+1 < n && missing(j+1) {
			j++
		}
		runs = append(runs, [2]int{i, j})
		i = j
	}
	return runs
}
