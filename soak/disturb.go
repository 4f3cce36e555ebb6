package soak

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Disturbance kinds.
const (
	kindLoki    = "loki-restart"
	kindSidecar = "sidecar-sigkill"
	kindPlugin  = "plugin-disable-enable"
)

// Window is one disturbance: from Start until the disturbed part answered
// again (End); Err says what went wrong doing it. Settled, when later than
// End, is when the lines written during it were all queryable (see
// settle): until then later lines wait behind them, so they belong to the
// disturbance, not to the steady state.
type Window struct {
	Kind       string
	Start, End time.Time
	Settled    time.Time
	Err        error
}

// settle returns ws with Settled set: when the last sampled line written
// from 2 s before the disturbance until 2 s after its end became queryable
// (for a Loki outage: its backlog drained).
func settle(ws []Window, ls []Latency) []Window {
	out := append([]Window(nil), ws...)
	for i, w := range out {
		if w.End.IsZero() {
			continue
		}
		from, to := w.Start.Add(-windowBefore), w.End.Add(windowBefore)
		for _, l := range ls {
			if !l.Write.Before(from) && !l.Write.After(to) && l.Upper.After(out[i].Settled) {
				out[i].Settled = l.Upper
			}
		}
	}
	return out
}

// event is a planned disturbance, At after the start of the run.
type event struct {
	At   time.Duration
	Kind string
}

// plan spreads the disturbances over a run: Loki every LokiEvery, the
// sidecar SIGKILL and the plugin disable/enable every hour. A run shorter
// than a period gets one of that kind at a fixed share of its length, late,
// so that a short form sees each once and keeps a steady stretch after the
// warm-up for the leak fits. Nothing starts in the last
// two minutes (the last sixth of a short run): the end is for draining.
func plan(cfg Config) []event {
	var evs []event
	last := cfg.Duration - min(cfg.Duration/6, 2*time.Minute)
	periodic := func(every time.Duration, offset time.Duration, share float64, kind string) {
		if every <= 0 {
			return
		}
		n := 0
		for at := offset; at <= last; at += every {
			if at >= cfg.Warmup {
				evs = append(evs, event{At: at, Kind: kind})
				n++
			}
		}
		if n == 0 {
			evs = append(evs, event{At: time.Duration(share * float64(cfg.Duration)), Kind: kind})
		}
	}
	periodic(cfg.LokiEvery, cfg.LokiEvery, 0.62, kindLoki)
	periodic(cfg.SidecarKillEvery, cfg.SidecarKillEvery/2, 0.78, kindSidecar)
	periodic(cfg.PluginCycleEvery, cfg.PluginCycleEvery*3/4, 0.86, kindPlugin)
	slices.SortFunc(evs, func(a, b event) int { return int(a.At - b.At) })
	return evs
}

// disturber carries out the plan and keeps the windows.
type disturber struct {
	e *env

	mu      sync.Mutex
	windows []Window
}

func (d *disturber) all() []Window {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Window(nil), d.windows...)
}

// until is when w's effect ends: its end or, later, when its backlog
// settled; a window still open at now lasts until now.
func (w Window) until(now time.Time) time.Time {
	end := w.End
	if end.IsZero() {
		end = now
	}
	if w.Settled.After(end) {
		end = w.Settled
	}
	return end
}

// inWindows reports whether t falls in a disturbance window (to its
// Settled time if later than its End) widened by before and after.
func inWindows(ws []Window, t time.Time, before, after time.Duration) bool {
	for _, w := range ws {
		if !t.Before(w.Start.Add(-before)) && !t.After(w.until(t).Add(after)) {
			return true
		}
	}
	return false
}

func (d *disturber) run(ctx context.Context, start time.Time, evs []event) {
	for _, ev := range evs {
		if !sleepCtx(ctx, time.Until(start.Add(ev.At))) {
			return
		}
		d.mu.Lock()
		d.windows = append(d.windows, Window{Kind: ev.Kind, Start: time.Now()})
		i := len(d.windows) - 1
		d.mu.Unlock()
		err := d.do(ctx, ev.Kind)
		d.mu.Lock()
		d.windows[i].End, d.windows[i].Err = time.Now(), err
		w := d.windows[i]
		d.mu.Unlock()
		if err != nil {
			d.e.logf("disturbance %s failed: %v", ev.Kind, err)
		} else {
			d.e.logf("disturbance %s: back after %v", ev.Kind, w.End.Sub(w.Start).Round(time.Millisecond))
			if ev.Kind == kindLoki && d.e.drain != nil {
				d.e.drain.outage(w)
			}
		}
	}
}

func (d *disturber) do(ctx context.Context, kind string) error {
	e := d.e
	switch kind {
	case kindLoki:
		e.logf("disturbance: stopping Loki for %v", e.cfg.LokiDown)
		e.loki.Stop()
		sleepCtx(ctx, e.cfg.LokiDown)
		return guard(e.loki.Restart)
	case kindSidecar:
		e.logf("disturbance: SIGKILL to the sidecar, then starting it again")
		e.sc.stop(syscall.SIGKILL)
		return e.sc.start(ctx)
	case kindPlugin:
		e.logf("disturbance: docker plugin disable -f %s, then enable", e.driver)
		dctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		if _, stderr, err := e.d.DockerCtx(dctx, "plugin", "disable", "-f", e.driver); err != nil {
			return fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr))
		}
		if _, stderr, err := e.d.DockerCtx(dctx, "plugin", "enable", e.driver); err != nil {
			return fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr))
		}
		return waitReady(dctx, e.pluginMetrics, nil, time.Minute)
	}
	return fmt.Errorf("unknown disturbance %q", kind)
}
