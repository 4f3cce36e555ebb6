package pipeline

import (
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/logferry/logferry/shared/labels"
)

// stage is one compiled stage. run may change e and the instance's state
// of the stage; it sets e.Dropped (through p.drop) to stop the pipeline.
// Stages are immutable after Parse and shared by every instance.
type stage interface {
	kind() kind
	run(p *Pipeline, e *Entry)
}

// kind names a stage type in metrics.
type kind uint8

const (
	kindRegex kind = iota
	kindJSON
	kindLogfmt
	kindLabels
	kindStructuredMetadata
	kindStaticLabels
	kindLabelDrop
	kindLabelAllow
	kindDrop
	kindMatch
	kindTimestamp
	kindOutput
	kindTemplate
	kindReplace
	kindDecolorize
	kindTenant
	kindLimit
	numKinds
)

var kindNames = [numKinds]string{
	"regex", "json", "logfmt", "labels", "structured_metadata", "static_labels", "labeldrop",
	"labelallow", "drop", "match", "timestamp", "output", "template", "replace", "decolorize",
	"tenant", "limit",
}

func (k kind) String() string { return kindNames[k] }

// program is a compiled configuration, shared by the instances.
type program struct {
	option    string
	stages    []stage
	multiline *MultilineConfig
	// reasons are every drop reason the stages can count, for the
	// metrics. tsSlots counts the timestamp stages and limits lists the
	// limit stages: each has a slot of per-instance state.
	reasons   []string
	tsSlots   int
	limits    []*limitStage
	setTenant bool
}

// Pipeline is a compiled configuration with the state of one stream: the
// timestamp stage's last time (for action_on_failure fudge) and the limit
// stage's token buckets. Get one from Parse and one per container from
// Instance. A Pipeline is owned by one goroutine.
type Pipeline struct {
	prog *program
	m    *Metrics
	now  func() time.Time

	lastTime []int64
	limiters []*limiter
	// counters resolved once per instance.
	errCounters  [numKinds]prometheus.Counter
	dropCounters map[string]prometheus.Counter
	cutCounter   prometheus.Counter
	// tmplData and out are reused by template executions.
	tmplData map[string]any
	out      boundedBuffer
	streams  streamCache
}

func newInstance(prog *program, m *Metrics) *Pipeline {
	p := &Pipeline{
		prog:     prog,
		m:        m,
		now:      time.Now,
		lastTime: make([]int64, prog.tsSlots),
		limiters: make([]*limiter, len(prog.limits)),
	}
	for i, l := range prog.limits {
		p.limiters[i] = newLimiter(l)
	}
	if m != nil {
		for k := range numKinds {
			p.errCounters[k] = m.errors.WithLabelValues(k.String())
		}
		p.dropCounters = make(map[string]prometheus.Counter, len(prog.reasons)+2)
		for _, r := range prog.reasons {
			p.dropCounters[r] = m.dropCounter(r)
		}
		p.cutCounter = m.cuts
	}
	return p
}

// Instance returns a pipeline with p's stages and fresh state, counted in
// m (nil: not counted): one per container, all from one Parse. A nil p
// gives nil.
func (p *Pipeline) Instance(m *Metrics) *Pipeline {
	if p == nil {
		return nil
	}
	return newInstance(p.prog, m)
}

// Multiline returns the configuration of a leading multiline stage, nil
// when there is none. The caller joins lines with a Multiline built from
// it before Process, which does not join.
func (p *Pipeline) Multiline() *MultilineConfig {
	if p == nil {
		return nil
	}
	return p.prog.multiline
}

// SetsTenant reports whether a tenant stage can change an entry's tenant.
// A caller that must not let this configuration choose where entries go
// (the sidecar's label overrides) refuses it.
func (p *Pipeline) SetsTenant() bool { return p != nil && p.prog.setTenant }

// DropReasons returns the reasons the stages count drops under, sorted.
func (p *Pipeline) DropReasons() []string {
	if p == nil {
		return nil
	}
	return slices.Clone(p.prog.reasons)
}

// Process runs the stages over e. A stage that drops the entry sets
// e.Dropped and e.DropReason and stops the others; the drop is counted
// in logferry_pipeline_dropped_total, and the caller only resolves the
// entry (its lines count as delivered). Runtime failures (a time that does
// not parse, a template that fails) follow Promtail's documented behaviour
// and are counted in logferry_pipeline_errors_total{stage}. Process never
// panics on any input and is deterministic given the entry, the state and
// the clock.
func (p *Pipeline) Process(e *Entry) {
	if p == nil {
		return
	}
	p.runStages(p.prog.stages, e)
	if e.cuts > 0 {
		if p.cutCounter != nil {
			p.cutCounter.Add(float64(e.cuts))
		}
		e.cuts = 0
	}
}

func (p *Pipeline) runStages(stages []stage, e *Entry) {
	for _, s := range stages {
		s.run(p, e)
		if e.Dropped {
			return
		}
	}
}

// fail counts a stage's runtime failure.
func (p *Pipeline) fail(k kind) {
	if c := p.errCounters[k]; c != nil {
		c.Inc()
	}
}

// drop drops e under reason and counts it.
func (p *Pipeline) drop(e *Entry, reason string) {
	e.Dropped, e.DropReason = true, reason
	if p.m == nil {
		return
	}
	c, ok := p.dropCounters[reason]
	if !ok {
		c = p.m.dropCounter(reason)
		p.dropCounters[reason] = c
	}
	c.Inc()
}

// Stream returns the Loki stream of e after Process: base's precomputed
// stream when no stage changed the labels, else one formatted from e's
// labels, remembered for the next entries with the same labels. A nil p
// gives base's.
func (p *Pipeline) Stream(e *Entry, base *labels.Set) string {
	if p == nil || !e.LabelsChanged() {
		return base.Stream(e.Source)
	}
	return p.streams.get(e.Labels, e.Source)
}

// streamCache remembers the last few streams formatted from changed
// labels: a labels stage gives a handful of label sets (levels), each
// formatted once rather than once per entry.
type streamCache struct {
	items [streamCacheSize]streamItem
	next  int
}

const streamCacheSize = 16

type streamItem struct {
	labels []labels.Pair
	source string
	stream string
}

func (c *streamCache) get(ls []labels.Pair, source string) string {
	for i := range c.items {
		it := &c.items[i]
		if it.stream != "" && it.source == source && slices.Equal(it.labels, ls) {
			return it.stream
		}
	}
	kept := slices.Clone(ls)
	s := (&labels.Set{Labels: kept}).Stream(source)
	c.items[c.next] = streamItem{labels: kept, source: source, stream: s}
	c.next = (c.next + 1) % streamCacheSize
	return s
}
