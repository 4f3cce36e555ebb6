// Package promtest runs Debian's Prometheus (/usr/bin/prometheus) for
// tests: a private server on 127.0.0.1 scraping the targets and evaluating
// the rule files it is given, its storage in t.TempDir(), stopped when the
// test ends; API queries it. Only tests import it.
package promtest

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	readyTimeout  = 60 * time.Second
	stopTimeout   = 10 * time.Second
	startAttempts = 3
	logKeep       = 32 << 10 // bytes of Prometheus' log kept for a failure
)

// Config is what the server scrapes and evaluates.
type Config struct {
	// ScrapeInterval is also the rule evaluation interval (default 1s).
	ScrapeInterval time.Duration
	// Jobs maps a scrape job's name to its targets (host:port, /metrics).
	Jobs map[string][]string
	// RuleFiles are rule files to load, by absolute path.
	RuleFiles []string
}

// Server is a Prometheus process owned by one test.
type Server struct {
	*Client

	t   testing.TB
	bin string
	dir string
	log *tail

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

// BinaryPath returns the prometheus binary: on PATH, or /usr/bin/prometheus.
// Without one it installs Debian's prometheus package when it can do so
// without asking (root and apt-get, as scripts/promtool-check does for
// promtool), and otherwise skips the test saying what to install.
func BinaryPath(t testing.TB) string {
	t.Helper()
	find := func() string {
		if p, err := exec.LookPath("prometheus"); err == nil {
			return p
		}
		if st, err := os.Stat("/usr/bin/prometheus"); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return "/usr/bin/prometheus"
		}
		return ""
	}
	if p := find(); p != "" {
		return p
	}
	const howTo = "install Debian's prometheus package (apt-get install prometheus), or put a prometheus binary on PATH"
	if _, err := exec.LookPath("apt-get"); err != nil || os.Geteuid() != 0 {
		t.Skipf("promtest: prometheus is not installed and cannot be installed here without asking; %s", howTo)
	}
	t.Logf("promtest: installing Debian's prometheus package")
	cmd := exec.Command("apt-get", "install", "-y", "--no-install-recommends", "prometheus")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("promtest: prometheus is not installed and apt-get install failed (%v); %s\n%s", err, howTo, lastLines(string(out), 10))
	}
	if p := find(); p != "" {
		return p
	}
	t.Skipf("promtest: the prometheus package installed no prometheus binary; %s", howTo)
	return ""
}

// Start runs Prometheus for t with cfg and stops it in t.Cleanup. It fails
// the test if Prometheus does not become ready.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.ScrapeInterval <= 0 {
		cfg.ScrapeInterval = time.Second
	}
	s := &Server{t: t, bin: BinaryPath(t), dir: t.TempDir(), log: &tail{}}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("promtest: the end of Prometheus' log:\n%s", lastLines(s.log.String(), 30))
		}
	})
	config := filepath.Join(s.dir, "prometheus.yml")
	if err := os.WriteFile(config, []byte(render(cfg)), 0o644); err != nil {
		t.Fatalf("promtest: %v", err)
	}
	for attempt := 1; ; attempt++ {
		addr, err := freeAddr()
		if err != nil {
			t.Fatalf("promtest: %v", err)
		}
		s.Client = NewClient("http://" + addr)
		began := time.Now()
		err = s.start(config, addr)
		if err == nil {
			t.Logf("promtest: Prometheus ready at %s in %v", s.URL, time.Since(began).Round(time.Millisecond))
			return s
		}
		if attempt < startAttempts && strings.Contains(s.log.String(), "address already in use") {
			s.log.reset()
			continue
		}
		t.Fatalf("promtest: %v\nthe end of Prometheus' log:\n%s", err, lastLines(s.log.String(), 30))
	}
}

// render writes the configuration file: one scrape job per entry of Jobs,
// in name order, and the rule files.
func render(cfg Config) string {
	var b strings.Builder
	iv := cfg.ScrapeInterval.String()
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  scrape_timeout: %s\n  evaluation_interval: %s\n", iv, iv, iv)
	if len(cfg.RuleFiles) > 0 {
		b.WriteString("rule_files:\n")
		for _, f := range cfg.RuleFiles {
			fmt.Fprintf(&b, "  - %s\n", strconv.Quote(f))
		}
	}
	b.WriteString("scrape_configs:\n")
	jobs := make([]string, 0, len(cfg.Jobs))
	for j := range cfg.Jobs {
		jobs = append(jobs, j)
	}
	slices.Sort(jobs)
	for _, j := range jobs {
		fmt.Fprintf(&b, "  - job_name: %s\n    static_configs:\n      - targets:\n", strconv.Quote(j))
		for _, target := range cfg.Jobs[j] {
			fmt.Fprintf(&b, "          - %s\n", strconv.Quote(target))
		}
	}
	return b.String()
}

func (s *Server) start(config, addr string) error {
	cmd := exec.Command(s.bin, "--config.file="+config, "--storage.tsdb.path="+filepath.Join(s.dir, "data"),
		"--web.listen-address="+addr, "--storage.tsdb.retention.time=1d")
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = s.log, s.log
	// Killed by the kernel if the test binary dies without its cleanups.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	// Owned by s: Stop waits for it through exited.
	go func() { _ = cmd.Wait(); close(exited) }()

	deadline := time.NewTimer(readyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for {
		if resp, err := hc.Get(s.URL + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("prometheus (%s) exited before it was ready: %v", s.bin, cmd.ProcessState)
		case <-deadline.C:
			s.Stop()
			return fmt.Errorf("prometheus at %s was not ready within %v", s.URL, readyTimeout)
		case <-tick.C:
		}
	}
}

// Stop stops Prometheus (SIGTERM, then SIGKILL after 10 s) and waits for
// it; it signals only the process it started. Stopping again does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd, s.exited = nil, nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-exited:
	case <-timer.C:
		_ = cmd.Process.Kill()
		<-exited
	}
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// tail keeps the last logKeep bytes written to it.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (b *tail) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - logKeep; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tail) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(bytes.Clone(b.buf))
}

func (b *tail) reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = nil
}
