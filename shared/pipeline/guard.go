package pipeline

import (
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/logferry/logferry/shared/labels"
)

// OverflowValue replaces a label value taken from a line once its label,
// or its endpoint's streams, are over the guard's bound.
const OverflowValue = "__overflow__"

// Guard defaults: far above what a label meant for grouping has, far below
// what a user id or a request path turns into.
const (
	DefaultMaxLabelValues = 1000
	DefaultMaxStreams     = 10000
	// guardIdle is how long a value or stream counts as active after its
	// last entry: Loki's chunk_idle_period default is 30m.
	guardIdle = 30 * time.Minute
)

// GuardConfig bounds, per endpoint, what pipelines take from lines into
// labels: distinct values per label, and streams those labels make. Zero
// fields take the defaults.
type GuardConfig struct {
	MaxLabelValues int // max-label-values
	MaxStreams     int // max-streams
}

// Guards holds one Guard per endpoint; safe for concurrent use.
type Guards struct {
	cfg      GuardConfig
	overflow *prometheus.CounterVec
	log      *slog.Logger
	now      func() time.Time

	mu     sync.Mutex
	guards map[string]*Guard
}

// NewGuards returns the guards of a binary; reg gets
// logferry_labels_overflow_total{label} (nil: not registered).
func NewGuards(cfg GuardConfig, reg prometheus.Registerer, log *slog.Logger) *Guards {
	if cfg.MaxLabelValues <= 0 {
		cfg.MaxLabelValues = DefaultMaxLabelValues
	}
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = DefaultMaxStreams
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &Guards{cfg: cfg, log: log, now: time.Now, guards: map[string]*Guard{},
		overflow: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logferry_labels_overflow_total",
			Help: "Entries shipped with a line-derived label set to " + OverflowValue + " because the label had too many distinct values (max-label-values) or its endpoint too many streams (max-streams), by label.",
		}, []string{"label"})}
	if reg != nil {
		reg.MustRegister(g.overflow)
	}
	return g
}

// For returns the Guard of the endpoint named key (loki.Config.Key()).
// Guards of endpoints no container uses stay; there is one per endpoint
// configuration, which the operator chooses.
func (gs *Guards) For(key string) *Guard {
	if gs == nil {
		return nil
	}
	gs.mu.Lock()
	defer gs.mu.Unlock()
	g, ok := gs.guards[key]
	if !ok {
		g = &Guard{gs: gs, values: map[string]map[string]time.Time{}, streams: map[string]time.Time{}, logged: map[string]time.Time{}}
		gs.guards[key] = g
	}
	return g
}

// Guard is one endpoint's bound on line-derived labels.
type Guard struct {
	gs *Guards

	mu        sync.Mutex
	values    map[string]map[string]time.Time // label -> value -> last seen
	streams   map[string]time.Time            // streams with line-derived labels -> last seen
	logged    map[string]time.Time            // label -> last warning
	lastSweep time.Time
	gen       atomic.Uint64 // sweeps so far: a guardMemo from before one is void
}

// admit bounds e's labels that differ from base (those a stage set): a
// value past its label's bound becomes OverflowValue; if the stream they
// make is new and the endpoint is at its stream bound, every such label
// becomes OverflowValue. stream formats e's stream.
//
// memo (nil: none), one per Step and source, remembers the last label set
// admitted unchanged: the same set again, in a line captured less than
// guardMemoAge after the one that was admitted, and with no sweep since,
// is admitted without the clock, the lock and the maps (a label taken from
// lines keeps one value for many lines in a row). captured is the line's
// capture time (UnixNano).
func (g *Guard) admit(e *Entry, base []labels.Pair, stream func() string, memo *guardMemo, captured int64) {
	if g == nil || !e.ownLabels {
		return
	}
	gen := g.gen.Load()
	if memo.hit(e.Labels, captured, gen) {
		return
	}
	now := g.gs.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	changed := false
	defer func() {
		if !changed {
			memo.keep(e.Labels, captured, g.gen.Load())
		}
	}()
	if now.Sub(g.lastSweep) > time.Minute {
		g.sweep(now)
	}
	derived := false
	for i, p := range e.Labels {
		if hasPair(base, p) {
			continue
		}
		derived = true
		vals := g.values[p.Name]
		if vals == nil {
			vals = map[string]time.Time{}
			g.values[p.Name] = vals
		}
		if _, ok := vals[p.Value]; !ok && len(vals) >= g.gs.cfg.MaxLabelValues {
			changed = true
			e.Labels[i].Value = OverflowValue
			g.over(now, p.Name, "max-label-values")
			continue
		}
		vals[p.Value] = now
	}
	if !derived {
		return
	}
	s := stream()
	if _, ok := g.streams[s]; !ok && len(g.streams) >= g.gs.cfg.MaxStreams {
		changed = true
		for i, p := range e.Labels {
			if !hasPair(base, p) && p.Value != OverflowValue {
				e.Labels[i].Value = OverflowValue
				g.over(now, p.Name, "max-streams")
			}
		}
		s = stream()
	}
	g.streams[s] = now
}

// guardMemoAge is how long, in capture time, a guardMemo vouches for a
// label set: far within guardIdle, so the set was seen by the Guard
// recently; a sweep in between (Guard.gen) ends it anyway.
const guardMemoAge = int64(time.Second)

// guardMemo is the last label set a Guard admitted unchanged for one
// source of a Step.
type guardMemo struct {
	labels []labels.Pair
	at     int64  // capture time of the line admitted
	gen    uint64 // the Guard's sweep generation then
}

func (m *guardMemo) hit(ls []labels.Pair, captured int64, gen uint64) bool {
	if m == nil || m.labels == nil || m.gen != gen {
		return false
	}
	d := captured - m.at
	return d >= 0 && d < guardMemoAge && slices.Equal(m.labels, ls)
}

func (m *guardMemo) keep(ls []labels.Pair, captured int64, gen uint64) {
	if m != nil {
		m.labels, m.at, m.gen = append(m.labels[:0], ls...), captured, gen
	}
}

// over counts one overflow of label and warns at most once a minute per
// label. Called with g.mu held.
func (g *Guard) over(now time.Time, label, bound string) {
	g.gs.overflow.WithLabelValues(label).Inc()
	if now.Sub(g.logged[label]) >= time.Minute {
		g.logged[label] = now
		g.gs.log.Warn("a label taken from log lines is over its bound; its value is "+OverflowValue,
			"label", label, "bound", bound, "max_label_values", g.gs.cfg.MaxLabelValues, "max_streams", g.gs.cfg.MaxStreams)
	}
}

// sweep forgets values and streams idle for guardIdle. Called with g.mu held.
func (g *Guard) sweep(now time.Time) {
	g.lastSweep = now
	g.gen.Add(1)
	for name, vals := range g.values {
		for v, seen := range vals {
			if now.Sub(seen) > guardIdle {
				delete(vals, v)
			}
		}
		if len(vals) == 0 {
			delete(g.values, name)
		}
	}
	for s, seen := range g.streams {
		if now.Sub(seen) > guardIdle {
			delete(g.streams, s)
		}
	}
}

func hasPair(sorted []labels.Pair, p labels.Pair) bool {
	for _, q := range sorted {
		if q == p {
			return true
		}
	}
	return false
}
