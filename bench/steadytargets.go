package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
)

// steadyPlugin is the plugin under a steady load: one FIFO per container,
// opened with StartLogging as the daemon does.
type steadyPlugin struct {
	p       *Plugin
	fifos   []string
	writers []*fifoWriter
	peer    bool // Grafana's driver: no /metrics, none of logferry's counters
}

var _ steadyTarget = (*steadyPlugin)(nil)

func startSteadyPlugin(ctx context.Context, cfg SteadyConfig, dir, lokiURL string, names []string) (steadyTarget, []logWriter, error) {
	env := slices.Clone(cfg.Env)
	if cfg.ProfileDir != "" {
		env = append(env, "PPROF=true")
	}
	p, err := StartPlugin(ctx, PluginConfig{Binary: cfg.Binary, Dir: dir, LokiURL: lokiURL, Env: env})
	if err != nil {
		return nil, nil, err
	}
	t := &steadyPlugin{p: p}
	writers, err := t.open(ctx, dir, names, cfg.LogOpts)
	if err != nil {
		t.close()
		return nil, nil, err
	}
	return t, writers, nil
}

// open makes each container's FIFO and starts logging it, as the daemon
// does when a container starts.
func (t *steadyPlugin) open(ctx context.Context, dir string, names []string, opts map[string]string) ([]logWriter, error) {
	var writers []logWriter
	for _, name := range names {
		fifo := filepath.Join(dir, name+".fifo")
		if err := MakeFIFO(fifo); err != nil {
			return nil, err
		}
		// The daemon holds the write end before StartLogging, and a
		// plugin may open the read end blocking (Grafana's driver does):
		// open both at once.
		type opened struct {
			f   *os.File
			err error
		}
		wch := make(chan opened, 1)
		go func() {
			f, err := OpenWriter(fifo)
			wch <- opened{f, err}
		}()
		if err := t.p.StartLogging(ctx, fifo, ContainerInfo("/"+name, opts)); err != nil {
			// Release the open above: a reader that comes and goes.
			if r, rerr := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0); rerr == nil {
				if o := <-wch; o.f != nil {
					o.f.Close()
				}
				r.Close()
			}
			return nil, err
		}
		t.fifos = append(t.fifos, fifo)
		o := <-wch
		f, err := o.f, o.err
		if err != nil {
			return nil, err
		}
		w := &fifoWriter{f: f, name: name}
		t.writers = append(t.writers, w)
		writers = append(writers, w)
	}
	return writers, nil
}

func (t *steadyPlugin) proc() *child   { return &t.p.child }
func (t *steadyPlugin) listen() string { return t.p.MetricsAddr() }

func (t *steadyPlugin) metrics(ctx context.Context) (Samples, error) {
	if t.peer {
		return Samples{}, nil
	}
	return t.p.Metrics(ctx)
}

// finish stops every stream in the daemon's order (StopLogging, then close
// the FIFO) and the plugin, and fails if the plugin dropped, cut or could
// not decode anything.
func (t *steadyPlugin) finish(ctx context.Context) error {
	m, err := t.metrics(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range []string{"logferry_loki_entries_dropped_total", "logferry_plugin_frames_corrupt_total", "logferry_plugin_lines_truncated_total", "logferry_plugin_local_copy_errors_total"} {
		if m[name] != 0 {
			errs = append(errs, fmt.Errorf("%s = %g", name, m[name]))
		}
	}
	for i, fifo := range t.fifos {
		if err := t.p.StopLogging(ctx, fifo); err != nil {
			errs = append(errs, err)
		}
		if i < len(t.writers) {
			t.writers[i].Close()
		}
	}
	if err := t.p.Stop(); err != nil && !(t.peer && killedBy(err, syscall.SIGTERM)) {
		errs = append(errs, fmt.Errorf("the plugin's exit after SIGTERM: %w", err))
	}
	return errors.Join(errs...)
}

func (t *steadyPlugin) close() {
	for _, w := range t.writers {
		w.Close()
	}
	t.p.Stop()
}

// steadySidecar is the sidecar under a steady load: one json-file log per
// container under a containers directory, the containers listed by a fake
// Engine from the start (running before the sidecar, no saved position).
type steadySidecar struct {
	sc       *Sidecar
	eng      *FakeEngine
	stateDir string
	ids      []string
	writers  []*jsonFileWriter
}

var _ steadyTarget = (*steadySidecar)(nil)

func startSteadySidecar(ctx context.Context, cfg SteadyConfig, dir, lokiURL string, names []string) (steadyTarget, []logWriter, error) {
	eng, err := NewFakeEngine(filepath.Join(dir, "docker.sock"), "steadybench", false)
	if err != nil {
		return nil, nil, err
	}
	t := &steadySidecar{eng: eng, stateDir: filepath.Join(dir, "state")}
	containers := filepath.Join(dir, "containers")
	var writers []logWriter
	for _, name := range names {
		id := ContainerID(name)
		w, err := openJSONFileLog(containers, id)
		if err != nil {
			t.close()
			return nil, nil, err
		}
		t.ids = append(t.ids, id)
		t.writers = append(t.writers, w)
		writers = append(writers, w)
		eng.Add(EngineContainer{ID: id, Name: name}, false)
	}
	args := slices.Clone(cfg.Args)
	if cfg.ProfileDir != "" {
		args = append(args, "--pprof=true")
	}
	t.sc, err = StartSidecar(ctx, SidecarConfig{
		Binary: cfg.Binary, Dir: dir, DockerHost: eng.DockerHost(), ContainersDir: containers,
		LokiURL: lokiURL, Args: args, Env: cfg.Env,
	})
	if err != nil {
		t.close()
		return nil, nil, err
	}
	if err := t.sc.WaitReady(ctx); err != nil {
		t.close()
		return nil, nil, err
	}
	return t, writers, nil
}

func (t *steadySidecar) proc() *child   { return &t.sc.child }
func (t *steadySidecar) listen() string { return t.sc.Listen() }

func (t *steadySidecar) metrics(ctx context.Context) (Samples, error) { return t.sc.Metrics(ctx) }

// finish stops the sidecar and fails if it dropped or cut anything, logged
// a warning, asked the Engine for something unexpected, or did not save
// every container's position at the end of its log.
func (t *steadySidecar) finish(ctx context.Context) error {
	m, err := t.sc.Metrics(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range []string{"logferry_loki_entries_dropped_total", "logferry_sidecar_lines_truncated_total", "logferry_sidecar_tail_lines_skipped_total"} {
		if m[name] != 0 {
			errs = append(errs, fmt.Errorf("%s = %g", name, m[name]))
		}
	}
	if err := t.sc.Stop(); err != nil {
		errs = append(errs, fmt.Errorf("the sidecar's exit after SIGTERM: %w", err))
	}
	if problems, n := t.sc.LogProblems(5); n > 0 {
		errs = append(errs, fmt.Errorf("the sidecar logged %d warnings or errors, the first: %q", n, problems))
	}
	if u := t.eng.Unexpected(); len(u) > 0 {
		errs = append(errs, fmt.Errorf("%w: %q", errEngineUnexpected, u))
	}
	for i, id := range t.ids {
		st, err := os.Stat(t.writers[i].path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		off, err := savedOffset(t.stateDir, id)
		if err != nil {
			errs = append(errs, fmt.Errorf("container %s: %w", id[:12], err))
		} else if off != st.Size() {
			errs = append(errs, fmt.Errorf("container %s: saved offset %d of the log's %d bytes after Loki had every line", id[:12], off, st.Size()))
		}
	}
	return errors.Join(errs...)
}

func (t *steadySidecar) close() {
	for _, w := range t.writers {
		w.Close()
	}
	if t.sc != nil {
		t.sc.Stop()
	}
	t.eng.Close()
}

// killedBy reports whether a child's exit error says signal sig ended it
// (Grafana's driver does not catch SIGTERM).
func killedBy(err error, sig syscall.Signal) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}
