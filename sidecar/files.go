package sidecar

import (
	"context"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/logferry/logferry/sidecar/positions"
	"github.com/logferry/logferry/sidecar/tail"
)

// Files is the FileSource on the host's json-file logs: one fsnotify
// watcher (with a polling fallback) for every container's directory.
type Files struct {
	watcher *tail.Watcher
	m       *tail.Metrics
	log     *slog.Logger
	poll    tailPoll
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

type tailPoll = tail.WatcherConfig

var _ FileSource = (*Files)(nil)

// NewFileSource starts the host's watcher; Close stops it.
// Refused files are counted in sm's logferry_sidecar_files_refused_total.
func NewFileSource(ctx context.Context, cfg Config, reg prometheus.Registerer, sm *Metrics, log *slog.Logger) (*Files, error) {
	m := tail.NewMetricsWithRefusals(reg, sm.filesRefused)
	wc := tail.WatcherConfig{PollInterval: cfg.PollInterval, Fanotify: tail.FanotifyMode(cfg.Fanotify)}
	w, err := tail.NewWatcher(log, wc, m)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	f := &Files{watcher: w, m: m, log: log, poll: wc, cancel: cancel}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		if err := w.Run(ctx); err != nil && ctx.Err() == nil {
			log.Error("file watcher stopped", "err", err)
		}
	}()
	return f, nil
}

// Close stops the watcher and waits for it.
func (f *Files) Close() {
	f.cancel()
	f.wg.Wait()
}

// Open starts following one container's log (Run does the reading).
func (f *Files) Open(path, name string, start *positions.Position, fromOldest bool, maxLine int) (FileTail, error) {
	t, err := tail.New(tail.Config{Path: path, Name: name, Start: start, FromOldest: fromOldest, MaxLineSize: maxLine,
		PollInterval: f.poll.PollInterval, Tick: tail.SteadyTick}, f.watcher, f.m, f.log)
	if err != nil {
		return nil, err // not a nil *tail.Tailer in a FileTail
	}
	return t, nil
}
