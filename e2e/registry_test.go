package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/logferry/logferry/internal/dockertest"
	"github.com/logferry/logferry/internal/loggen"
	"github.com/logferry/logferry/internal/lokitest"
	"github.com/logferry/logferry/internal/repo"
)

// debianTool returns the path of program, which Debian's package pkg
// provides, installing the package with scripts/debpkg if it is missing. A
// package that cannot be installed here skips the test, saying why.
func debianTool(t *testing.T, program, pkg string) string {
	t.Helper()
	root, err := repo.Root("scripts/debpkg")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(root, "scripts", "debpkg"), program, pkg)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return strings.TrimSpace(stdout.String())
	case errors.As(err, &exit) && exit.ExitCode() == 3:
		t.Skipf("%s (Debian's %s) is not installed and could not be installed here:\n%s", program, pkg, stderr.String())
	default:
		t.Fatalf("scripts/debpkg %s %s: %v\n%s", program, pkg, err, stderr.String())
	}
	return ""
}

// dockerEnv is this process's environment pointed at d, for the scripts
// and the CLIs (docker-compose) the tests run themselves.
func dockerEnv(d *dockertest.Daemon, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_TLS":
			continue
		}
		env = append(env, kv)
	}
	return append(append(env, "DOCKER_HOST="+d.Host(), "DOCKER_CLI_HINTS=false"), extra...)
}

// runIn runs a command in the repository root against d and returns its
// standard output; it fails the test with its standard error.
func runIn(t *testing.T, d *dockertest.Daemon, env []string, name string, args ...string) string {
	t.Helper()
	root, err := repo.Root("scripts/plugin")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = root
	cmd.Env = dockerEnv(d, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s\nthe end of the daemon's log:\n%s", name, strings.Join(args, " "), err, stderr.String(), d.LogTail(20))
	}
	return stdout.String()
}

// registry is Debian's docker-registry (the distribution registry, API
// v2) on 127.0.0.1, owned by one test. The daemon allows plain HTTP to
// registries on 127.0.0.0/8 without configuration.
type registry struct {
	addr string
	cmd  *exec.Cmd
	done chan struct{} // closed once cmd has exited
	log  string        // its output file
}

// startRegistry runs the registry on a free port with its storage in
// t.TempDir() and stops it when t ends.
func startRegistry(t *testing.T) *registry {
	t.Helper()
	bin := debianTool(t, "docker-registry", "docker-registry")
	dir := t.TempDir()
	for attempt := 1; ; attempt++ {
		r, err := launchRegistry(t, bin, dir)
		if err == nil {
			return r
		}
		// Another process may have taken the port between freeAddr and
		// the registry binding it.
		if attempt < 3 && strings.Contains(err.Error(), "address already in use") {
			continue
		}
		t.Fatal(err)
	}
}

func launchRegistry(t *testing.T, bin, dir string) (*registry, error) {
	t.Helper()
	addr := freeAddr(t)
	config := filepath.Join(dir, "config.yml")
	// Unknown keys fail the registry's start: these are the ones of
	// distribution v2.8's configuration.
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"+
		"storage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\n"+
		"http:\n  addr: %s\n", filepath.Join(dir, "data"), addr)
	if err := os.WriteFile(config, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	r := &registry{addr: addr, log: filepath.Join(dir, "registry.log"), done: make(chan struct{})}
	out, err := os.Create(r.log)
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child has its own descriptor
	r.cmd = exec.Command(bin, "serve", config)
	r.cmd.Stdout, r.cmd.Stderr = out, out
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	// Owned by r: stop waits for it through done.
	go func() { _ = r.cmd.Wait(); close(r.done) }()
	t.Cleanup(r.stop)

	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := httpc.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Logf("registry: %s serving on %s", bin, addr)
				return r, nil
			}
		}
		select {
		case <-r.done:
			b, _ := os.ReadFile(r.log)
			return nil, fmt.Errorf("the registry exited before it answered on %s:\n%s", addr, b)
		case <-deadline.C:
			r.stop()
			b, _ := os.ReadFile(r.log)
			return nil, fmt.Errorf("the registry did not answer on %s within 30s:\n%s", addr, b)
		case <-tick.C:
		}
	}
}

// stop ends the registry (SIGTERM, then SIGKILL after 10 s) and waits.
func (r *registry) stop() {
	select {
	case <-r.done:
		return
	default:
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	select {
	case <-r.done:
	case <-timer.C:
		_ = r.cmd.Process.Kill()
		<-r.done
	}
}

// pushPlugin builds the plugin as version with scripts/plugin-push and
// pushes it to r; it returns the reference it pushed.
func pushPlugin(t *testing.T, d *dockertest.Daemon, r *registry, version string) string {
	t.Helper()
	began := time.Now()
	ref := strings.TrimSpace(runIn(t, d, nil,
		"scripts/plugin-push", r.addr, version))
	if want := r.addr + "/logferry:" + version; ref != want {
		t.Fatalf("scripts/plugin-push printed %q, want %q", ref, want)
	}
	t.Logf("pushed %s in %v", ref, time.Since(began).Round(time.Millisecond))
	return ref
}

// runningVersion waits for the plugin's /metrics to answer and returns the
// version its logferry_build_info reports.
func runningVersion(t *testing.T, metrics string) string {
	t.Helper()
	waitFor(t, 30*time.Second, "the plugin's /ready", func() bool { return ready(metrics) })
	for _, line := range strings.Split(metricsText(t, metrics), "\n") {
		if rest, ok := strings.CutPrefix(line, "logferry_build_info{"); ok {
			for _, kv := range strings.Split(strings.SplitN(rest, "}", 2)[0], ",") {
				if v, ok := strings.CutPrefix(kv, `version="`); ok {
					return strings.TrimSuffix(v, `"`)
				}
			}
		}
	}
	t.Fatalf("no logferry_build_info with a version on %s/metrics", metrics)
	return ""
}

func metricsText(t *testing.T, addr string) string {
	t.Helper()
	resp, err := httpc.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// waitExited polls until the container has exited, for at most limit, and
// says what it found: "exited", "running", or "unknown: docker inspect
// hangs" (each inspect is bounded by limit).
func waitExited(d *dockertest.Daemon, id string, limit time.Duration) string {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		out, _, err := d.DockerCtx(ctx, "inspect", "-f", "{{.State.Running}}", id)
		switch {
		case err == nil && strings.TrimSpace(out) == "false":
			return "exited"
		case ctx.Err() != nil && err != nil:
			return "unknown: docker inspect hangs"
		case ctx.Err() != nil:
			return "running"
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

// blockedInPipeWrite says how many threads of process pid wait in the
// kernel's pipe_write: its output pipe is full because nobody drains it.
func blockedInPipeWrite(pid string) string {
	tasks, err := os.ReadDir(filepath.Join("/proc", pid, "task"))
	if err != nil {
		return fmt.Sprintf("unknown (%v)", err)
	}
	n := 0
	for _, task := range tasks {
		b, err := os.ReadFile(filepath.Join("/proc", pid, "task", task.Name(), "wchan"))
		if err == nil && string(b) == "pipe_write" {
			n++
		}
	}
	return fmt.Sprintf("%d of %d", n, len(tasks))
}

// seqCounts reads the container's lines back from Loki and counts each
// loggen sequence number of run id.
func seqCounts(t *testing.T, srv *lokitest.Server, name, id string, since time.Time) map[uint64]int {
	t.Helper()
	counts := map[uint64]int{}
	for _, s := range containerStreams(t, srv, name, since) {
		for _, en := range s.Entries {
			rec, err := loggen.Parse(en.Line)
			if err != nil {
				t.Fatalf("damaged line in Loki: %v", err)
			}
			if rec.ID != id {
				t.Fatalf("line of run %s in the stream of %s (run %s)", rec.ID, name, id)
			}
			counts[rec.Seq]++
		}
	}
	return counts
}

// TestPluginFromRegistry installs the plugin as a user would, by name from a
// registry, and upgrades it with a container running:
//
//   - scripts/plugin-push builds version A and pushes it to a local
//     registry (Debian's docker-registry), leaving no local copy;
//   - `docker plugin install REGISTRY/logferry:A --alias ALIAS
//     --grant-all-permissions LOKI_URL=... METRICS_ADDR=...` installs it; a
//     container's lines reach Loki exactly once;
//   - version B is pushed and, while a container logs, the plugin is
//     upgraded the only way Docker allows: disable -f, upgrade, enable.
//
// What the upgrade keeps, measured here (README, "Upgrade"): every line
// the old plugin had read reaches Loki exactly once (its shutdown sends
// what is pending); containers started after the upgrade ship every line
// once through B. A container still running loses its stream: Docker keeps
// a plugin's FIFOs and STATE_DIR in the plugin's root filesystem, which the
// upgrade replaces, so B finds no record to re-attach (plugin/restore.go)
// and the daemon's end of the FIFO leads nowhere; its later lines reach
// neither Loki nor docker logs until it is restarted, and docker logs of
// containers from before the upgrade is empty. The test prints a RESULT
// line with the figures and fails if the container's lines in Loki are not
// a gap-free, duplicate-free prefix that covers every line read before the
// upgrade.
func TestPluginFromRegistry(t *testing.T) {
	// A daemon of its own: the upgrade leaves a running container's log
	// copier blocked for good and docker inspect of it hanging; stopping
	// the daemon (SIGKILL after 30 s) is what ends that.
	d := dockertest.StartPrivate(t)
	srv := lokitest.Start(t)
	reg := startRegistry(t)
	tag := fmt.Sprintf("%06x", rand.Uint32()&0xffffff)
	versionA, versionB := "0.0.1-lfreg."+tag, "0.0.2-lfreg."+tag

	refA := pushPlugin(t, d, reg, versionA)
	if _, _, err := d.DockerErr("plugin", "inspect", refA); err == nil {
		t.Fatalf("scripts/plugin-push left %s installed", refA)
	}

	alias := "lfreg-" + tag
	metrics := freeAddr(t)
	t.Cleanup(func() {
		// Bounded: the daemon may be wedged (below); it is stopped next.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _, _ = d.DockerCtx(ctx, "plugin", "disable", "-f", alias)
		_, _, _ = d.DockerCtx(ctx, "plugin", "rm", "-f", alias)
	})
	d.Docker(t, "plugin", "install", "--alias", alias, "--grant-all-permissions", refA,
		"LOKI_URL="+srv.PushURL(), "METRICS_ADDR="+metrics)
	if got := runningVersion(t, metrics); got != versionA {
		t.Fatalf("after install the plugin reports version %q, want %q", got, versionA)
	}
	if ref := strings.TrimSpace(d.Docker(t, "plugin", "inspect", "-f", "{{.PluginReference}}", alias)); ref != refA {
		t.Fatalf("docker plugin inspect: PluginReference %q, want %q", ref, refA)
	}
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	e := &pluginEnv{d: d, loki: srv, image: d.EnsureTestImage(t), driver: alias, metrics: metrics, host: host}
	since := time.Now().Add(-time.Minute)

	// runAll runs a container of n lines through the plugin and checks
	// each arrived exactly once.
	runAll := func(t *testing.T, prefix string, n uint64) {
		gen := loggen.Config{ID: runID(prefix), Lines: n, Size: 150, StderrShare: 0.2}
		name := "reg-" + gen.ID
		id := d.Run(t, append([]string{"--name", name, "--log-driver", alias, e.image}, genArgs(gen)...)...)
		e.wait(t, id)
		e.waitDelivered(t)
		e.checkLoki(t, name, gen, since)
	}

	var firstName string
	t.Run("installed by name, every line once", func(t *testing.T) {
		gen := loggen.Config{ID: runID("before"), Lines: 5000, Size: 150, StderrShare: 0.2}
		firstName = "reg-" + gen.ID
		id := d.Run(t, append([]string{"--name", firstName, "--log-driver", alias, e.image}, genArgs(gen)...)...)
		e.wait(t, id)
		e.waitDelivered(t)
		e.checkLoki(t, firstName, gen, since)
	})
	if t.Failed() {
		return
	}

	refB := pushPlugin(t, d, reg, versionB)

	t.Run("upgrade with a container logging", func(t *testing.T) {
		const rate = 300
		gen := loggen.Config{ID: runID("during"), Lines: 9000, Size: 150}
		name := "reg-" + gen.ID
		// Not d.Run: its clean-up would wait for ever on the wedged
		// container (below); stopping the daemon ends it.
		id := strings.TrimSpace(d.Docker(t, append([]string{"run", "-d", "--network", "none", "--label", dockertest.Label,
			"--name", name, "--log-driver", alias, "--log-opt", "loki-batch-wait=200ms", e.image},
			genArgs(gen, "-rate", fmt.Sprint(rate))...)...))
		pid := strings.TrimSpace(d.Docker(t, "inspect", "-f", "{{.State.Pid}}", id))
		read := func() float64 {
			return metricWhere(t, metrics, "logferry_plugin_entries_read_total", fmt.Sprintf("container_name=%q", name))
		}
		waitFor(t, time.Minute, "the container's first 1500 lines", func() bool { return read() >= 1500 })

		readBefore := read()
		began := time.Now()
		d.Docker(t, "plugin", "disable", "-f", alias)
		disabled := time.Now()
		// Upgrade refuses an enabled plugin; --skip-remote-check because
		// the new reference differs from the one installed (the CLI would
		// ask for confirmation otherwise).
		if _, stderr, err := d.DockerErr("plugin", "upgrade", "--grant-all-permissions", "--skip-remote-check", alias, refB); err != nil {
			t.Fatalf("docker plugin upgrade: %v\n%s", err, stderr)
		}
		upgraded := time.Now()
		d.Docker(t, "plugin", "enable", alias)
		enabled := time.Now()
		if got := runningVersion(t, metrics); got != versionB {
			t.Fatalf("after the upgrade the plugin reports version %q, want %q", got, versionB)
		}
		if ref := strings.TrimSpace(d.Docker(t, "plugin", "inspect", "-f", "{{.PluginReference}}", alias)); ref != refB {
			t.Fatalf("docker plugin inspect: PluginReference %q, want %q", ref, refB)
		}
		t.Logf("disable -f %v, upgrade %v, enable %v", disabled.Sub(began).Round(time.Millisecond),
			upgraded.Sub(disabled).Round(time.Millisecond), enabled.Sub(upgraded).Round(time.Millisecond))

		// loggen needs 30 s in all and exits after its last line, unless
		// its writes block.
		state := waitExited(d, id, 45*time.Second)
		blocked := blockedInPipeWrite(pid)
		stopped := "not needed"
		if state != "exited" {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			stopBegan := time.Now()
			_, _, err := d.DockerCtx(ctx, "stop", "-t", "1", id)
			cancel()
			stopped = fmt.Sprintf("returned in %v", time.Since(stopBegan).Round(time.Millisecond))
			if err != nil {
				stopped = fmt.Sprintf("failed or hung (%v)", err)
			}
		}
		t.Logf("45 s after the upgrade the container is %s; threads of its process in pipe_write: %s; docker stop -t 1: %s",
			state, blocked, stopped)

		// A's streams ended with A (its shutdown sent what was pending);
		// B never had one.
		counts := seqCounts(t, srv, name, gen.ID, since)
		var dups, beyond int
		prefix := uint64(0) // the longest 1..prefix all in Loki
		for seq := uint64(1); counts[seq] > 0; seq++ {
			prefix = seq
		}
		for seq, n := range counts {
			dups += n - 1
			if seq > prefix {
				beyond++
			}
		}
		readAfter := read() // by B; 0 if B never saw the container
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		stdout, stderr, err := d.DockerCtx(ctx, "logs", id)
		dockerLogs := fmt.Sprint(strings.Count(stdout, "\n") + strings.Count(stderr, "\n"))
		if err != nil {
			dockerLogs = fmt.Sprintf("failed (%v)", err)
		}
		ctx2, cancel2 := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel2()
		beforeOut, beforeErr, err := d.DockerCtx(ctx2, "logs", firstName)
		beforeLogs := fmt.Sprint(strings.Count(beforeOut, "\n") + strings.Count(beforeErr, "\n"))
		if err != nil {
			beforeLogs = fmt.Sprintf("failed (%v)", err)
		}
		t.Logf("RESULT upgrade %s -> %s with a container writing %d lines/s: %d lines to write, %v read by A before disable, "+
			"%d in Loki (lines 1..%d, %d duplicates, %d past a gap), %d never shipped; read by B: %v; docker logs: %s lines of this container, "+
			"%s of a container that ended before the upgrade (had 5000)",
			versionA, versionB, rate, gen.Lines, readBefore, len(counts), prefix, dups, beyond, int(gen.Lines)-len(counts),
			readAfter, dockerLogs, beforeLogs)
		if dups > 0 || beyond > 0 {
			t.Errorf("the running container's lines in Loki are not a gap-free prefix: %d duplicates, %d past line %d", dups, beyond, prefix)
		}
		if float64(prefix) < readBefore {
			t.Errorf("Loki has lines 1..%d, but A had read %v before it was disabled: its shutdown lost lines it had read", prefix, readBefore)
		}
	})

	t.Run("a container started after the upgrade ships every line once", func(t *testing.T) {
		runAll(t, "after", 5000)
	})
}
