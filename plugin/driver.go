package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/logferry/logferry/shared/labels"
	"github.com/logferry/logferry/shared/logopts"
	"github.com/logferry/logferry/shared/loki"
	"github.com/logferry/logferry/shared/pipeline"
)

// LocalStore keeps each container's lines on local disk for `docker logs`.
type LocalStore interface {
	// Open starts (or continues) the copy of a container.
	Open(containerID string, cfg logopts.FileConfig) (copyWriter, error)
	// Read streams the copy as daemon frames (see ReadConfig).
	Read(ctx context.Context, containerID string, cfg ReadConfig) (io.ReadCloser, error)
}

// ErrNoLocalCopy is returned by ReadLogs for a container that has none.
var ErrNoLocalCopy = errors.New("no local copy of this container's logs")

// Config is the driver's own configuration; per-container settings come
// from log-opts on top of Defaults.
type Config struct {
	// Defaults are the options a container's log-opts are applied to: the
	// plugin's LOKI_URL becomes Defaults.Loki.URL.
	Defaults logopts.Options
	// Host is the value of the host label (the plugin uses its hostname,
	// which with network host is the machine's).
	Host string
	// Guards bound the labels pipelines take from lines, per endpoint
	// (MAX_LABEL_VALUES, MAX_STREAMS); nil: no bound.
	Guards *pipeline.Guards
	// StopGrace bounds how long a stopped stream waits for the daemon to
	// close its end of the FIFO before the read is ended by force.
	StopGrace time.Duration
	// DrainTimeout bounds how long the record of a stopped stream is kept
	// while Loki has not yet accepted its last lines (so that a restart in
	// that time still re-sends them).
	DrainTimeout time.Duration
	// ReplayMargin is how far before the last acknowledged line a restarted
	// plugin starts re-sending the local copy: stdout and stderr lines are
	// stamped by separate goroutines of the daemon and may be out of order
	// by a little.
	ReplayMargin time.Duration
}

// Defaults of Config.
const (
	DefaultStopGrace    = time.Minute
	DefaultReplayMargin = time.Second
)

// Driver is the registry of streams: every FIFO reader is started, stopped
// and re-attached here, under one lock, so StartLogging and StopLogging are
// idempotent and race-free. Streams share one dispatcher per endpoint
// configuration through the pool.
type Driver struct {
	cfg   Config
	log   *slog.Logger
	pool  *loki.Pool
	state *State
	store LocalStore
	m     *Metrics

	mu      sync.Mutex
	streams map[string]*stream // by FIFO path
	closed  bool
	// finalPos keeps the positions of streams that ended during Shutdown.
	finalPos map[string]int64
	// ackedChanged (capacity 1) wakes savePositions after an ack.
	ackedChanged chan struct{}

	// saveMu serialises the writes of the positions file and guards
	// savedPos, the positions written last (positions.go). Lock order:
	// saveMu, then mu.
	saveMu   sync.Mutex
	savedPos map[string]int64

	wg     sync.WaitGroup // stream and position goroutines
	ctx    context.Context
	cancel context.CancelFunc
}

// NewDriver returns a Driver with no streams. store may be nil (no docker
// logs support).
func NewDriver(cfg Config, pool *loki.Pool, state *State, store LocalStore, m *Metrics, log *slog.Logger) *Driver {
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = DefaultStopGrace
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = loki.DefaultDrainTimeout
	}
	if cfg.ReplayMargin <= 0 {
		cfg.ReplayMargin = DefaultReplayMargin
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &Driver{cfg: cfg, log: log, pool: pool, state: state, store: store, m: m, streams: map[string]*stream{},
		finalPos: map[string]int64{}, ackedChanged: make(chan struct{}, 1), ctx: ctx, cancel: cancel}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.savePositions(ctx)
	}()
	return d
}

// StartLogging validates the container's log-opts and starts reading its
// FIFO. An error names the bad option; the daemon then fails `docker run`
// with it. Starting a FIFO that is already being read does nothing.
//
// A daemon logs a container through one FIFO at a time, and stops the
// previous one first, except across its own restart with live-restore: the
// restored daemon starts a new FIFO for a running container and never
// stops the old one, whose writer (the previous process) is gone. So a new
// FIFO for a container stops the streams of its older FIFOs, as
// StopLogging would: each reads what is left in its pipe and ends. Without
// this each such stream was kept, with its goroutine, pipe and local-copy
// file, until the plugin stopped (found by TestDockerdRestart).
func (d *Driver) StartLogging(file string, info Info) error {
	old := d.olderStreams(file, info.ContainerID)
	for _, s := range old {
		s.log.Info("the daemon logs this container through a new FIFO (it restarted with live-restore): ending the stream of the old one once its pipe is read", "old_fifo", s.file, "new_fifo", file)
		s.stop(d.cfg.StopGrace)
	}
	return d.startLogging(file, info)
}

// olderStreams returns the streams of the container on FIFOs other than
// file that were not stopped (a container started again after a stop has
// its previous stream still reading its pipe: that one was stopped).
func (d *Driver) olderStreams(file, containerID string) []*stream {
	d.mu.Lock()
	defer d.mu.Unlock()
	var old []*stream
	for f, s := range d.streams {
		if f == file || s.info.ContainerID != containerID {
			continue
		}
		s.mu.Lock()
		if !s.stopping {
			old = append(old, s)
		}
		s.mu.Unlock()
	}
	return old
}

func (d *Driver) startLogging(file string, info Info) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("logferry is shutting down")
	}
	if _, ok := d.streams[file]; ok {
		return nil
	}
	s, err := d.newStream(file, info, false)
	if err != nil {
		return err
	}
	s.started = time.Now().UnixNano()
	if err := d.state.Save(record{File: file, Info: info, Started: s.started}); err != nil {
		d.discard(s)
		d.m.startErrors.WithLabelValues("state").Inc()
		return fmt.Errorf("logferry: recording the stream for re-attach: %w", err)
	}
	d.launch(s)
	d.m.started.Inc()
	return nil
}

// newStream builds everything a stream needs; on error nothing is left
// open. Called with d.mu held.
func (d *Driver) newStream(file string, info Info, reattach bool) (*stream, error) {
	return d.buildStream(file, info, reattach, false)
}

// buildStream is newStream; with fifoGone the stream only re-sends its
// local copy (its container stopped while the plugin was down).
func (d *Driver) buildStream(file string, info Info, reattach, fifoGone bool) (*stream, error) {
	opts, err := logopts.Parse(d.cfg.Defaults, info.Config)
	if err != nil {
		d.m.startErrors.WithLabelValues("options").Inc()
		return nil, fmt.Errorf("logferry: %w", err)
	}
	builder, err := labels.NewBuilder(opts.Labels, d.cfg.Host)
	if err != nil {
		d.m.startErrors.WithLabelValues("options").Inc()
		return nil, fmt.Errorf("logferry: %w", err)
	}
	set, err := builder.Build(info.Container())
	if err != nil {
		d.m.startErrors.WithLabelValues("labels").Inc()
		return nil, fmt.Errorf("logferry: %w", err)
	}
	d.m.labelValuesTruncated.Add(float64(set.Cuts.ValuesTruncated))
	d.m.labelsDropped.Add(float64(set.Cuts.LabelsDropped))
	if set.Dropped && !reattach {
		d.log.Info("loki-relabel-config drops this container: its lines are kept for docker logs, not shipped",
			"container", info.Container().Name, "container_id", shortID(info.ContainerID))
	}
	disp, err := d.pool.Acquire(opts.Loki)
	if err != nil {
		d.m.startErrors.WithLabelValues("endpoint").Inc()
		return nil, fmt.Errorf("logferry: %w", err)
	}
	name := info.Container().Name
	s := &stream{
		file: file, info: info, opts: opts, set: set, disp: disp,
		log:      d.log.With("container", name, "container_id", shortID(info.ContainerID)),
		m:        d.m.forStream(name),
		done:     make(chan struct{}),
		resolved: make(chan struct{}),
		changed:  d.ackedChanged,
	}
	s.pipe = pipeline.NewStep(pipeline.StepConfig{Pipeline: opts.Pipeline, Multiline: opts.MultilineConfig(),
		Metrics: d.m.pipeline, Set: &s.set, MaxLine: opts.MaxLineSize,
		Guard: d.cfg.Guards.For(opts.Loki.Key()), AckFloor: s.acked.Load(), InvalidUTF8: d.m.invalidUTF8})
	if s.pipe.SetsTenant() {
		s.fan = loki.NewFanout(d.pool, disp, s, d.m.pipeline.TenantOverflow())
	}
	if d.store != nil && !opts.File.NoFile {
		if s.copy, err = d.store.Open(info.ContainerID, opts.File); err != nil {
			d.pool.Release(disp)
			d.m.startErrors.WithLabelValues("local_copy").Inc()
			return nil, fmt.Errorf("logferry: opening the local copy for docker logs: %w", err)
		}
	}
	if fifoGone {
		return s, nil
	}
	if s.fifo, s.keeper, err = openFIFO(file, reattach); err != nil {
		if s.copy != nil {
			s.copy.Close()
		}
		d.pool.Release(disp)
		d.m.startErrors.WithLabelValues("fifo").Inc()
		return nil, fmt.Errorf("logferry: opening the log FIFO: %w", err)
	}
	return s, nil
}

// discard undoes newStream for a stream that was never launched.
func (d *Driver) discard(s *stream) {
	if s.fifo != nil {
		s.fifo.Close()
	}
	if s.keeper != nil {
		s.keeper.Close()
	}
	if s.copy != nil {
		s.copy.Close()
	}
	s.release(d.pool)
	s.m.forget()
}

// launch registers s and starts its goroutine, which the Driver owns and
// waits for. Called with d.mu held.
func (d *Driver) launch(s *stream) {
	d.streams[s.file] = s
	d.m.streams.Inc()
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		s.run(d.ctx)
		s.release(d.pool) // the dispatchers keep flushing what s handed them
		d.m.streams.Dec()
		d.m.draining.Inc()
		defer d.m.draining.Dec()
		// Keep the record until Loki has the last line: a restart in the
		// meantime re-sends from the local copy.
		t := time.NewTimer(d.cfg.DrainTimeout)
		select {
		case <-s.resolved:
		case <-t.C:
			s.log.Warn("Loki did not accept the stream's last lines in time; forgetting it", "drain_timeout", d.cfg.DrainTimeout)
		case <-d.ctx.Done():
		}
		t.Stop()
		d.finish(s)
	}()
}

// finish releases what a stream held once its reader has ended. A stream
// ended by Shutdown keeps its record, so the next process re-attaches.
func (d *Driver) finish(s *stream) {
	d.mu.Lock()
	if d.streams[s.file] == s {
		delete(d.streams, s.file)
	}
	shuttingDown := d.closed
	if shuttingDown {
		d.finalPos[s.file] = s.acked.Load()
	}
	d.mu.Unlock()
	s.m.forget()
	if !shuttingDown {
		if err := d.state.Delete(s.file); err != nil {
			s.log.Error("deleting the stream's state record", "err", err)
		}
	}
	s.log.Debug("stream ended")
}

// StopLogging answers at once: the stream reads what is left in the FIFO
// after the daemon closes it, and the dispatcher delivers it afterwards.
// Stopping an unknown FIFO does nothing.
func (d *Driver) StopLogging(file string) error {
	start := time.Now()
	d.mu.Lock()
	s, ok := d.streams[file]
	d.mu.Unlock()
	if ok {
		s.stop(d.cfg.StopGrace)
	}
	d.m.stopSeconds.Observe(time.Since(start).Seconds())
	return nil
}

// ReadLogs serves docker logs from the local copy.
func (d *Driver) ReadLogs(ctx context.Context, info Info, cfg ReadConfig) (io.ReadCloser, error) {
	if d.store == nil {
		return nil, ErrNoLocalCopy
	}
	// docker logs right after docker stop: StopLogging returned before the
	// stream read the last of its pipe into the local copy; wait for that
	// (a little: the pipe holds at most 1 MiB).
	d.mu.Lock()
	var ending []*stream
	for _, s := range d.streams {
		if s.info.ContainerID == info.ContainerID {
			s.mu.Lock()
			if s.stopping {
				ending = append(ending, s)
			}
			s.mu.Unlock()
		}
	}
	d.mu.Unlock()
	for _, s := range ending {
		t := time.NewTimer(readLogsWait)
		select {
		case <-s.done:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	return d.store.Read(ctx, info.ContainerID, cfg)
}

// readLogsWait bounds how long ReadLogs waits for a stopping stream to
// read the rest of its pipe.
const readLogsWait = 2 * time.Second

// Active returns the number of streams being read.
func (d *Driver) Active() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.streams)
}

// Shutdown stops reading every FIFO without forgetting them (the next
// process re-attaches) once each has read what its pipe holds now, then
// flushes the dispatchers within ctx.
func (d *Driver) Shutdown(ctx context.Context) {
	d.mu.Lock()
	d.closed = true
	streams := make([]*stream, 0, len(d.streams))
	for _, s := range d.streams {
		streams = append(streams, s)
	}
	d.mu.Unlock()
	for _, s := range streams {
		s.abort()
	}
	for _, s := range streams { // each reads what its pipe holds, then ends
		select {
		case <-s.done:
		case <-ctx.Done():
		}
	}
	// Flush what the dispatchers hold first: their acknowledgements move
	// the positions saved below.
	d.pool.Close(ctx)
	d.savePositionsNow()
	d.cancel()
	d.wg.Wait()
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
