package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/logferry/logferry/plugin"
)

// RepoRoot finds the repository (the directory with go.mod and
// cmd/logferry-plugin) from the working directory upwards.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "cmd", "logferry-plugin")); err == nil {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no directory above the working directory has go.mod and cmd/logferry-plugin; run from the repository")
		}
		dir = parent
	}
}

// BuildPlugin builds ./cmd/logferry-plugin into dir and returns the binary's
// path. It is built as scripts/plugin builds it for the managed plugin
// (CGO_ENABLED=0), but keeps its symbols for perf.
func BuildPlugin(ctx context.Context, dir string) (string, error) {
	return buildBinary(ctx, dir, "logferry-plugin")
}

// PluginConfig says how to start the plugin binary.
type PluginConfig struct {
	Binary  string // from BuildPlugin
	Dir     string // gets the socket, the state directory and plugin.log; keep it short (unix socket paths are limited to 107 bytes)
	LokiURL string // LOKI_URL
	// Env is added to the plugin's environment (e.g. LOG_LEVEL=debug).
	Env []string
}

// Plugin is a running plugin process, started by StartPlugin and owned by
// its caller, who must call Stop.
type Plugin struct {
	child
	socket      string
	metricsAddr string
	rpc         *http.Client // over the unix socket
	web         *http.Client // metrics, no keep-alive: a scrape leaves no goroutine behind
}

// StartPlugin starts the plugin binary with its socket, state directory and
// metrics listener under cfg.Dir and on 127.0.0.1, and returns once it
// answers on both.
func StartPlugin(ctx context.Context, cfg PluginConfig) (*Plugin, error) {
	socket := filepath.Join(cfg.Dir, "logferry.sock")
	if len(socket) > 100 {
		return nil, fmt.Errorf("socket path %s is too long for a unix socket; use a shorter directory", socket)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	p := &Plugin{
		child:       child{logPath: filepath.Join(cfg.Dir, "plugin.log")},
		socket:      socket,
		metricsAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
	}
	cmd := exec.Command(cfg.Binary)
	cmd.Env = append(os.Environ(),
		"SOCKET="+socket,
		"STATE_DIR="+filepath.Join(cfg.Dir, "state"),
		"METRICS_ADDR="+p.metricsAddr,
		"LOKI_URL="+cfg.LokiURL,
		"HOST_LABEL=bench",
		"LOG_LEVEL=warn",
	)
	cmd.Env = append(cmd.Env, cfg.Env...)
	if err := p.start(cmd); err != nil {
		return nil, err
	}
	p.rpc = unixClient(socket)
	p.web = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	if err := p.waitReady(ctx); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

// unixClient is an HTTP client that talks to the plugin socket, as the
// daemon does.
func unixClient(socket string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableKeepAlives: true,
	}}
}

// waitActivated returns once the plugin answers /Plugin.Activate (a peer
// without logferry's /ready).
func (p *Plugin) waitActivated(ctx context.Context) error { return p.waitUp(ctx, nil) }

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (p *Plugin) waitReady(ctx context.Context) error {
	return p.waitUp(ctx, func() error {
		resp, err := p.get(ctx, "/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/ready: %s", resp.Status)
		}
		return nil
	})
}

// waitUp polls until the plugin answers /Plugin.Activate and ready (when
// not nil) succeeds, for at most 30 s.
func (p *Plugin) waitUp(ctx context.Context, ready func() error) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		err := p.call(ctx, "/Plugin.Activate", struct{}{}, nil)
		if err == nil && ready != nil {
			err = ready()
		}
		if err == nil {
			return nil
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-p.exited:
			t.Stop()
			return fmt.Errorf("the plugin exited during start-up (%v); its log:\n%s", p.waitErr, p.LogTail(20))
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("the plugin did not become ready: %v; its log:\n%s", err, p.LogTail(20))
		case <-t.C:
		}
	}
}

// MetricsAddr returns the plugin's metrics listener, host:port.
func (p *Plugin) MetricsAddr() string { return p.metricsAddr }

// call POSTs req as JSON to the plugin's socket, as the daemon does, and
// decodes the answer into resp (if not nil). An answer with a non-empty Err
// is an error.
func (p *Plugin) call(ctx context.Context, path string, req, resp any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://plugin"+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	r.Header.Set("Content-Type", "application/vnd.docker.plugins.v1.2+json")
	res, err := p.rpc.Do(r)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var e struct{ Err string }
	_ = json.Unmarshal(b, &e)
	if e.Err != "" {
		return fmt.Errorf("%s: %s", path, e.Err)
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", path, res.Status, b)
	}
	if resp != nil {
		return json.Unmarshal(b, resp)
	}
	return nil
}

// StartLogging is the daemon's /LogDriver.StartLogging.
func (p *Plugin) StartLogging(ctx context.Context, fifo string, info plugin.Info) error {
	return p.call(ctx, "/LogDriver.StartLogging", plugin.StartLoggingRequest{File: fifo, Info: info}, nil)
}

// StopLogging is the daemon's /LogDriver.StopLogging.
func (p *Plugin) StopLogging(ctx context.Context, fifo string) error {
	return p.call(ctx, "/LogDriver.StopLogging", plugin.StopLoggingRequest{File: fifo}, nil)
}

func (p *Plugin) get(ctx context.Context, path string) (*http.Response, error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.metricsAddr+path, nil)
	if err != nil {
		return nil, err
	}
	return p.web.Do(r)
}

// Goroutines returns the plugin's goroutines counted by stack
// (/debug/pprof/goroutine?debug=1), or an error when it does not serve
// pprof (PPROF=true in PluginConfig.Env).
func (p *Plugin) Goroutines(ctx context.Context) (string, error) {
	resp, err := p.get(ctx, "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("/debug/pprof/goroutine: %s", resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// Samples are the plugin's metrics, each name's samples summed over their
// label sets.
type Samples map[string]float64

// Metrics scrapes the plugin's /metrics.
func (p *Plugin) Metrics(ctx context.Context) (Samples, error) {
	resp, err := p.get(ctx, "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body)
}

// parseMetrics reads the Prometheus text format, summing each name's
// samples. Histograms and summaries come out as their _sum, _count and
// _bucket names, which is enough here.
func parseMetrics(r io.Reader) (Samples, error) {
	s := Samples{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest := line, ""
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name, rest = line[:i], line[i:]
		}
		if strings.HasPrefix(rest, "{") {
			j := strings.LastIndexByte(rest, '}')
			if j < 0 {
				return nil, fmt.Errorf("metrics: bad line %q", line)
			}
			rest = rest[j+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return nil, fmt.Errorf("metrics: no value in %q", line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics: bad value in %q", line)
		}
		s[name] += v
	}
	return s, sc.Err()
}

// Diagnose returns the plugin's stream and dispatcher metrics, for an error
// message about a run that went wrong.
func (p *Plugin) Diagnose(ctx context.Context) string { return diagnose(ctx, p.Metrics, p.PID()) }

// diagnose returns a binary's logferry_ metrics, goroutines and RSS in one
// line: metrics reads its /metrics, pid is its process.
func diagnose(ctx context.Context, metrics func(context.Context) (Samples, error), pid int) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	m, err := metrics(ctx)
	if err != nil {
		return "metrics: " + err.Error()
	}
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(m)) {
		if strings.HasPrefix(name, "logferry_") && !strings.Contains(name, "_bucket") {
			parts = append(parts, fmt.Sprintf("%s=%g", name, m[name]))
		}
	}
	if mem, err := ReadProcMem(pid); err == nil {
		parts = append(parts, fmt.Sprintf("rss=%.1fMiB", MiB(mem.RSS)))
	}
	parts = append(parts, fmt.Sprintf("go_goroutines=%g", m["go_goroutines"]))
	return strings.Join(parts, " ")
}
