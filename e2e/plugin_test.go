package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/logferry/logferry/internal/dockertest"
	"github.com/logferry/logferry/internal/loggen"
	"github.com/logferry/logferry/internal/lokitest"
)

// httpc asks the plugin's metrics endpoint; no keep-alive, so no idle
// connection outlives a test.
var httpc = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		dockertest.Shutdown()
		os.Exit(code)
	}))
}

// pluginEnv is a private dockerd with logferry installed as a logging
// plugin, shipping to a real Loki.
type pluginEnv struct {
	d       *dockertest.Daemon
	loki    *lokitest.Server
	image   string
	driver  string
	metrics string // the plugin's METRICS_ADDR
	host    string // the host label the plugin sets
}

func setupPlugin(t *testing.T) *pluginEnv {
	t.Helper()
	d := dockertest.Start(t)
	return installPlugin(t, d, lokitest.Start(t), "logferry")
}

// installPlugin installs the plugin as name on d, shipping to srv by
// default, with its metrics on a free port, and waits for its /ready.
func installPlugin(t *testing.T, d *dockertest.Daemon, srv *lokitest.Server, name string) *pluginEnv {
	t.Helper()
	metrics := freeAddr(t)
	e := &pluginEnv{d: d, loki: srv, image: d.EnsureTestImage(t), metrics: metrics}
	e.driver = d.InstallPlugin(t, name, "LOKI_URL="+srv.PushURL(), "METRICS_ADDR="+metrics)
	e.driver = strings.TrimSuffix(e.driver, ":latest")
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	e.host = h
	waitFor(t, 30*time.Second, "the plugin's /ready", func() bool { return ready(metrics) })
	return e
}

// ready reports whether the /ready of the plugin or sidecar at addr answers
// 200.
func ready(addr string) bool {
	resp, err := httpc.Get("http://" + addr + "/ready")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
	}
}

// metric sums the samples of one metric family on the plugin's /metrics.
func (e *pluginEnv) metric(t *testing.T, name string) float64 {
	t.Helper()
	return metricWhere(t, e.metrics, name, "")
}

// metricWhere sums the samples of one metric family at addr whose labels
// contain match (e.g. `status="429"`; "" matches every sample).
func metricWhere(t *testing.T, addr, name, match string) float64 {
	t.Helper()
	sum := 0.0
	for _, v := range metricSamples(t, addr, name, match) {
		sum += v
	}
	return sum
}

// metricSamples returns the samples of one metric family at addr whose
// labels contain match.
func metricSamples(t *testing.T, addr, name, match string) []float64 {
	t.Helper()
	resp, err := httpc.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("reading the metrics at %s: %v", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var samples []float64
	for _, line := range strings.Split(string(body), "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		labels, _, _ := strings.Cut(rest, "}")
		if match != "" && !strings.Contains(labels, match) {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			samples = append(samples, v)
		}
	}
	return samples
}

// waitDelivered waits until the plugin has no stream left: a stream ends only
// once Loki has resolved its last line.
func (e *pluginEnv) waitDelivered(t *testing.T) {
	t.Helper()
	waitFor(t, 3*time.Minute, "every plugin stream to end and be delivered", func() bool {
		return e.metric(t, "logferry_plugin_streams_active") == 0 && e.metric(t, "logferry_plugin_streams_draining") == 0
	})
}

func (e *pluginEnv) wait(t *testing.T, id string) {
	t.Helper()
	out := strings.TrimSpace(e.d.Docker(t, "wait", id))
	if out != "0" {
		t.Fatalf("container %s exited with %s; its logs:\n%s", id, out, e.d.Docker(t, "logs", "--tail", "5", id))
	}
}

// containerStreams reads back every entry Loki has of the container name
// since since.
func containerStreams(t *testing.T, srv *lokitest.Server, name string, since time.Time) []lokitest.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	streams, err := srv.QueryAll(ctx, fmt.Sprintf(`{container_name=%q}`, name), since, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	return streams
}

// checkLoki reads every entry of the container back and checks each of the
// generator's lines arrived exactly once, whole, in order per stream, on
// the stream the generator wrote it to, with the default labels.
func (e *pluginEnv) checkLoki(t *testing.T, name string, gen loggen.Config, since time.Time) {
	t.Helper()
	streams := containerStreams(t, e.loki, name, since)
	total := 0
	for _, s := range streams {
		source := s.Labels["source"]
		want := map[string]string{"container_name": name, "host": e.host, "source": source}
		if lokitest.LabelString(s.Labels) != lokitest.LabelString(want) {
			t.Fatalf("labels %s, want %s", lokitest.LabelString(s.Labels), lokitest.LabelString(want))
		}
		last := uint64(0)
		for _, en := range s.Entries {
			rec, err := loggen.Parse(en.Line)
			if err != nil {
				t.Fatalf("%s: damaged line: %v", source, err)
			}
			if rec.ID != gen.ID || rec.Stream != source || gen.Stream(rec.Seq) != source {
				t.Fatalf("line %d of run %s on %s, written to %s", rec.Seq, rec.ID, source, gen.Stream(rec.Seq))
			}
			if rec.Seq <= last {
				t.Fatalf("%s: line %d after line %d: duplicated or out of order", source, rec.Seq, last)
			}
			last = rec.Seq
			if en.StructuredMetadata["container_id"] == "" || en.StructuredMetadata["image_name"] != e.image {
				t.Fatalf("structured metadata %v", en.StructuredMetadata)
			}
		}
		total += len(s.Entries)
	}
	if uint64(total) != gen.Lines {
		t.Fatalf("Loki has %d lines of %d", total, gen.Lines)
	}
}

func genArgs(gen loggen.Config, extra ...string) []string {
	args := []string{"-id", gen.ID, "-n", strconv.FormatUint(gen.Lines, 10), "-size", strconv.Itoa(gen.Size),
		"-stderr", strconv.FormatFloat(gen.StderrShare, 'f', -1, 64)}
	if gen.LongEvery > 0 {
		args = append(args, "-long-every", strconv.FormatUint(gen.LongEvery, 10), "-long-size", strconv.Itoa(gen.LongSize))
	}
	if gen.Unicode {
		args = append(args, "-unicode")
	}
	return append(args, extra...)
}

func runID(prefix string) string { return fmt.Sprintf("%s%d", prefix, time.Now().UnixNano()%1e9) }

func TestPlugin(t *testing.T) {
	e := setupPlugin(t)

	t.Run("every line arrives once, whole and in order", func(t *testing.T) {
		gen := loggen.Config{ID: runID("all"), Lines: 100_000, Size: 200, StderrShare: 0.3,
			LongEvery: 1000, LongSize: 40 << 10, Unicode: true}
		name := "lf-" + gen.ID
		start := time.Now().Add(-time.Minute)
		id := e.d.Run(t, append([]string{"--name", name, "--log-driver", e.driver, e.image}, genArgs(gen)...)...)
		e.wait(t, id)
		e.waitDelivered(t)
		e.checkLoki(t, name, gen, start)
	})

	t.Run("docker logs tail since follow", func(t *testing.T) {
		gen := loggen.Config{ID: runID("logs"), Lines: 40, Size: 80}
		id := e.d.Run(t, append([]string{"--log-driver", e.driver, e.image}, genArgs(gen, "-rate", "40")...)...)
		// --follow from the start returns every line as it is written and
		// ends when the container stops.
		follow := e.d.Docker(t, "logs", "--follow", id)
		if want := expected(gen, 1, 40); follow != want {
			t.Fatalf("docker logs --follow:\n%s\nwant:\n%s", follow, want)
		}
		e.wait(t, id)
		if got, want := e.d.Docker(t, "logs", "--tail", "10", id), expected(gen, 31, 40); got != want {
			t.Fatalf("docker logs --tail 10:\n%s\nwant:\n%s", got, want)
		}
		stamped := strings.Split(strings.TrimSpace(e.d.Docker(t, "logs", "--timestamps", id)), "\n")
		if len(stamped) != 40 {
			t.Fatalf("docker logs --timestamps gave %d lines", len(stamped))
		}
		since := strings.Fields(stamped[20])[0] // line 21
		if got, want := e.d.Docker(t, "logs", "--since", since, id), expected(gen, 21, 40); got != want {
			t.Fatalf("docker logs --since %s:\n%s\nwant:\n%s", since, got, want)
		}
		e.waitDelivered(t)
	})

	t.Run("a bad log-opt fails docker run naming it", func(t *testing.T) {
		for opt, name := range map[string]string{
			"loki-batch-wait=soon":     "loki-batch-wait",
			"loki-retries=-3":          "loki-retries",
			"no-such-option=1":         "no-such-option",
			"loki-relabel-config=x: y": "loki-relabel-config",
		} {
			_, stderr, err := e.d.DockerErr("run", "--rm", "--network", "none", "--log-driver", e.driver,
				"--log-opt", opt, e.image, "-n", "1")
			if err == nil || !strings.Contains(stderr, name) {
				t.Errorf("--log-opt %s: err %v, stderr %q does not name %s", opt, err, stderr, name)
			}
		}
	})

	for _, mode := range []string{"refused", "hanging"} {
		t.Run("docker stop is fast while Loki is "+mode, func(t *testing.T) {
			url := deadLoki(t, mode)
			// Give up on the dead endpoint quickly, so that the entries
			// are dropped (and counted) within the test, not 5 minutes on.
			dead := []string{"--log-opt", "loki-url=" + url, "--log-opt", "loki-retries=1", "--log-opt", "loki-timeout=1s",
				"--log-opt", "loki-min-backoff=100ms", "--log-opt", "loki-max-backoff=200ms",
				// Memory stays bounded: past 2 MiB entries are dropped.
				"--log-opt", "loki-queue-size=2m"}
			gen := loggen.Config{ID: runID("dead"), Lines: 200_000, Size: 200}
			// As fast as it can: its writes must not wait on Loki.
			start := time.Now()
			fast := e.d.Run(t, append(append(append([]string{"--log-driver", e.driver}, dead...), e.image), genArgs(gen)...)...)
			e.wait(t, fast)
			t.Logf("Loki %s: 200,000 lines written in %v", mode, time.Since(start).Round(time.Millisecond))
			if n := strings.Count(e.d.Docker(t, "logs", fast), "\n"); n != 200_000 {
				t.Fatalf("docker logs has %d of 200,000 lines", n)
			}
			// And a container still writing is stopped within 3 s.
			before := e.metric(t, "logferry_plugin_frames_read_total")
			slow := e.d.Run(t, append(append([]string{"--log-driver", e.driver}, dead...), e.image,
				"-id", gen.ID, "-n", "1000000", "-rate", "2000")...)
			waitFor(t, time.Minute, "the container to log while Loki is unreachable", func() bool {
				return e.metric(t, "logferry_plugin_frames_read_total") >= before+2000
			})
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			begin := time.Now()
			if _, stderr, err := e.d.DockerCtx(ctx, "stop", "-t", "1", slow); err != nil {
				t.Fatalf("docker stop: %v %s", err, stderr)
			}
			took := time.Since(begin)
			t.Logf("Loki %s: docker stop -t 1 took %v", mode, took.Round(time.Millisecond))
			if took > 3*time.Second {
				t.Fatalf("docker stop -t 1 took %v with Loki %s; the promise is under 3 s", took, mode)
			}
			e.waitDelivered(t)
		})
	}

	t.Run("the plugin killed with SIGKILL loses no line", func(t *testing.T) {
		gen := loggen.Config{ID: runID("kill"), Lines: 20_000, Size: 150, StderrShare: 0.2}
		name := "lf-" + gen.ID
		start := time.Now().Add(-time.Minute)
		before := e.metric(t, "logferry_plugin_frames_read_total")
		id := e.d.Run(t, append([]string{"--name", name, "--log-driver", e.driver, "--log-opt", "loki-batch-wait=100ms",
			e.image}, genArgs(gen, "-rate", "2000")...)...)
		waitFor(t, time.Minute, "a third of the lines", func() bool {
			return e.metric(t, "logferry_plugin_frames_read_total") >= before+6000
		})
		pid := e.pluginPID(t)
		if err := exec.Command("kill", "-9", strconv.Itoa(pid)).Run(); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		waitFor(t, 30*time.Second, "the daemon to restart the plugin", func() bool {
			p, err := e.findPluginPID()
			return err == nil && p != pid
		})
		t.Logf("the daemon restarted the plugin %v after SIGKILL", time.Since(killed).Round(time.Millisecond))
		e.wait(t, id)
		e.waitDelivered(t)
		e.checkLoki(t, name, gen, start)
		stdout, stderr, err := e.d.DockerErr("logs", id)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(stdout, "\n") + strings.Count(stderr, "\n"); n != int(gen.Lines) {
			t.Fatalf("docker logs after the restart has %d of %d lines", n, gen.Lines)
		}
		t.Logf("lines re-sent from the local copy after the restart: %v", e.metric(t, "logferry_plugin_lines_replayed_total"))
	})

	t.Run("500 containers leave nothing behind", func(t *testing.T) {
		runMany := func(n int) {
			var wg sync.WaitGroup
			sem := make(chan struct{}, 4)
			errs := make(chan error, n)
			for i := 0; i < n; i++ {
				wg.Add(1)
				sem <- struct{}{}
				go func(i int) {
					defer wg.Done()
					defer func() { <-sem }()
					_, stderr, err := e.d.DockerErr("run", "--rm", "--network", "none", "--label", dockertest.Label,
						"--log-driver", e.driver, e.image, "-id", "many", "-n", "3")
					if err != nil {
						errs <- fmt.Errorf("container %d: %v: %s", i, err, stderr)
					}
				}(i)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
		}
		runMany(8) // warm up: the daemon's keep-alive connections to the plugin
		e.waitDelivered(t)
		baseG, baseFD := e.metric(t, "go_goroutines"), e.metric(t, "process_open_fds")
		runMany(500)
		e.waitDelivered(t)
		// The daemon's plugin client keeps idle connections for up to 90 s
		// (each is a goroutine pair and an FD here): wait past that.
		var lastG, lastFD float64
		waitFor(t, 5*time.Minute, "goroutines and FDs back to the baseline", func() bool {
			g, fd := e.metric(t, "go_goroutines"), e.metric(t, "process_open_fds")
			if g > baseG || fd > baseFD {
				if g != lastG || fd != lastFD {
					t.Logf("waiting: %v goroutines (baseline %v), %v open FDs (baseline %v)", g, baseG, fd, baseFD)
				}
				lastG, lastFD = g, fd
				return false
			}
			return true
		})
		t.Logf("after 500 containers: %v goroutines (baseline %v), %v open FDs (baseline %v), %v streams",
			e.metric(t, "go_goroutines"), baseG, e.metric(t, "process_open_fds"), baseFD,
			e.metric(t, "logferry_plugin_streams_active"))
		if n := e.metric(t, "logferry_plugin_entries_read_total"); n != 0 {
			t.Fatalf("per-container series left behind: entries_read_total sums to %v", n)
		}
	})
}

// expected is what docker logs prints for lines from..to of gen.
func expected(gen loggen.Config, from, to uint64) string {
	var b strings.Builder
	for seq := from; seq <= to; seq++ {
		_, line := gen.Line(seq)
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// deadLoki returns a push URL that refuses connections, or one that accepts
// them and never answers.
func deadLoki(t *testing.T, mode string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String() + "/loki/api/v1/push"
	if mode == "refused" {
		ln.Close()
		return url
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); _, _ = io.Copy(io.Discard, c) }() // read, never answer
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return url
}

// pluginPID finds the plugin's process: the child of the containerd shim
// that runs the plugin's id.
func (e *pluginEnv) pluginPID(t *testing.T) int {
	t.Helper()
	pid, err := e.findPluginPID()
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func (e *pluginEnv) findPluginPID() (int, error) {
	out, _, err := e.d.DockerErr("plugin", "inspect", "-f", "{{.Id}}", e.driver)
	if err != nil {
		return 0, err
	}
	id := strings.TrimSpace(out)
	shims, err := exec.Command("pgrep", "-f", "containerd-shim.*"+id).Output()
	if err != nil {
		return 0, fmt.Errorf("no shim for plugin %s: %w", id, err)
	}
	for _, shim := range strings.Fields(string(shims)) {
		kids, err := exec.Command("pgrep", "-P", shim, "-x", "logferry-plugin").Output()
		if err == nil {
			return strconv.Atoi(strings.Fields(string(kids))[0])
		}
	}
	return 0, fmt.Errorf("no logferry-plugin process under the shim of %s", id)
}
