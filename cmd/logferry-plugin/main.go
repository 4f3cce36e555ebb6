// Command logferry-plugin is the managed Docker logging plugin: environment
// to configuration, wiring, signals. Everything else lives in package plugin.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/logferry/logferry/plugin"
	"github.com/logferry/logferry/shared/buildinfo"
	"github.com/logferry/logferry/shared/logopts"
	"github.com/logferry/logferry/shared/loki"
	"github.com/logferry/logferry/shared/obsserver"
	"github.com/logferry/logferry/shared/pipeline"
	"github.com/logferry/logferry/shared/spool"
)

// env is the plugin's configuration, from the settable environment of
// config.json (`docker plugin set logferry KEY=VALUE` while disabled).
type env struct {
	LokiURL      string
	LogLevel     slog.Level
	MetricsAddr  string
	StateDir     string
	DrainTimeout time.Duration
	Host         string
	Socket       string
	Retention    plugin.Retention
	Overflow     spool.Settings       // OVERFLOW, SPOOL_DIR, SPOOL_MAX_SIZE, SPOOL_FSYNC, SPOOL_FULL_POLICY
	Pprof        bool                 // PPROF: /debug/pprof/ on METRICS_ADDR
	Guard        pipeline.GuardConfig // MAX_LABEL_VALUES, MAX_STREAMS
}

// shutdownFlush bounds how long a SIGTERM flushes before what is left is
// spooled: the daemon kills a plugin 10 s after SIGTERM, and spooling,
// syncing and closing need the rest.
const shutdownFlush = 7 * time.Second

func readEnv() (env, error) {
	e := env{
		LokiURL:      os.Getenv("LOKI_URL"),
		MetricsAddr:  getenv("METRICS_ADDR", "127.0.0.1:9375"),
		StateDir:     getenv("STATE_DIR", "/var/lib/logferry"),
		Host:         os.Getenv("HOST_LABEL"),
		Socket:       getenv("SOCKET", "/run/docker/plugins/logferry.sock"),
		DrainTimeout: loki.DefaultDrainTimeout,
	}
	if err := e.LogLevel.UnmarshalText([]byte(getenv("LOG_LEVEL", "info"))); err != nil {
		return e, fmt.Errorf("LOG_LEVEL: want debug, info, warn or error: %w", err)
	}
	if v := os.Getenv("DRAIN_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return e, fmt.Errorf("DRAIN_TIMEOUT: want a positive duration such as 5m, got %q", v)
		}
		e.DrainTimeout = d
	}
	for key, field := range map[string]*int{"MAX_LABEL_VALUES": &e.Guard.MaxLabelValues, "MAX_STREAMS": &e.Guard.MaxStreams} {
		if v := os.Getenv(key); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return e, fmt.Errorf("%s: want a positive whole number, got %q", key, v)
			}
			*field = n
		}
	}
	if v := os.Getenv("PPROF"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return e, fmt.Errorf("PPROF: want true or false, got %q", v)
		}
		e.Pprof = b
	}
	e.Retention = plugin.Retention{MaxAge: plugin.DefaultRetentionAge, MaxTotal: plugin.DefaultRetentionTotal}
	if v := os.Getenv("LOCAL_COPY_MAX_AGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return e, fmt.Errorf("LOCAL_COPY_MAX_AGE: want a positive duration such as 168h, got %q", v)
		}
		e.Retention.MaxAge = d
	}
	if v := os.Getenv("LOCAL_COPY_MAX_TOTAL"); v != "" {
		n, err := logopts.ParseSize(v)
		if err != nil || n <= 0 {
			return e, fmt.Errorf("LOCAL_COPY_MAX_TOTAL: want a size such as 4g, got %q", v)
		}
		e.Retention.MaxTotal = n
	}
	envName := func(key string) string { return strings.ToUpper(strings.ReplaceAll(key, "-", "_")) }
	overflow, err := spool.ParseSettings(func(key string) string { return os.Getenv(envName(key)) }, envName,
		filepath.Join(e.StateDir, "spool"), spool.OverflowSpool, spool.OverflowDrop)
	if err != nil {
		return e, err
	}
	e.Overflow = overflow
	if e.Host == "" {
		h, err := os.Hostname()
		if err != nil {
			return e, fmt.Errorf("HOST_LABEL is empty and the hostname is unknown: %w", err)
		}
		e.Host = h
	}
	if e.MetricsAddr != "" && e.MetricsAddr != "off" {
		if _, _, err := net.SplitHostPort(e.MetricsAddr); err != nil {
			return e, fmt.Errorf("METRICS_ADDR: want host:port or off: %w", err)
		}
	}
	return e, nil
}

func getenv(k, def string) string {
	if v, ok := os.LookupEnv(k); ok && v != "" {
		return v
	}
	return def
}

func main() {
	if buildinfo.Asked(os.Args[1:]) {
		fmt.Println(buildinfo.Read().String("logferry-plugin"))
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "logferry-plugin:", err)
		os.Exit(1)
	}
}

func run() error {
	e, err := readEnv()
	if err != nil {
		return err
	}
	obsserver.SampleHeapFiner(obsserver.Options{Pprof: e.Pprof})
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: e.LogLevel}))
	if loki.URLHasPassword(e.LokiURL) {
		log.Warn("LOKI_URL carries a password: anyone who can run docker plugin inspect reads it; prefer loki-bearer-token-file or a password in a file the operator mounts")
	}
	defaults := logopts.Defaults()
	defaults.Loki.URL = e.LokiURL

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	build := buildinfo.Read()
	build.Register(reg)
	pool := loki.NewPool(loki.NewMetrics(reg), log, e.DrainTimeout, append(e.Overflow.PoolOptions(reg, log),
		loki.WithBacklogDrained(loki.ReturnMemoryAfterBacklog(30*time.Second, log)))...)
	state, err := plugin.NewState(filepath.Join(e.StateDir, "streams"))
	if err != nil {
		return err
	}
	store, err := plugin.NewFileStore(filepath.Join(e.StateDir, "logs"), log)
	if err != nil {
		return err
	}
	driver := plugin.NewDriver(plugin.Config{Defaults: defaults, Host: e.Host, Guards: pipeline.NewGuards(e.Guard, reg, log)}, pool, state, store,
		plugin.NewMetrics(reg), log)

	// Open the socket first: at daemon boot a plugin has ~9 s to answer.
	if err := os.MkdirAll(filepath.Dir(e.Socket), 0o755); err != nil {
		return err
	}
	_ = os.Remove(e.Socket)
	ln, err := net.Listen("unix", e.Socket)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", e.Socket, err)
	}
	var ready atomic.Bool
	serveErr := make(chan error, 2)
	// IdleTimeout: the daemon keeps idle connections to the plugin open
	// indefinitely; each would hold a goroutine and an FD.
	api := &http.Server{Handler: plugin.NewHandler(driver), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 30 * time.Second}
	go func() { serveErr <- api.Serve(ln) }()

	var metricsSrv *http.Server
	if e.MetricsAddr != "" && e.MetricsAddr != "off" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) {
			if !ready.Load() {
				http.Error(w, "restoring streams", http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintf(w, "ready: %d streams\n", driver.Active())
		})
		mln, err := net.Listen("tcp", e.MetricsAddr)
		if err != nil {
			return fmt.Errorf("METRICS_ADDR %s: %w", e.MetricsAddr, err)
		}
		metricsSrv = obsserver.New(mux, obsserver.Options{Pprof: e.Pprof})
		go func() { serveErr <- metricsSrv.Serve(mln) }()
	}

	n, err := driver.Restore()
	if err != nil {
		log.Error("re-attaching streams", "err", err)
	}
	e.Overflow.ReplayLeftover(pool, defaults.Loki, log)
	driver.StartJanitor(e.Retention)
	ready.Store(true)
	log.Info("logferry plugin ready", "version", build.Version, "revision", build.Revision, "go", build.GoVersion, "socket", e.Socket, "metrics", e.MetricsAddr, "reattached", n,
		"default_endpoint", defaults.Loki.Endpoint(), "host", e.Host)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case s := <-sig:
		log.Info("shutting down", "signal", s.String())
	case err := <-serveErr:
		if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			log.Error("server failed", "err", err)
		}
	}
	// The daemon kills a plugin 10 s after SIGTERM: flush for up to 7 s
	// (less if DRAIN_TIMEOUT says so), then what is left is spooled.
	ctx, cancel := context.WithTimeout(context.Background(), min(shutdownFlush, e.DrainTimeout))
	defer cancel()
	ln.Close()
	driver.Shutdown(ctx)
	if metricsSrv != nil {
		_ = metricsSrv.Shutdown(ctx)
	}
	log.Info("stopped")
	return nil
}
