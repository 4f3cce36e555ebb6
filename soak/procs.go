package soak

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// httpc reads the binaries' /metrics and /ready; no keep-alive, so no idle
// connection outlives the run.
var httpc = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}

// errGone: the process is not running now.
var errGone = errors.New("process not running")

// sidecar is the logferry-sidecar process the soak runs, kills and restarts
// with the same arguments (state and spool survive).
type sidecar struct {
	bin, logPath string
	args         []string
	metrics      string // host:port of /metrics and /ready

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// start runs the sidecar and waits up to a minute for its /ready.
func (s *sidecar) start(ctx context.Context) error {
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, s.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own session, as a deployed sidecar has (see e2e/sidecar_test.go:
	// autogroup scheduling), and killed with the harness.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setsid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting the sidecar: %w", err)
	}
	done := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	// Owned by s: stop waits for it through done.
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	return waitReady(ctx, s.metrics, done, time.Minute)
}

// stop signals the sidecar and waits for it to exit (SIGKILL after 30 s).
func (s *sidecar) stop(sig syscall.Signal) {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(sig)
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		_ = cmd.Process.Kill()
		<-done
	}
}

func (s *sidecar) pid() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0, errGone
	}
	select {
	case <-s.done:
		return 0, errGone
	default:
		return s.cmd.Process.Pid, nil
	}
}

// waitReady polls addr's /ready until it answers 200; done (may be nil)
// closing first, or the limit passing, is an error.
func waitReady(ctx context.Context, addr string, done <-chan struct{}, limit time.Duration) error {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if ready(addr) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-done:
			return fmt.Errorf("the process serving %s exited before it was ready", addr)
		case <-deadline.C:
			return fmt.Errorf("%s/ready did not answer 200 within %v", addr, limit)
		case <-tick.C:
		}
	}
}

func ready(addr string) bool {
	resp, err := httpc.Get("http://" + addr + "/ready")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// findPluginPID finds the plugin's process: the logferry-plugin child of
// the containerd shim that runs the plugin id (as e2e/plugin_test.go).
func findPluginPID(pluginID string) (int, error) {
	shims, err := exec.Command("pgrep", "-f", "containerd-shim.*"+pluginID).Output()
	if err != nil {
		return 0, fmt.Errorf("no shim for plugin %s: %w", pluginID, err)
	}
	for _, shim := range strings.Fields(string(shims)) {
		kids, err := exec.Command("pgrep", "-P", shim, "-x", "logferry-plugin").Output()
		if err == nil {
			return strconv.Atoi(strings.Fields(string(kids))[0])
		}
	}
	return 0, fmt.Errorf("no logferry-plugin process under the shim of %s: %w", pluginID, errGone)
}

// procStat is what /proc says about one process.
type procStat struct {
	cpuTicks int64 // utime + stime, clock ticks
	fds      int
	// fifoDups are descriptors of a logging FIFO another descriptor of the
	// process already has open. The plugin holds up to three per stream
	// (plugin/stream.go, fifo_linux.go): the read end, its own write end
	// (the keeper, from StartLogging to StopLogging; a stream re-attached
	// after a restart has none) and, while the stream is quiet, a
	// duplicate of the read end its reader waits on in the netpoller. How
	// many streams are quiet at the sampled instant, and how many were
	// re-attached, moves the count; one descriptor per FIFO is what says
	// whether a FIFO is still held.
	fifoDups int
	// spoolFDs are descriptors of spool segments that still exist: a
	// spool opens its newest segment to append to and the one it reads
	// back while it holds data (after an outage, or when the memory
	// queue overflowed), and closes them when it drained. A segment
	// deleted but still open is not counted here.
	spoolFDs int
	sockets  int // of FDs, sockets (with kinds)
	rssBytes int64
	rssAnon  int64 // RssAnon
	rssFile  int64 // RssFile
	threads  int64 // Threads: OS threads (a Go program never ends one it made)
}

// fifoDir is where dockerd makes the FIFOs it hands a logging plugin, as
// the plugin sees them.
const fifoDir = "/run/docker/logging/"

// clockTicks is USER_HZ, 100 on every Linux the project supports.
const clockTicks = 100

// readProc reads pid's CPU, descriptors and RSS; with kinds, also what
// its descriptors open (fifoDups, spoolFDs: a readlink each, which
// dockerd's hundreds of descriptors do not need).
func readProc(pid int, kinds bool) (procStat, error) {
	var st procStat
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return st, err
	}
	// The command name may hold spaces: fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return st, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return st, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	stt, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return st, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	st.cpuTicks = ut + stt
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return st, err
	}
	st.fds = len(ents)
	if kinds {
		st.fifoDups, st.spoolFDs, st.sockets = fdKinds(pid, ents, fifoDir)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, err
	}
	st.rssAnon, st.rssFile, st.threads = -1, -1, -1
	for _, line := range strings.Split(string(status), "\n") {
		key, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *int64
		switch key {
		case "VmRSS":
			dst = &st.rssBytes
		case "RssAnon":
			dst = &st.rssAnon
		case "RssFile":
			dst = &st.rssFile
		case "Threads":
			if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
				st.threads = n
			}
			continue
		default:
			continue
		}
		if fs := strings.Fields(v); len(fs) == 2 {
			if kb, err := strconv.ParseInt(fs[0], 10, 64); err == nil {
				*dst = kb << 10
			}
		}
	}
	return st, nil
}

// spoolSegment matches a spool segment's path: <spool dir>/<endpoint
// hash>/<position>.seg (shared/spool).
var spoolSegment = regexp.MustCompile(`/spool/[0-9a-f]+/[0-9]+\.seg$`)

// fdKinds counts, among ents (of /proc/<pid>/fd), the descriptors that open
// a file under fifoDir another one opens too (dups), those of spool
// segments that exist (spool), and sockets (connections to Loki, dockerd
// and the metrics listener's clients, which follow recent traffic: an idle
// keep-alive connection lives on after its last request). A descriptor
// closed while they are read is skipped.
func fdKinds(pid int, ents []os.DirEntry, fifoDir string) (dups, spool, sockets int) {
	seen := map[string]bool{}
	for _, e := range ents {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		if err != nil {
			continue
		}
		if strings.HasPrefix(target, "socket:") {
			sockets++
			continue
		}
		if spoolSegment.MatchString(target) {
			spool++
			continue
		}
		if !strings.HasPrefix(target, fifoDir) {
			continue
		}
		if seen[target] {
			dups++
		}
		seen[target] = true
	}
	return dups, spool, sockets
}

// scrape reads addr's /metrics page (Prometheus text; sumFamilies and
// histSpec.read take it apart).
func scrape(ctx context.Context, addr string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s/metrics: %s", addr, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// sumFamilies sums the samples of each named family in a Prometheus text
// exposition. A name may be family{label="value"}: then only the samples
// with that label are summed.
func sumFamilies(body []byte, names []string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		for _, name := range names {
			family, match, _ := strings.Cut(name, "{")
			rest, ok := strings.CutPrefix(line, family)
			if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
				continue
			}
			if match != "" {
				labels, _, _ := strings.Cut(rest, "}")
				if !strings.Contains(labels, strings.TrimSuffix(match, "}")) {
					continue
				}
			}
			f := strings.Fields(line)
			if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
				out[name] += v
			}
		}
	}
	return out
}

// histSpec names a Prometheus histogram: its family and labels each of the
// series summed must have (name="value", as the exposition writes them).
type histSpec struct {
	family string
	labels []string
}

// read sums, over the series of h in a text exposition, the count, the
// observations above about threshold and the sum. Above is the count less
// each series' cumulative bucket with the largest bound not above
// threshold (bounds are exposition floats: 1.024 is not written 1.024
// exactly). Each is -1 when h has no series in body.
func (h histSpec) read(body []byte, threshold float64) (count, above, sum float64) {
	count, above, sum = -1, -1, -1
	type series struct{ count, under, underLE, sum float64 }
	all := map[string]*series{}
	get := func(key string) *series {
		s := all[key]
		if s == nil {
			s = &series{underLE: -1}
			all[key] = s
		}
		return s
	}
	for _, line := range strings.Split(string(body), "\n") {
		rest, ok := strings.CutPrefix(line, h.family+"_")
		if !ok {
			continue
		}
		kind, rest, ok := strings.Cut(rest, "{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok || !hasLabels(labels, h.labels) {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			continue
		}
		// The series' key: its labels without le.
		var key []string
		le := ""
		for _, l := range strings.Split(labels, ",") {
			if b, ok := strings.CutPrefix(l, `le="`); ok {
				le = strings.TrimSuffix(b, `"`)
				continue
			}
			key = append(key, l)
		}
		s := get(strings.Join(key, ","))
		switch kind {
		case "count":
			s.count = v
		case "sum":
			s.sum = v
		case "bucket":
			bound, err := strconv.ParseFloat(le, 64)
			if err == nil && bound <= threshold && bound > s.underLE {
				s.under, s.underLE = v, bound
			}
		}
	}
	if len(all) == 0 {
		return
	}
	count, above, sum = 0, 0, 0
	for _, s := range all {
		count += s.count
		above += s.count - s.under
		sum += s.sum
	}
	return
}

// hasLabels reports whether a series' label text has each of want.
func hasLabels(labels string, want []string) bool {
	have := strings.Split(labels, ",")
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// dockerdPID reads the pidfile scripts/dockerd keeps in the daemon's
// directory.
func dockerdPID(dir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "dockerd.pid"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}
