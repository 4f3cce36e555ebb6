package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// BuildSidecar builds ./cmd/logferry-sidecar into dir and returns the
// binary's path, as `make sidecar` builds it (CGO_ENABLED=0, -trimpath),
// with its symbols for pprof and perf.
func BuildSidecar(ctx context.Context, dir string) (string, error) {
	return buildBinary(ctx, dir, "logferry-sidecar")
}

// SidecarConfig says how to start the sidecar binary.
type SidecarConfig struct {
	Binary        string // from BuildSidecar
	Dir           string // gets the state directory and sidecar.log
	DockerHost    string // docker-host, e.g. FakeEngine.DockerHost()
	ContainersDir string // containers-dir
	LokiURL       string // loki-url
	// Args are more flags, e.g. --loki-batch-size=4MiB.
	Args []string
	// Env is added to the sidecar's environment (e.g. GOMAXPROCS=1).
	Env []string
}

// Sidecar is a running sidecar process, started by StartSidecar and owned
// by its caller, who must call Stop.
type Sidecar struct {
	child
	listen  string
	started time.Time
	web     *http.Client // no keep-alive: a scrape leaves no goroutine behind
}

// StartSidecar starts the sidecar binary with its state directory under
// cfg.Dir and its listener on a free port of 127.0.0.1, and returns once
// the listener answers (the sidecar may not have discovered containers
// yet: see WaitReady).
func StartSidecar(ctx context.Context, cfg SidecarConfig) (*Sidecar, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Sidecar{
		child:  child{logPath: filepath.Join(cfg.Dir, "sidecar.log")},
		listen: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		web:    &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
	}
	args := []string{
		"--docker-host=" + cfg.DockerHost,
		"--containers-dir=" + cfg.ContainersDir,
		"--state-dir=" + filepath.Join(cfg.Dir, "state"),
		"--listen=" + s.listen,
		"--loki-url=" + cfg.LokiURL,
		"--log-level=info",
	}
	cmd := exec.Command(cfg.Binary, append(args, cfg.Args...)...)
	// Nothing from the benchmark's environment configures the sidecar
	// behind its back.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LOGFERRY_") && !strings.HasPrefix(kv, "DOCKER_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, cfg.Env...)
	s.started = time.Now()
	if err := s.start(cmd); err != nil {
		return nil, err
	}
	if err := s.waitListening(ctx); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Sidecar) waitListening(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return s.poll(ctx, "/metrics", "the sidecar did not start listening")
}

// WaitReady returns once /ready answers 200: the sidecar has listed the
// containers once (and started shipping those it found).
func (s *Sidecar) WaitReady(ctx context.Context) error {
	return s.poll(ctx, "/ready", "the sidecar did not become ready")
}

// poll GETs path every 20 ms until it answers 200.
func (s *Sidecar) poll(ctx context.Context, path, what string) error {
	for {
		resp, err := s.get(ctx, path, 5*time.Second)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", path, resp.Status)
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-s.exited:
			t.Stop()
			return fmt.Errorf("the sidecar exited (%v); its log:\n%s", s.waitErr, s.LogTail(20))
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: %v; its log:\n%s", what, err, s.LogTail(20))
		case <-t.C:
		}
	}
}

func (s *Sidecar) get(ctx context.Context, path string, timeout time.Duration) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.listen+path, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	resp, err := s.web.Do(r)
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = cancelOnClose{resp.Body, cancel}
	return resp, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// Listen returns the sidecar's listener (metrics, readiness, pprof),
// host:port.
func (s *Sidecar) Listen() string { return s.listen }

// Started is when the sidecar process was started.
func (s *Sidecar) Started() time.Time { return s.started }

// Metrics scrapes the sidecar's /metrics.
func (s *Sidecar) Metrics(ctx context.Context) (Samples, error) {
	resp, err := s.get(ctx, "/metrics", 10*time.Second)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body)
}

// CPUProfile fetches a CPU profile of the next d from the sidecar's
// /debug/pprof/profile into file, then its allocation profile (every
// allocation since it started) into file + ".allocs". It blocks for d.
func (s *Sidecar) CPUProfile(ctx context.Context, d time.Duration, file string) error {
	secs := max(1, int((d+time.Second-1)/time.Second))
	if err := s.fetch(ctx, "/debug/pprof/profile?seconds="+strconv.Itoa(secs), time.Duration(secs)*time.Second+time.Minute, file); err != nil {
		return err
	}
	return s.fetch(ctx, "/debug/pprof/allocs", time.Minute, file+".allocs")
}

// fetch GETs path into file.
func (s *Sidecar) fetch(ctx context.Context, path string, timeout time.Duration, file string) error {
	resp, err := s.get(ctx, path, timeout)
	if err != nil {
		return fmt.Errorf("pprof: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("pprof %s: %s: %s", path, resp.Status, b)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("pprof %s: %w", path, err)
	}
	return f.Close()
}

// LogProblems returns the sidecar's log records at level WARN or ERROR,
// and anything in its log that is not a JSON record (a panic, a Go runtime
// message): the first limit of them, and how many there were.
func (s *Sidecar) LogProblems(limit int) (lines []string, total int) {
	f, err := os.Open(s.logPath)
	if err != nil {
		return []string{err.Error()}, 1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "{") && !strings.Contains(l, `"level":"WARN"`) && !strings.Contains(l, `"level":"ERROR"`) {
			continue
		}
		if total < limit {
			lines = append(lines, l)
		}
		total++
	}
	return lines, total
}

// Diagnose returns the sidecar's logferry_ metrics and RSS, for an error
// message about a run that went wrong.
func (s *Sidecar) Diagnose(ctx context.Context) string { return diagnose(ctx, s.Metrics, s.PID()) }
