// Package dockertest gives logferry's end-to-end tests a private Docker
// daemon (scripts/dockerd), the FROM scratch log generator image
// (scripts/test-image) and the managed plugin (scripts/plugin), all driven
// through the docker CLI. Only tests import it.
//
// One daemon serves a whole test process: the first Start starts it, later
// calls share it, and TestMain stops it after the tests with Shutdown:
//
//	func TestMain(m *testing.M) {
//		goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
//			dockertest.Shutdown()
//			os.Exit(code)
//		}))
//	}
//
// (without goleak: code := m.Run(); dockertest.Shutdown(); os.Exit(code)).
// If the process dies before Shutdown (a -timeout panic, a kill), a watcher
// that scripts/dockerd started stops the daemon and removes its directory
// within a second or two.
//
// The daemon has no networking of its own: Run starts every container with
// --network none. Containers started by Run carry the label logferry-test=1
// and are removed when the test ends; Cleanup removes every such container.
package dockertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/logferry/logferry/internal/repo"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

const (
	// LabelKey and Label mark the containers tests start, so Cleanup finds
	// them. Not "logferry.": the sidecar reads logferry.<option> labels as
	// per-container options and refuses unknown ones.
	LabelKey = "logferry-test"
	Label    = LabelKey + "=1"

	// maxBaseDir bounds the directory the daemon's directory is made in:
	// scripts/dockerd refuses directories whose unix socket paths would be
	// too long (see its header).
	maxBaseDir = 40
	logTail    = 40
)

// Daemon is the private dockerd of this test process. Its methods are safe
// for concurrent use by parallel tests.
type Daemon struct {
	root  string   // repository root
	dir   string   // scripts/dockerd's DIR: data-root DIR/data, log DIR/dockerd.log
	host  string   // DOCKER_HOST value
	flags []string // extra dockerd flags (StartPrivate)

	imageMu sync.Mutex
	image   string // set once scripts/test-image succeeded

	pluginMu sync.Mutex // scripts/plugin assembles one rootfs under dir at a time
}

var shared struct {
	mu     sync.Mutex
	daemon *Daemon
	err    error // why the first start failed; later Starts fail the same way
}

// Start returns the test process's daemon, starting it on first use. With
// -short it skips the test. It fails the test, saying what to do, when the
// daemon cannot run here: not root, dockerd not installed, or the daemon did
// not come up (its log's end is in the message). A failed start is not
// retried by later tests of the same process.
func Start(t testing.TB) *Daemon {
	t.Helper()
	if testing.Short() {
		t.Skip("dockertest: -short skips tests that need a Docker daemon")
	}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.daemon != nil {
		return shared.daemon
	}
	if shared.err == nil {
		shared.daemon, shared.err = start()
	}
	if shared.err != nil {
		t.Fatalf("dockertest: %v", shared.err)
	}
	return shared.daemon
}

// Shutdown stops the daemon Start started, if any, and removes its
// directory. TestMain calls it after m.Run; problems are printed to stderr.
func Shutdown() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	d := shared.daemon
	shared.daemon, shared.err = nil, nil
	if d == nil {
		return
	}
	if out, err := exec.Command(d.script("dockerd"), "stop", d.dir, "--rm").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "dockertest: stopping dockerd in %s: %v\n%s", d.dir, err, out)
	}
}

func start(flags ...string) (*Daemon, error) {
	if uid := os.Geteuid(); uid != 0 {
		return nil, fmt.Errorf("dockerd needs root and this test runs as uid %d; run the end-to-end tests as root, or skip them with go test -short", uid)
	}
	if !haveDockerd() {
		return nil, errors.New("dockerd is not installed; install Debian's docker.io as root with scripts/dockerd ensure (apt-get update && apt-get install -y docker.io), or skip these tests with go test -short")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		return nil, fmt.Errorf("the docker CLI is not on PATH (%w); install Debian's docker.io (scripts/dockerd ensure), or skip these tests with go test -short", err)
	}
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	base := os.TempDir()
	if len(base) > maxBaseDir {
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, "lf-dockerd-")
	if err != nil {
		return nil, fmt.Errorf("making the daemon's directory: %w", err)
	}
	d := &Daemon{root: root, dir: dir, host: "unix://" + filepath.Join(dir, "docker.sock"), flags: flags}
	if err := d.launch(); err != nil {
		// The script has stopped what it started; make sure, and remove the
		// directory.
		_ = exec.Command(d.script("dockerd"), "stop", dir, "--rm").Run()
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return d, nil
}

// launch runs scripts/dockerd start on d's directory with d's flags.
func (d *Daemon) launch() error {
	cmd := exec.Command(d.script("dockerd"), append([]string{"start", d.dir}, d.flags...)...)
	cmd.Env = append(os.Environ(),
		"DOCKERD_OWNER_PID="+strconv.Itoa(os.Getpid()),
		"DOCKERD_OWNER_RM=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("scripts/dockerd start %s: %w\n%s", d.dir, err, stderr.String())
	}
	if got := strings.TrimSpace(stdout.String()); got != d.host {
		return fmt.Errorf("scripts/dockerd start %s printed %q, want %q", d.dir, got, d.host)
	}
	return nil
}

// StartPrivate starts a daemon for t alone (not the process's shared one),
// with extra dockerd flags (e.g. --live-restore), for tests that restart or
// otherwise disturb it. It is stopped and its directory removed when t
// ends. With -short it skips the test.
func StartPrivate(t testing.TB, flags ...string) *Daemon {
	t.Helper()
	if testing.Short() {
		t.Skip("dockertest: -short skips tests that need a Docker daemon")
	}
	d, err := start(flags...)
	if err != nil {
		t.Fatalf("dockertest: %v", err)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(d.script("dockerd"), "stop", d.dir, "--rm").CombinedOutput(); err != nil {
			t.Errorf("dockertest: stopping dockerd in %s: %v\n%s", d.dir, err, out)
		}
	})
	return d
}

// Restart stops the daemon (SIGTERM) and starts it again from the same
// directory with the same flags, leaving the containers' shims alone: with
// --live-restore the containers run on meanwhile. Only for a daemon of
// StartPrivate: the shared one belongs to every test.
func (d *Daemon) Restart(t testing.TB) {
	t.Helper()
	if out, err := exec.Command(d.script("dockerd"), "stop", d.dir, "--keep-containers").CombinedOutput(); err != nil {
		t.Fatalf("dockertest: stopping dockerd in %s: %v\n%s", d.dir, err, out)
	}
	if err := d.launch(); err != nil {
		t.Fatalf("dockertest: restarting: %v\nthe end of the daemon's log:\n%s", err, d.LogTail(logTail))
	}
}

func haveDockerd() bool {
	if _, err := exec.LookPath("dockerd"); err == nil {
		return true
	}
	st, err := os.Stat("/usr/sbin/dockerd")
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// Host returns the daemon's DOCKER_HOST value, unix://<dir>/docker.sock.
func (d *Daemon) Host() string { return d.host }

// Dir returns the daemon's directory: data-root Dir()/data, exec-root
// Dir()/exec, log Dir()/dockerd.log.
func (d *Daemon) Dir() string { return d.dir }

// LogTail returns the last n lines of the daemon's log, which also holds
// the output of managed plugins (their stderr at level=error).
func (d *Daemon) LogTail(n int) string {
	b, err := os.ReadFile(filepath.Join(d.dir, "dockerd.log"))
	if err != nil {
		return fmt.Sprintf("(reading the daemon's log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Docker runs the docker CLI against the daemon and returns its standard
// output as it is (trim it for ids). It fails the test with the command's
// standard error if the command fails.
func (d *Daemon) Docker(t testing.TB, args ...string) string {
	t.Helper()
	stdout, stderr, err := d.DockerErr(args...)
	if err != nil {
		t.Fatalf("dockertest: %v\n%s", err, stderr)
	}
	return stdout
}

// DockerErr runs the docker CLI against the daemon and returns its output;
// err is non-nil if the command failed.
func (d *Daemon) DockerErr(args ...string) (stdout, stderr string, err error) {
	return d.DockerCtx(context.Background(), args...)
}

// DockerCtx is DockerErr that kills the command when ctx is done, for a
// command that may hang (docker stop with a slow logging plugin).
func (d *Daemon) DockerCtx(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = d.env()
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), errOut.String(), fmt.Errorf("docker %s: %w", strings.Join(args, " "), err)
	}
	return out.String(), errOut.String(), nil
}

// env is this process's environment pointed at the daemon: settings that
// would send the CLI elsewhere are dropped.
func (d *Daemon) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_TLS":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "DOCKER_HOST="+d.host, "DOCKER_CLI_HINTS=false")
}

// Run starts a detached container (docker run -d) with --network none and
// the label logferry-test=1 in front of args, and returns its id. The
// container is removed (with its anonymous volumes) when the test ends.
func (d *Daemon) Run(t testing.TB, args ...string) string {
	t.Helper()
	full := append([]string{"run", "-d", "--network", "none", "--label", Label}, args...)
	id := strings.TrimSpace(d.Docker(t, full...))
	if id == "" {
		t.Fatalf("dockertest: docker %s printed no container id", strings.Join(full, " "))
	}
	t.Cleanup(func() { d.remove(t, id) })
	return id
}

// remove force-removes containers; one that is already gone is no error.
func (d *Daemon) remove(t testing.TB, ids ...string) {
	t.Helper()
	if len(ids) == 0 {
		return
	}
	_, stderr, err := d.DockerErr(append([]string{"rm", "-f", "-v"}, ids...)...)
	if err == nil {
		return
	}
	for _, id := range ids {
		if _, _, inspectErr := d.DockerErr("container", "inspect", id); inspectErr == nil {
			t.Errorf("dockertest: could not remove container %s: %v\n%s", id, err, stderr)
		}
	}
}

// Cleanup removes every container, running or not, that has the label
// logferry-test=1.
func (d *Daemon) Cleanup(t testing.TB) {
	t.Helper()
	ids := strings.Fields(d.Docker(t, "ps", "-a", "-q", "--filter", "label="+Label))
	d.remove(t, ids...)
}

// EnsureTestImage builds the log generator image with scripts/test-image
// unless this process already did (the script itself skips an up-to-date
// image) and returns its name, logferry-loggen:test. Its entrypoint is
// scripts/loggen: pass loggen's flags after the image name.
func (d *Daemon) EnsureTestImage(t testing.TB) string {
	t.Helper()
	d.imageMu.Lock()
	defer d.imageMu.Unlock()
	if d.image != "" {
		return d.image
	}
	out := d.runScript(t, "test-image", nil)
	d.image = strings.TrimSpace(out)
	if d.image == "" {
		t.Fatalf("dockertest: scripts/test-image printed no image name")
	}
	return d.image
}

// InstallPlugin builds the plugin from ./cmd/logferry-plugin with
// scripts/plugin and installs it as name (replacing an installed copy),
// applies settings (KEY=VALUE of config.json's settable env), enables it,
// and returns the name the daemon reports (name:latest). The plugin is
// removed when the test ends, after the containers the test started later.
// With PLUGIN_BIN set in the environment that binary is used instead.
//
// The plugin shares the host's network: give it METRICS_ADDR=off or a free
// port when another plugin may hold the default 127.0.0.1:9375.
func (d *Daemon) InstallPlugin(t testing.TB, name string, settings ...string) string {
	t.Helper()
	d.pluginMu.Lock()
	defer d.pluginMu.Unlock()
	env := []string{"PLUGIN=" + name, "PLUGIN_SET=", "ROOTFS=" + filepath.Join(d.dir, "rootfs")}
	out := d.runScript(t, "plugin", env, settings...)
	t.Cleanup(func() {
		_, _, _ = d.DockerErr("plugin", "disable", "-f", name)
		if _, stderr, err := d.DockerErr("plugin", "rm", "-f", name); err != nil {
			if _, _, inspectErr := d.DockerErr("plugin", "inspect", name); inspectErr == nil {
				t.Errorf("dockertest: could not remove plugin %s: %v\n%s", name, err, stderr)
			}
		}
	})
	return strings.TrimSpace(out)
}

// runScript runs scripts/<name> against the daemon and returns its standard
// output; it fails the test with the script's standard error and the end of
// the daemon's log.
func (d *Daemon) runScript(t testing.TB, name string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(d.script(name), args...)
	cmd.Dir = d.root
	cmd.Env = append(d.env(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("dockertest: scripts/%s %s: %v\n%s\nthe end of the daemon's log (%s):\n%s",
			name, strings.Join(args, " "), err, stderr.String(), filepath.Join(d.dir, "dockerd.log"), d.LogTail(logTail))
	}
	return stdout.String()
}

func (d *Daemon) script(name string) string {
	return filepath.Join(d.root, "scripts", name)
}

func repoRoot() (string, error) { return repo.Root("scripts/dockerd") }
