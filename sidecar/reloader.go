package sidecar

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Reload results, the values of logferry_sidecar_config_reloads_total's
// result label.
const (
	ReloadApplied = "applied"
	ReloadInvalid = "invalid"
)

// Reloader loads the configuration anew and applies it to a Router, on
// demand (SIGHUP) and, with watch-config, when the --config file changes.
type Reloader struct {
	r    *Router
	load func() (Config, error)
	log  *slog.Logger
}

// NewReloader returns a Reloader of r that loads with load (LoadConfig of
// the command line and environment the sidecar started with).
func NewReloader(r *Router, load func() (Config, error), log *slog.Logger) *Reloader {
	return &Reloader{r: r, load: load, log: log}
}

// Reload loads and applies the configuration once; on any error the
// running configuration stays, and the error says why.
func (rl *Reloader) Reload(why string) error {
	cfg, err := rl.load()
	var changed []string
	if err == nil {
		changed, err = rl.r.Reload(cfg)
	}
	if err != nil {
		rl.r.m.reloads.WithLabelValues(ReloadInvalid).Inc()
		rl.log.Error("configuration not reloaded; the running one stays", "trigger", why, "err", err)
		return err
	}
	rl.r.m.reloads.WithLabelValues(ReloadApplied).Inc()
	rl.log.Info("configuration reloaded", "trigger", why, "changed", changed)
	return nil
}

// Run reloads at every value of hup and, when file is not "", after the
// file changes (its directory is watched: editors replace files), until
// ctx ends. A burst of changes within 200 ms is one reload.
func (rl *Reloader) Run(ctx context.Context, hup <-chan os.Signal, file string) error {
	var events <-chan fsnotify.Event
	var errs <-chan error
	if file != "" {
		w, err := fsnotify.NewWatcher()
		if err != nil {
			return err
		}
		defer w.Close()
		if err := w.Add(filepath.Dir(file)); err != nil {
			return err
		}
		events, errs = w.Events, w.Errors
	}
	base := filepath.Base(file)
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			_ = rl.Reload("SIGHUP")
		case ev := <-events:
			if filepath.Base(ev.Name) == base && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) != 0 {
				debounce.Reset(200 * time.Millisecond)
			}
		case err := <-errs:
			if !errors.Is(err, fsnotify.ErrEventOverflow) {
				rl.log.Warn("watching the configuration file", "err", err)
			}
			debounce.Reset(200 * time.Millisecond)
		case <-debounce.C:
			_ = rl.Reload("config file changed")
		}
	}
}
