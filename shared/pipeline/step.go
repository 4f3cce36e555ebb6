package pipeline

import (
	"github.com/logferry/logferry/shared/labels"
	"github.com/logferry/logferry/shared/loki"
)

// Step is one container's pipeline between the joiner and the dispatcher,
// the same in both capture styles: it runs the stages on a repaired line
// and makes the dispatcher's entry, with the stream and structured
// metadata the stages left and the final max-line-size cut. A Step belongs
// to the goroutine that reads the container; a nil *Step means no pipeline.
type Step struct {
	inst    *Pipeline
	set     *labels.Set
	meta    []loki.LabelPairAdapter // the container's own, when no stage changed it
	maxLine int
	guard   *Guard // the endpoint's bound on line-derived labels; nil: none
	e       Entry
}

// NewStep returns the Step of one container for p (nil: no pipeline, nil
// Step). set and meta are the container's label set and structured
// metadata; maxLine is max-line-size; guard is its endpoint's (Guards.For).
func NewStep(p *Pipeline, m *Metrics, set *labels.Set, meta []loki.LabelPairAdapter, maxLine int, guard *Guard) *Step {
	if p == nil {
		return nil
	}
	return &Step{inst: p.Instance(m), set: set, meta: meta, maxLine: maxLine, guard: guard}
}

// Entry runs the stages on one line (valid UTF-8, as the joiner left it)
// and returns the entry to hand on, without Acker and Offset, which are
// the caller's. keep is false when a stage dropped the line (counted in
// logferry_pipeline_dropped_total): it counts as delivered.
func (s *Step) Entry(source string, timeNano int64, line string) (e loki.Entry, keep bool) {
	s.e.Reset(s.set, source, timeNano, line)
	s.inst.Process(&s.e)
	if s.e.Dropped {
		return loki.Entry{}, false
	}
	s.e.Finish(s.maxLine)
	s.guard.admit(&s.e, s.set.Labels, func() string { return s.inst.Stream(&s.e, s.set) })
	meta := s.meta
	if s.e.MetadataChanged() {
		meta = make([]loki.LabelPairAdapter, len(s.e.StructuredMetadata))
		for i, p := range s.e.StructuredMetadata {
			meta[i] = loki.LabelPairAdapter{Name: p.Name, Value: p.Value}
		}
	}
	return loki.Entry{Stream: s.inst.Stream(&s.e, s.set), TimeNano: s.e.Time, Line: s.e.Line, Metadata: meta}, true
}
