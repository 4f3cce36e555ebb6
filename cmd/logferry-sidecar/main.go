// Command logferry-sidecar is the host agent: flags, file and environment
// to configuration, wiring, signals. Everything else lives in package sidecar.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/logferry/logferry/shared/buildinfo"
	"github.com/logferry/logferry/shared/logopts"
	"github.com/logferry/logferry/shared/loki"
	"github.com/logferry/logferry/shared/obsserver"
	"github.com/logferry/logferry/shared/pipeline"
	"github.com/logferry/logferry/sidecar"
	"github.com/logferry/logferry/sidecar/engine"
	"github.com/logferry/logferry/sidecar/positions"
)

func main() {
	if buildinfo.Asked(os.Args[1:]) {
		fmt.Println(buildinfo.Read().String("logferry-sidecar"))
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "check-config" {
		os.Exit(checkConfig(os.Args[2:]))
	}
	err := run()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "logferry-sidecar:", err)
		os.Exit(1)
	}
}

// checkConfig is `logferry-sidecar check-config [FILE] [flags]`: it
// validates the configuration the sidecar would run with (FILE as
// --config) and prints it merged, or names what is wrong.
func checkConfig(args []string) int {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		args = append([]string{"--config", args[0]}, args[1:]...)
	}
	cfg, err := sidecar.LoadConfig(args, os.Environ(), os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var opts logopts.Options
	if err == nil {
		opts, _, err = cfg.ContainerOptions(nil) // the log options, as every container gets them
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "logferry-sidecar check-config:", err)
		return 1
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(os.Stderr, "logferry-sidecar check-config: warning:", w)
	}
	if err := cfg.WriteEffective(os.Stdout, opts); err != nil {
		fmt.Fprintln(os.Stderr, "logferry-sidecar check-config:", err)
		return 1
	}
	return 0
}

func run() error {
	cfg, err := sidecar.LoadConfig(os.Args[1:], os.Environ(), os.Stderr)
	if err != nil {
		return err
	}
	obsserver.SampleHeapFiner(obsserver.Options{Pprof: cfg.Pprof})
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	for _, w := range cfg.Warnings {
		log.Warn(w)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	build := buildinfo.Read()
	build.Register(reg)
	eng, err := engine.New(cfg.DockerHost, engine.WithLogger(log))
	if err != nil {
		return fmt.Errorf("docker-host: %w", err)
	}
	defer eng.Close()
	host := cfg.HostLabel
	if host == "" {
		hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		host, err = eng.HostName(hctx)
		cancel()
		if err != nil {
			return fmt.Errorf("asking the Engine for its host name (set host-label to skip): %w", err)
		}
	}
	pos, err := positions.Open(cfg.StateDir, positions.Options{ResetCorrupt: true})
	if err != nil {
		return fmt.Errorf("state-dir: %w", err)
	}
	if bad := pos.Recovered(); bad != "" {
		log.Warn("the positions file was corrupt and was moved aside; containers start over", "moved_to", bad)
	}
	metrics := sidecar.NewMetrics(reg)
	cfg.Guards = pipeline.NewGuards(cfg.Guard, reg, log)
	files, err := sidecar.NewFileSource(ctx, cfg, reg, metrics, log)
	if err != nil {
		return err
	}
	pool := loki.NewPool(loki.NewMetrics(reg), log, cfg.DrainTimeout, append(cfg.Overflow.PoolOptions(reg, log),
		loki.WithBacklogDrained(loki.ReturnMemoryAfterBacklog(30*time.Second, log)))...)
	router := sidecar.NewRouter(cfg, eng, pool, pos, files, host, metrics, log)
	if opts, _, err := cfg.ContainerOptions(nil); err == nil {
		cfg.Overflow.ReplayLeftover(pool, opts.Loki, log)
	}

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("/containers", router.ContainersHandler())
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !router.Ready() {
			http.Error(w, "discovering containers", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "ready: shipping %d containers\n", router.Active())
	})
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	srv := obsserver.New(mux, obsserver.Options{Pprof: cfg.Pprof})
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("logferry sidecar starting", "version", build.Version, "revision", build.Revision, "docker_host", eng.Host(), "host", host, "listen", cfg.Listen,
		"state_dir", cfg.StateDir, "containers_dir", cfg.ContainersDir, "pprof", cfg.Pprof,
		"label_overrides", cfg.LabelOverrides, "label_override_tenants", cfg.OverrideTenants)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reloader := sidecar.NewReloader(router, func() (sidecar.Config, error) {
		return sidecar.LoadConfig(os.Args[1:], os.Environ(), io.Discard)
	}, log)
	watched := ""
	if cfg.WatchConfig {
		watched = cfg.File
	}
	reloadDone := make(chan struct{})
	go func() {
		defer close(reloadDone)
		if err := reloader.Run(ctx, hup, watched); err != nil {
			log.Error("watch-config: not watching the configuration file; SIGHUP still reloads", "err", err)
			_ = reloader.Run(ctx, hup, "")
		}
	}()

	runErr := router.Run(ctx)
	<-reloadDone
	// Deliver what is queued within 8 s; positions only cover what Loki
	// accepted, so the rest is read again at the next start.
	sctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	pool.Close(sctx)
	if err := pos.Flush(); err != nil { // the acknowledgements of that last flush
		log.Error("saving positions", "err", err)
	}
	files.Close()
	_ = srv.Shutdown(sctx)
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("metrics server", "err", err)
	}
	log.Info("stopped")
	return runErr
}
