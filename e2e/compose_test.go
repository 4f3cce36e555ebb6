package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/logferry/logferry/internal/dockertest"
	"github.com/logferry/logferry/internal/loggen"
	"github.com/logferry/logferry/internal/lokitest"
	"github.com/logferry/logferry/internal/repo"
)

// What deploy/compose.yaml holds and SECURITY.md speaks of.
const (
	composePath    = "deploy/compose.yaml"
	composeLoki    = "loki"             // Loki's service
	composeSidecar = "logferry-sidecar" // the sidecar's service
	composeState   = "logferry-state"   // the sidecar's named volume: its positions

	hostContainersDir = "/var/lib/docker/containers" // json-file logs (SECURITY.md, "Host files")
	hostDockerSocket  = "/var/run/docker.sock"       // the Engine API (SECURITY.md, "The Engine API socket")
	sidecarStateDir   = "/var/lib/logferry-sidecar"  // the image's state directory
)

// composeMount is one entry of a service's volumes, in the short
// ("SOURCE:TARGET:MODE") or the long (mapping) syntax.
type composeMount struct {
	Source   string // a host path, or a named volume's name
	Target   string
	ReadOnly bool
	Named    bool // a named volume, not a host path
}

func (m composeMount) String() string {
	kind, mode := "bind", "rw"
	if m.Named {
		kind = "volume"
	}
	if m.ReadOnly {
		mode = "ro"
	}
	return fmt.Sprintf("%s %s:%s:%s", kind, m.Source, m.Target, mode)
}

// parseMount reads one volumes entry.
func parseMount(v any) (composeMount, error) {
	switch v := v.(type) {
	case string:
		parts := strings.Split(v, ":")
		var m composeMount
		switch len(parts) {
		case 1: // an anonymous volume
			m = composeMount{Target: parts[0], Named: true}
		case 2, 3:
			m = composeMount{Source: parts[0], Target: parts[1]}
			m.Named = !strings.HasPrefix(m.Source, "/") && !strings.HasPrefix(m.Source, ".") && !strings.HasPrefix(m.Source, "~")
			if len(parts) == 3 {
				m.ReadOnly = slices.Contains(strings.Split(parts[2], ","), "ro")
			}
		default:
			return composeMount{}, fmt.Errorf("volume %q: want SOURCE:TARGET[:MODE]", v)
		}
		return m, nil
	case map[string]any:
		m := composeMount{Named: v["type"] == "volume"}
		m.Source, _ = v["source"].(string)
		m.Target, _ = v["target"].(string)
		m.ReadOnly, _ = v["read_only"].(bool)
		if t := v["type"]; t != "volume" && t != "bind" {
			return composeMount{}, fmt.Errorf("volume %v: type %v, want bind or volume", v, t)
		}
		return m, nil
	}
	return composeMount{}, fmt.Errorf("volume %v: neither a string nor a mapping", v)
}

// loadCompose reads deploy/compose.yaml; it returns the repository root
// and the file as YAML data.
func loadCompose(t *testing.T) (string, map[string]any) {
	t.Helper()
	root, err := repo.Root(composePath)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, composePath))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", composePath, err)
	}
	return root, doc
}

// composeService returns a service's definition from doc.
func composeService(t *testing.T, doc map[string]any, name string) map[string]any {
	t.Helper()
	services, _ := doc["services"].(map[string]any)
	svc, ok := services[name].(map[string]any)
	if !ok {
		t.Fatalf("%s has no service %s", composePath, name)
	}
	return svc
}

// composeString returns a service's string setting, e.g. its image.
func composeString(t *testing.T, svc map[string]any, key string) string {
	t.Helper()
	s, ok := svc[key].(string)
	if !ok || s == "" {
		t.Fatalf("%s: a service has no %s (%v)", composePath, key, svc[key])
	}
	return s
}

// composeList returns a service's list setting ([] when it is absent).
func composeList(t *testing.T, svc map[string]any, key string) []any {
	t.Helper()
	switch v := svc[key].(type) {
	case nil:
		return nil
	case []any:
		return v
	default:
		t.Fatalf("%s: %s is %T, want a list", composePath, key, v)
		return nil
	}
}

// sidecarWidening are the service settings that would give the sidecar
// more than SECURITY.md allows, and what each would give.
var sidecarWidening = map[string]string{
	"devices":             "host devices",
	"device_cgroup_rules": "access to host devices",
	"volumes_from":        "another container's mounts",
	"pid":                 "the host's (or another container's) processes",
	"ipc":                 "the host's (or another container's) IPC",
	"network_mode":        "the host's network",
	"userns_mode":         "the host's user namespace",
	"cgroup":              "the host's cgroup namespace",
	"security_opt":        "a relaxed seccomp, AppArmor or SELinux profile",
	"secrets":             "host files mounted under /run/secrets",
	"configs":             "host files mounted into the container",
}

// sidecarSecurityViolations says where the sidecar's service in doc (a
// compose file) gives it more than SECURITY.md allows: it may mount the
// containers directory and the Docker socket, both read-only, and its state
// volume, nothing else; add no capability but SYS_ADMIN (fanotify) and take
// no other privilege; publish its port on the host's 127.0.0.1 only.
func sidecarSecurityViolations(doc map[string]any) []string {
	services, _ := doc["services"].(map[string]any)
	svc, ok := services[composeSidecar].(map[string]any)
	if !ok {
		return []string{"no service " + composeSidecar}
	}
	var bad []string
	list := func(key string) []any {
		l, ok := svc[key].([]any)
		if !ok && svc[key] != nil {
			bad = append(bad, fmt.Sprintf("%s is %T, want a list", key, svc[key]))
		}
		return l
	}

	var got []composeMount
	for _, v := range list("volumes") {
		m, err := parseMount(v)
		if err != nil {
			bad = append(bad, err.Error())
			continue
		}
		got = append(got, m)
	}
	want := []composeMount{
		{Source: hostContainersDir, Target: hostContainersDir, ReadOnly: true},
		{Source: hostDockerSocket, Target: hostDockerSocket, ReadOnly: true},
		{Source: composeState, Target: sidecarStateDir, Named: true},
	}
	byTarget := func(a, b composeMount) int { return strings.Compare(a.Target, b.Target) }
	slices.SortFunc(got, byTarget)
	slices.SortFunc(want, byTarget)
	if !slices.Equal(got, want) {
		bad = append(bad, fmt.Sprintf("it mounts %v; SECURITY.md allows exactly %v", got, want))
	}
	// A named volume can be a host directory in disguise (driver_opts
	// type=none, o=bind, device=/anywhere): the state volume must be a
	// plain one.
	volumes, _ := doc["volumes"].(map[string]any)
	if def, ok := volumes[composeState]; !ok {
		bad = append(bad, fmt.Sprintf("the volume %s is not declared", composeState))
	} else if def != nil {
		bad = append(bad, fmt.Sprintf("the volume %s is declared with settings %v; a plain volume is all the sidecar may have", composeState, def))
	}

	for _, c := range list("cap_add") {
		name, _ := c.(string)
		if strings.TrimPrefix(strings.ToUpper(name), "CAP_") != "SYS_ADMIN" {
			bad = append(bad, fmt.Sprintf("it adds the capability %v; SECURITY.md allows only SYS_ADMIN (fanotify)", c))
		}
	}
	if p, ok := svc["privileged"]; ok && p != false {
		bad = append(bad, fmt.Sprintf("privileged: %v: every capability and every host device", p))
	}
	for _, key := range slices.Sorted(maps.Keys(sidecarWidening)) {
		if v, ok := svc[key]; ok {
			bad = append(bad, fmt.Sprintf("%s: %v gives it %s", key, v, sidecarWidening[key]))
		}
	}

	for _, p := range list("ports") {
		var hostIP string
		switch p := p.(type) {
		case string:
			if parts := strings.Split(p, ":"); len(parts) == 3 {
				hostIP = parts[0]
			}
		case map[string]any:
			hostIP, _ = p["host_ip"].(string)
		}
		if hostIP != "127.0.0.1" {
			bad = append(bad, fmt.Sprintf("it publishes %v on %q; SECURITY.md: on the host's 127.0.0.1 only", p, hostIP))
		}
	}
	return bad
}

// TestComposeSidecarMountsOnlyWhatSecurityAllows holds deploy/compose.yaml
// to SECURITY.md (sidecarSecurityViolations), and shows that the check
// sees each kind of drift. It reads files only, so it runs under -short
// too.
func TestComposeSidecarMountsOnlyWhatSecurityAllows(t *testing.T) {
	_, doc := loadCompose(t)
	for _, v := range sidecarSecurityViolations(doc) {
		t.Errorf("%s: %s: %s", composePath, composeSidecar, v)
	}

	drifts := []struct {
		name   string
		change func(svc, volumes map[string]any)
	}{
		{"another host directory", func(svc, _ map[string]any) {
			svc["volumes"] = append(svc["volumes"].([]any), "/etc:/host-etc:ro")
		}},
		{"the socket writable", func(svc, _ map[string]any) {
			svc["volumes"] = replaceMount(svc["volumes"].([]any), hostDockerSocket, hostDockerSocket+":"+hostDockerSocket)
		}},
		{"the containers directory writable (long syntax)", func(svc, _ map[string]any) {
			svc["volumes"] = replaceMount(svc["volumes"].([]any), hostContainersDir,
				map[string]any{"type": "bind", "source": hostContainersDir, "target": hostContainersDir})
		}},
		{"the state volume a bind mount in disguise", func(_, volumes map[string]any) {
			volumes[composeState] = map[string]any{"driver_opts": map[string]any{"type": "none", "o": "bind", "device": "/"}}
		}},
		{"another capability", func(svc, _ map[string]any) { svc["cap_add"] = []any{"SYS_ADMIN", "NET_ADMIN"} }},
		{"privileged", func(svc, _ map[string]any) { svc["privileged"] = true }},
		{"the host's PID namespace", func(svc, _ map[string]any) { svc["pid"] = "host" }},
		{"seccomp off", func(svc, _ map[string]any) { svc["security_opt"] = []any{"seccomp=unconfined"} }},
		{"metrics on every address", func(svc, _ map[string]any) { svc["ports"] = []any{"9376:9376"} }},
	}
	for _, drift := range drifts {
		t.Run(drift.name, func(t *testing.T) {
			_, doc := loadCompose(t)
			drift.change(composeService(t, doc, composeSidecar), doc["volumes"].(map[string]any))
			if len(sidecarSecurityViolations(doc)) == 0 {
				t.Errorf("the check passes a sidecar service with %s", drift.name)
			}
		})
	}
}

// replaceMount returns volumes with the entry whose source is source
// replaced by with.
func replaceMount(volumes []any, source string, with any) []any {
	out := slices.Clone(volumes)
	for i, v := range out {
		if m, err := parseMount(v); err == nil && m.Source == source {
			out[i] = with
		}
	}
	return out
}

// composeTestEnv is where the services of deploy/compose.yaml run in the
// test: on the host's network (the private dockerd has no bridge), on free
// loopback ports, against the private dockerd.
type composeTestEnv struct {
	lokiHTTP      string // Loki's HTTP address, 127.0.0.1:port
	lokiGRPC      string // Loki's gRPC address, 127.0.0.1:port
	sidecarListen string // the sidecar's /metrics and /ready
	containersDir string // the private dockerd's containers directory
	dockerSocket  string // the private dockerd's API socket
}

// composeForTest returns deploy/compose.yaml (doc) changed only where the
// test's environment needs it.
//
// It is a whole file, not an override file (-f compose.yaml -f
// override.yaml), because docker-compose 1.29 cannot remove with an
// override what the test must remove: it merges ports as a union (`ports:
// []` leaves them as they are) and volumes by their target, so the host's
// /var/lib/docker/containers would stay mounted next to the private
// dockerd's, which the sidecar must see at its own path.
//
// The changes:
//   - both services: network_mode host instead of ports (the private dockerd
//     runs with --bridge=none);
//   - Loki: the file's command, then flags that put its HTTP and gRPC
//     servers on free 127.0.0.1 ports (the image's configuration listens on
//     :3100 of the container's own network);
//   - the sidecar: LOGFERRY_LOKI_URL to that Loki; the Docker socket mount's
//     source is the private dockerd's socket (still read-only); the
//     containers directory mount is the private dockerd's, read-only, at
//     the same path as on the host with LOGFERRY_CONTAINERS_DIR set to it
//     (the sidecar refuses a LogPath outside its containers directory);
//     the command is --listen on a free 127.0.0.1 port: the image's CMD
//     sets --listen 0.0.0.0:9376, and a flag wins over LOGFERRY_LISTEN, so
//     only a command keeps it off the host's other addresses.
func composeForTest(t *testing.T, doc map[string]any, env composeTestEnv) []byte {
	t.Helper()
	for _, name := range []string{composeLoki, composeSidecar} {
		svc := composeService(t, doc, name)
		delete(svc, "ports")
		svc["network_mode"] = "host"
	}

	loki := composeService(t, doc, composeLoki)
	_, grpcPort, _ := strings.Cut(env.lokiGRPC, ":")
	_, httpPort, _ := strings.Cut(env.lokiHTTP, ":")
	loki["command"] = append(composeList(t, loki, "command"),
		"-server.http-listen-address=127.0.0.1", "-server.http-listen-port="+httpPort,
		"-server.grpc-listen-address=127.0.0.1", "-server.grpc-listen-port="+grpcPort,
		// The image's configuration points the query frontend and the
		// querier at the scheduler on its gRPC port.
		"-frontend.scheduler-address="+env.lokiGRPC, "-querier.scheduler-address="+env.lokiGRPC)

	sidecar := composeService(t, doc, composeSidecar)
	environment, ok := sidecar["environment"].(map[string]any)
	if !ok {
		t.Fatalf("%s: %s's environment is %T, want a mapping", composePath, composeSidecar, sidecar["environment"])
	}
	environment["LOGFERRY_LOKI_URL"] = "http://" + env.lokiHTTP + lokitest.PushPath
	environment["LOGFERRY_CONTAINERS_DIR"] = env.containersDir
	sidecar["command"] = []any{"--listen", env.sidecarListen}
	var volumes []any
	for _, v := range composeList(t, sidecar, "volumes") {
		m, err := parseMount(v)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case m.Named:
		case m.Source == hostContainersDir:
			m.Source, m.Target = env.containersDir, env.containersDir
		case m.Source == hostDockerSocket:
			m.Source = env.dockerSocket
		default:
			t.Fatalf("%s: %s mounts %s, which the test does not know where to find", composePath, composeSidecar, m)
		}
		mode := "rw"
		if m.ReadOnly {
			mode = "ro"
		}
		volumes = append(volumes, m.Source+":"+m.Target+":"+mode)
	}
	sidecar["volumes"] = volumes

	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// buildSidecarImage does what `make sidecar-image` does (the static binary,
// the host's CA bundle and the repository's Dockerfile) in a directory of
// the test's own rather than the repository's bin/, which other builds
// share, and builds the image in d as image.
func buildSidecarImage(t *testing.T, d *dockertest.Daemon, root, image string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-trimpath", "-ldflags", os.Getenv("LF_LDFLAGS"),
		"-o", filepath.Join(dir, "bin", "logferry-sidecar"), "./cmd/logferry-sidecar")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/logferry-sidecar: %v\n%s", err, out)
	}
	for src, dst := range map[string]string{
		"/etc/ssl/certs/ca-certificates.crt": filepath.Join(dir, "bin", "ca-certificates.crt"),
		filepath.Join(root, "Dockerfile"):    filepath.Join(dir, "Dockerfile"),
	} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatalf("the sidecar image needs %s: %v", src, err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	runIn(t, d, []string{"DOCKER_BUILDKIT=0"}, "docker", "build", "-q", "-t", image, dir)
}

// composeProject runs docker-compose for one project against d.
type composeProject struct {
	d    *dockertest.Daemon
	bin  string // docker-compose
	name string // -p
	file string // -f
}

// composeTimeout bounds one docker-compose command.
const composeTimeout = 3 * time.Minute

// run runs docker-compose with args and returns its standard output; its
// progress (standard error) goes into the error only.
func (p *composeProject) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), composeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.bin, append([]string{"--ansi", "never", "-p", p.name, "-f", p.file}, args...)...)
	cmd.Dir = filepath.Dir(p.file)
	cmd.Env = dockerEnv(p.d)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("docker-compose %s: %w\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// logs returns the compose file and the end of every service's output,
// for a failure message.
func (p *composeProject) logs() string {
	file, err := os.ReadFile(p.file)
	if err != nil {
		file = []byte(err.Error())
	}
	out, err := p.run("logs", "--no-color", "--tail", "30")
	if err != nil {
		out = err.Error()
	}
	return fmt.Sprintf("%s:\n%s\nthe services' output:\n%s", p.file, file, out)
}

// poll waits until cond holds, at most limit; it reports whether it did.
func poll(limit time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			return cond()
		case <-tick.C:
		}
	}
	return true
}

// TestComposeSidecarAndLoki brings deploy/compose.yaml up as an operator
// would, with Debian's docker-compose (1.29), in a private dockerd of its
// own: Loki's image is built from the cached Loki binary (scripts/loki-image)
// under the name the file uses, the sidecar's image as `make sidecar-image`
// builds it. The file is changed only where the private dockerd needs it
// (composeForTest). A json-file container's lines must each reach Loki
// exactly once, read from the mounted containers directory (no file
// refused, none read through the logs API) with fanotify working under the
// file's SYS_ADMIN; `docker-compose down -v` must leave no container or
// volume of the project.
func TestComposeSidecarAndLoki(t *testing.T) {
	d := dockertest.StartPrivate(t) // skips under -short
	lokiBin := lokitest.BinaryPath(t)
	composeBin := debianTool(t, "docker-compose", "docker-compose")
	root, doc := loadCompose(t)
	lokiImage := composeString(t, composeService(t, doc, composeLoki), "image")
	sidecarImage := composeString(t, composeService(t, doc, composeSidecar), "image")

	// The private dockerd has no network to pull from: both images are
	// built in it, under the names the file uses.
	began := time.Now()
	if got := strings.TrimSpace(runIn(t, d, []string{"IMAGE=" + lokiImage, "LOKI_BIN=" + lokiBin}, "scripts/loki-image")); got != lokiImage {
		t.Fatalf("scripts/loki-image printed %q, want %q", got, lokiImage)
	}
	buildSidecarImage(t, d, root, sidecarImage)
	testImage := d.EnsureTestImage(t)
	t.Logf("images %s, %s and %s built in %v", lokiImage, sidecarImage, testImage, time.Since(began).Round(time.Millisecond))

	env := composeTestEnv{
		lokiHTTP:      freeAddr(t),
		lokiGRPC:      freeAddr(t),
		sidecarListen: freeAddr(t),
		containersDir: filepath.Join(d.Dir(), "data", "containers"),
		dockerSocket:  strings.TrimPrefix(d.Host(), "unix://"),
	}
	p := &composeProject{d: d, bin: composeBin,
		name: fmt.Sprintf("cmp-%06x", rand.Uint32()&0xffffff), file: filepath.Join(t.TempDir(), "compose.yaml")}
	if err := os.WriteFile(p.file, composeForTest(t, doc, env), 0o644); err != nil {
		t.Fatal(err)
	}
	down := false
	t.Cleanup(func() {
		if !down {
			if _, err := p.run("down", "-v"); err != nil {
				t.Error(err)
			}
		}
	})
	began = time.Now()
	if _, err := p.run("up", "-d"); err != nil {
		t.Fatalf("%v\nthe end of the daemon's log:\n%s", err, d.LogTail(20))
	}
	if !poll(60*time.Second, func() bool { return ready(env.lokiHTTP) }) {
		t.Fatalf("Loki (%s) is not ready on %s after 60s:\n%s", lokiImage, env.lokiHTTP, p.logs())
	}
	if !poll(60*time.Second, func() bool { return ready(env.sidecarListen) }) {
		t.Fatalf("the sidecar is not ready on %s after 60s:\n%s", env.sidecarListen, p.logs())
	}
	t.Logf("docker-compose -p %s up -d: Loki and the sidecar ready in %v", p.name, time.Since(began).Round(time.Millisecond))

	gen := loggen.Config{ID: runID("compose"), Lines: 20000, Size: 150, StderrShare: 0.2}
	name := "cmp-" + gen.ID
	since := time.Now().Add(-time.Minute)
	id := d.Run(t, append([]string{"--name", name, "--log-driver", "json-file", testImage}, genArgs(gen)...)...)
	if code := strings.TrimSpace(d.Docker(t, "wait", id)); code != "0" {
		t.Fatalf("the container exited with %s; its logs:\n%s", code, d.Docker(t, "logs", "--tail", "5", id))
	}
	began = time.Now()
	client := lokitest.NewClient("http://" + env.lokiHTTP)
	query := fmt.Sprintf(`{container_name=%q}`, name)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := client.WaitForCount(ctx, query, since, time.Now().Add(10*time.Minute), int(gen.Lines)); err != nil {
		t.Fatalf("%v\n%s", err, p.logs())
	}
	// Whatever the sidecar still holds would arrive after the count was
	// reached: wait until it holds nothing, then read everything back.
	if !poll(30*time.Second, func() bool {
		queued := metricSamples(t, env.sidecarListen, "logferry_loki_queue_entries", "")
		return len(queued) > 0 && !slices.ContainsFunc(queued, func(v float64) bool { return v != 0 })
	}) {
		t.Fatalf("the sidecar's logferry_loki_queue_entries is missing or not 0 30s after Loki had every line")
	}
	streams, err := client.QueryAll(ctx, query, since, time.Now().Add(10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d lines of %s in Loki %v after it exited", lokitest.Count(streams), name, time.Since(began).Round(time.Millisecond))
	host := strings.TrimSpace(d.Docker(t, "info", "-f", "{{.Name}}"))
	checkOnce(t, streams, gen, name, host)

	metric := func(name, match string) float64 { return metricWhere(t, env.sidecarListen, name, match) }
	if n := metric("logferry_sidecar_files_refused_total", ""); n != 0 {
		t.Errorf("the sidecar refused %v log files: the containers directory is not mounted where the Engine says the logs are", n)
	}
	if n := metric("logferry_sidecar_containers", `route="api"`); n != 0 {
		t.Errorf("the sidecar reads %v containers through the logs API, not from the mounted containers directory", n)
	}
	if n := metric("logferry_loki_entries_dropped_total", ""); n != 0 {
		t.Errorf("the sidecar dropped %v entries", n)
	}
	if n := metric("logferry_sidecar_tail_fanotify", ""); n != 1 {
		t.Errorf("logferry_sidecar_tail_fanotify is %v: fanotify does not work with the file's cap_add SYS_ADMIN", n)
	}

	// restart: unless-stopped would hide a sidecar that crashed and came
	// back.
	sidecarID, err := p.run("ps", "-q", composeSidecar)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.TrimSpace(d.Docker(t, "inspect", "-f", "{{.RestartCount}}", strings.TrimSpace(sidecarID))); n != "0" {
		t.Errorf("the sidecar's container restarted %s times:\n%s", n, p.logs())
	}

	down = true
	if _, err := p.run("down", "-v"); err != nil {
		t.Fatal(err)
	}
	project := "label=com.docker.compose.project=" + p.name
	if left := strings.Fields(d.Docker(t, "ps", "-a", "-q", "--filter", project)); len(left) > 0 {
		t.Errorf("docker-compose down -v left the containers %v", left)
	}
	if left := strings.Fields(d.Docker(t, "volume", "ls", "-q", "--filter", project)); len(left) > 0 {
		t.Errorf("docker-compose down -v left the volumes %v", left)
	}
}

// checkOnce checks that streams hold every line of gen exactly once, each
// on the stream the generator wrote it to, with the sidecar's default
// labels.
func checkOnce(t *testing.T, streams []lokitest.Stream, gen loggen.Config, name, host string) {
	t.Helper()
	counts := make([]int, gen.Lines+1)
	var errs []error
	for _, s := range streams {
		source := s.Labels["source"]
		want := map[string]string{"container_name": name, "host": host, "source": source}
		if got, want := lokitest.LabelString(s.Labels), lokitest.LabelString(want); got != want {
			errs = append(errs, fmt.Errorf("labels %s, want %s", got, want))
		}
		for _, en := range s.Entries {
			rec, err := loggen.Parse(en.Line)
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("%s: damaged line: %w", source, err))
			case rec.ID != gen.ID || rec.Seq < 1 || rec.Seq > gen.Lines:
				errs = append(errs, fmt.Errorf("%s: line %d of run %s is no line of run %s", source, rec.Seq, rec.ID, gen.ID))
			case rec.Stream != source || gen.Stream(rec.Seq) != source:
				errs = append(errs, fmt.Errorf("line %d, written to %s, is on %s", rec.Seq, gen.Stream(rec.Seq), source))
			default:
				counts[rec.Seq]++
			}
			if len(errs) > 10 {
				t.Fatal(errors.Join(errs...))
			}
		}
	}
	missing, dups := 0, 0
	for seq := uint64(1); seq <= gen.Lines; seq++ {
		switch {
		case counts[seq] == 0:
			missing++
		case counts[seq] > 1:
			dups += counts[seq] - 1
		}
	}
	if missing > 0 || dups > 0 {
		errs = append(errs, fmt.Errorf("of %d lines, %d are missing from Loki and %d duplicated", gen.Lines, missing, dups))
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}
