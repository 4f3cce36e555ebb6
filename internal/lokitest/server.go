// Package lokitest runs the pinned Grafana Loki (scripts/loki) for tests and
// reads back what reached it. Only tests import it.
//
// Start launches a private single-process Loki on 127.0.0.1 with its data in
// t.TempDir() and stops it when the test ends; Client queries it with
// exact nanosecond timestamps and structured metadata.
package lokitest

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logferry/logferry/internal/repo"
)

const (
	defaultReadyTimeout = 60 * time.Second
	stopTimeout         = 10 * time.Second
	logTailLines        = 50
	startAttempts       = 3
)

// Option changes how Start runs Loki.
type Option func(*options)

type options struct {
	args         []string
	readyTimeout time.Duration
	logFile      string
}

// WithArgs passes extra command-line flags to Loki. Flags override
// scripts/loki-config.yaml, e.g. "-distributor.max-line-size=1KB" or
// "-distributor.ingestion-rate-limit-mb=1" to make Loki reject pushes.
func WithArgs(args ...string) Option {
	return func(o *options) { o.args = append(o.args, args...) }
}

// WithReadyTimeout sets how long Start waits for /ready (default 60 s).
func WithReadyTimeout(d time.Duration) Option {
	return func(o *options) { o.readyTimeout = d }
}

// WithLogFile also appends Loki's whole log, across restarts, to path
// (created if missing): what a long run reads afterwards, e.g. when Loki
// checkpointed its WAL.
func WithLogFile(path string) Option {
	return func(o *options) { o.logFile = path }
}

// Server is a Loki process owned by one test.
type Server struct {
	*Client

	t        testing.TB
	bin      string
	dir      string
	config   string
	opts     options
	httpPort int
	grpcPort int
	log      *tailBuffer
	out      io.Writer // log, and the log file when asked for

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has exited; nil when not started
	waitErr error         // cmd.Wait's error, set before exited is closed
}

// Start runs Loki for t and stops it in t.Cleanup. It fails the test if Loki
// does not become ready; see BinaryPath for how the binary is found.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	o := options{readyTimeout: defaultReadyTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	bin := BinaryPath(t)
	root, err := repoRoot()
	if err != nil {
		t.Fatalf("lokitest: %v", err)
	}
	tmpl, err := os.ReadFile(filepath.Join(root, "scripts", "loki-config.yaml"))
	if err != nil {
		t.Fatalf("lokitest: reading the Loki config template: %v", err)
	}

	// TempDir first: cleanups run last-in first-out, so Loki is stopped
	// before its directory is removed.
	dir := t.TempDir()
	s := &Server{t: t, bin: bin, dir: dir, opts: o, log: newTailBuffer(logTailLines)}
	s.out = s.log
	if o.logFile != "" {
		f, err := os.OpenFile(o.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatalf("lokitest: the log file: %v", err)
		}
		t.Cleanup(func() { f.Close() }) // registered before Stop: runs after it
		s.out = io.MultiWriter(s.log, f)
	}
	started := false
	t.Cleanup(func() {
		s.Stop()
		// A failed start has already reported the log.
		if started && t.Failed() {
			t.Logf("lokitest: the end of Loki's log (%s):\n%s", s.URL(), s.LogTail())
		}
	})

	for attempt := 1; ; attempt++ {
		if s.httpPort, s.grpcPort, err = freePorts(); err != nil {
			t.Fatalf("lokitest: %v", err)
		}
		s.Client = NewClient("http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(s.httpPort)))
		s.config = filepath.Join(dir, "loki.yaml")
		cfg := renderConfig(string(tmpl), filepath.Join(dir, "data"), s.httpPort, s.grpcPort)
		if err := os.WriteFile(s.config, []byte(cfg), 0o644); err != nil {
			t.Fatalf("lokitest: %v", err)
		}
		began := time.Now()
		err = s.start()
		if err == nil {
			started = true
			t.Logf("lokitest: Loki ready at %s in %v", s.URL(), time.Since(began).Round(time.Millisecond))
			return s
		}
		// Another process may have taken a port between freePorts and Loki
		// binding it.
		if attempt < startAttempts && strings.Contains(s.LogTail(), "address already in use") {
			t.Logf("lokitest: a port was taken, retrying: %v", err)
			s.log.Reset()
			continue
		}
		t.Fatalf("lokitest: %v\nthe end of Loki's log:\n%s", err, s.LogTail())
	}
}

// renderConfig fills in the template shared with scripts/loki.
func renderConfig(tmpl, dataDir string, httpPort, grpcPort int) string {
	return strings.NewReplacer(
		"@DIR@", dataDir,
		"@HTTP_PORT@", strconv.Itoa(httpPort),
		"@GRPC_PORT@", strconv.Itoa(grpcPort),
	).Replace(tmpl)
}

// start runs the process and waits until it is ready or has failed.
func (s *Server) start() error {
	args := append([]string{"-config.file=" + s.config}, s.opts.args...)
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.dir
	cmd.Stdout = s.out
	cmd.Stderr = s.out
	setProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	// Owned by s: Stop waits for it through exited.
	go func() {
		err := cmd.Wait()
		s.mu.Lock()
		s.waitErr = err
		s.mu.Unlock()
		close(exited)
	}()

	if err := s.waitReady(exited); err != nil {
		s.Stop()
		return err
	}
	return nil
}

// waitReady polls /ready until it answers 200, Loki exits, or the ready
// timeout passes.
func (s *Server) waitReady(exited <-chan struct{}) error {
	deadline := time.NewTimer(s.opts.readyTimeout)
	defer deadline.Stop()
	ticker := time.NewTicker(50 * time.Millisecond)
	defer ticker.Stop()
	hc := &http.Client{Timeout: time.Second}
	var last string
	for {
		resp, err := hc.Get(s.URL() + ReadyPath)
		if err == nil {
			var body bytes.Buffer
			_, _ = body.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(body.String()))
		} else {
			last = err.Error()
		}
		select {
		case <-exited:
			s.mu.Lock()
			err := s.waitErr
			s.mu.Unlock()
			return fmt.Errorf("Loki (%s) exited before it was ready: %v", s.bin, err)
		case <-deadline.C:
			return fmt.Errorf("Loki at %s was not ready within %v; /ready said: %s", s.URL(), s.opts.readyTimeout, last)
		case <-ticker.C:
		}
	}
}

// Stop stops Loki: SIGTERM, then SIGKILL if it has not exited within 10 s.
// It signals only the process it started, and returns once it has exited.
// Calling Stop again, or on a stopped Server, does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-exited:
	default:
		_ = cmd.Process.Signal(syscall.SIGTERM)
		timer := time.NewTimer(stopTimeout)
		select {
		case <-exited:
		case <-timer.C:
			s.t.Logf("lokitest: Loki (pid %d) did not exit within %v of SIGTERM; killing it", cmd.Process.Pid, stopTimeout)
			_ = cmd.Process.Kill()
			<-exited
		}
		timer.Stop()
	}
	s.mu.Lock()
	if s.cmd == cmd {
		s.cmd, s.exited = nil, nil
	}
	s.mu.Unlock()
}

// Restart stops Loki and starts it again on the same ports with the same
// data, as after a Loki restart in production: what it acknowledged survives
// in its write-ahead log. It fails the test if Loki does not become ready.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.log.Reset()
	if err := s.start(); err != nil {
		s.t.Fatalf("lokitest: restarting: %v\nthe end of Loki's log:\n%s", err, s.LogTail())
	}
}

// PID returns the running Loki's process id, 0 while it is stopped.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	select {
	case <-s.exited:
		return 0
	default:
		return s.cmd.Process.Pid
	}
}

// Dir returns the directory holding Loki's config and data.
func (s *Server) Dir() string { return s.dir }

// LogTail returns the last lines Loki wrote to stdout and stderr.
func (s *Server) LogTail() string { return s.log.String() }

// freePorts returns two distinct TCP ports free on 127.0.0.1 just now.
func freePorts() (httpPort, grpcPort int, err error) {
	var ports [2]int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, 0, fmt.Errorf("finding a free port: %w", err)
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports[0], ports[1], nil
}

// tailBuffer keeps the last n lines written to it.
type tailBuffer struct {
	mu      sync.Mutex
	n       int
	lines   []string
	partial []byte
}

func newTailBuffer(n int) *tailBuffer { return &tailBuffer{n: n} }

const maxTailLine = 2 << 10

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			b.partial = append(b.partial, p...)
			if len(b.partial) > maxTailLine {
				b.partial = b.partial[:maxTailLine]
			}
			break
		}
		b.partial = append(b.partial, p[:i]...)
		b.push(string(b.partial))
		b.partial = b.partial[:0]
		p = p[i+1:]
	}
	return n, nil
}

func (b *tailBuffer) push(line string) {
	if len(line) > maxTailLine {
		line = line[:maxTailLine] + "..."
	}
	b.lines = append(b.lines, line)
	if len(b.lines) > b.n {
		b.lines = append(b.lines[:0], b.lines[len(b.lines)-b.n:]...)
	}
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := strings.Join(b.lines, "\n")
	if len(b.partial) > 0 {
		out += "\n" + string(b.partial)
	}
	return out
}

func (b *tailBuffer) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lines, b.partial = nil, nil
}

func repoRoot() (string, error) { return repo.Root("scripts/loki") }
