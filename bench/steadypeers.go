package bench

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// The peers make bench-peers runs beside logferry under the same steady
// load (scripts/peers builds them from the Loki module in a scratch module,
// never into logferry's go.mod):
const (
	// TargetGrafanaDriver is Grafana's Loki Docker driver
	// (clients/cmd/docker-driver), fed like the plugin: one FIFO per
	// container, StartLogging over its socket, loki-url as a log-opt.
	TargetGrafanaDriver = "grafana-driver"
	// TargetPromtail is Promtail tailing the same json-file logs as the
	// sidecar, with the docker stage Grafana documents for them.
	TargetPromtail = "promtail"
)

// isPeer reports whether target is another project's shipper: the sink
// then checks the lines (each once) but not logferry's metrics or state.
func isPeer(target string) bool { return target == TargetGrafanaDriver || target == TargetPromtail }

// driverScript runs Grafana's driver as its own process outside a managed
// plugin: it listens on /run/docker/plugins/loki.sock and keeps its local
// copies in /var/log/docker/<id>, fixed paths, so in a private mount
// namespace both are the run directory's ($1, $2), and nothing of the host's
// /run or /var/log is touched.
const driverScript = `set -e
mount -t tmpfs -o size=1m,mode=0755 lf-peer /run
mkdir -p /run/docker/plugins
mount --bind "$1" /run/docker/plugins
mount -t tmpfs -o size=1m,mode=0755 lf-peer /var/log
mkdir -p /var/log/docker
mount --bind "$2" /var/log/docker
shift 2
exec "$@"`

// startSteadyDriver is startSteadyPlugin for Grafana's driver. It needs
// root (mount namespaces) and util-linux's unshare.
func startSteadyDriver(ctx context.Context, cfg SteadyConfig, dir, lokiURL string, names []string) (steadyTarget, []logWriter, error) {
	if os.Geteuid() != 0 {
		return nil, nil, errors.New("grafana-driver: needs root, to give the driver its fixed socket and log paths in a private mount namespace")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		return nil, nil, fmt.Errorf("grafana-driver: %w (util-linux)", err)
	}
	run, varlog := filepath.Join(dir, "run"), filepath.Join(dir, "varlog")
	for _, d := range []string{run, varlog} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, nil, err
		}
	}
	socket := filepath.Join(run, "loki.sock")
	p := &Plugin{child: child{logPath: filepath.Join(dir, "driver.log")}, socket: socket}
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", driverScript, "sh", run, varlog, cfg.Binary)
	cmd.Env = append(os.Environ(), "LOG_LEVEL=warn")
	cmd.Env = append(cmd.Env, cfg.Env...)
	if err := p.start(cmd); err != nil {
		return nil, nil, err
	}
	p.rpc = unixClient(socket)
	if err := p.waitActivated(ctx); err != nil {
		p.Stop()
		return nil, nil, err
	}
	t := &steadyPlugin{p: p, peer: true}
	writers, err := t.open(ctx, dir, names, driverOpts(lokiURL, cfg.LogOpts))
	if err != nil {
		t.close()
		return nil, nil, err
	}
	return t, writers, nil
}

// driverOpts are the log-opts of a container on Grafana's driver: its Loki
// URL and logOpts.
func driverOpts(lokiURL string, logOpts map[string]string) map[string]string {
	opts := map[string]string{"loki-url": lokiURL}
	maps.Copy(opts, logOpts)
	return opts
}

// promtailConfig is Promtail's configuration for the containers' json-file
// logs: a static target over <containers>/*/*-json.log with the docker
// stage, as Grafana documents for Docker hosts without the driver.
const promtailConfig = `server:
  http_listen_address: 127.0.0.1
  http_listen_port: %d
  grpc_listen_address: 127.0.0.1
  grpc_listen_port: 0
  log_level: warn
positions:
  filename: %s
clients:
  - url: %s
scrape_configs:
  - job_name: containers
    static_configs:
      - targets: [localhost]
        labels:
          job: containers
          __path__: %s
    pipeline_stages:
      - docker: {}
`

// steadyPromtail is Promtail under the sidecar's steady load.
type steadyPromtail struct {
	s       *Sidecar
	writers []*jsonFileWriter
}

var _ steadyTarget = (*steadyPromtail)(nil)

func startSteadyPromtail(ctx context.Context, cfg SteadyConfig, dir, lokiURL string, names []string) (steadyTarget, []logWriter, error) {
	containers := filepath.Join(dir, "containers")
	t := &steadyPromtail{}
	var err error
	var writers []logWriter
	for _, name := range names {
		w, err := openJSONFileLog(containers, ContainerID(name))
		if err != nil {
			t.close()
			return nil, nil, err
		}
		t.writers = append(t.writers, w)
		writers = append(writers, w)
	}
	t.s, err = startPromtail(cfg.Binary, dir, lokiURL, filepath.Join(containers, "*", "*-json.log"), cfg.Args, cfg.Env)
	if err != nil {
		t.close()
		return nil, nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := t.s.poll(rctx, "/ready", "promtail did not become ready"); err != nil {
		t.close()
		return nil, nil, fmt.Errorf("%w; its log:\n%s", err, t.s.LogTail(20))
	}
	return t, writers, nil
}

// startPromtail runs Promtail on the json-file logs matching glob, with
// its listener on a free port of 127.0.0.1 and its configuration and
// positions in dir.
func startPromtail(bin, dir, lokiURL, glob string, args, env []string) (*Sidecar, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "promtail.yaml")
	body := fmt.Sprintf(promtailConfig, port, filepath.Join(dir, "positions.yaml"), lokiURL, glob)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		return nil, err
	}
	s := &Sidecar{
		child:  child{logPath: filepath.Join(dir, "promtail.log")},
		listen: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		web:    &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
	}
	cmd := exec.Command(bin, append([]string{"-config.file=" + conf}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	s.started = time.Now()
	if err := s.start(cmd); err != nil {
		return nil, err
	}
	return s, nil
}

func (t *steadyPromtail) proc() *child   { return &t.s.child }
func (t *steadyPromtail) listen() string { return t.s.listen }

func (t *steadyPromtail) metrics(ctx context.Context) (Samples, error) { return t.s.Metrics(ctx) }

func (t *steadyPromtail) finish(context.Context) error {
	if err := t.s.Stop(); err != nil {
		return fmt.Errorf("promtail's exit after SIGTERM: %w", err)
	}
	return nil
}

func (t *steadyPromtail) close() {
	for _, w := range t.writers {
		w.Close()
	}
	if t.s != nil {
		t.s.Stop()
	}
}
