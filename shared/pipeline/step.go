package pipeline

import (
	"sync"
	"time"

	"github.com/logferry/logferry/shared/labels"
	"github.com/logferry/logferry/shared/loki"
)

// Step is one container's pipeline between the joiner and the dispatcher,
// the same in both capture styles: it joins multiline entries (when the
// pipeline starts with a multiline stage or a preset is set), runs the
// stages on each entry and makes the dispatcher's entry, with the stream
// and structured metadata the stages left and the final max-line-size
// cut. A nil *Step means no pipeline and no multiline.
//
// Without multiline, Entry is all a caller needs. With it, the caller
// feeds every line to Line, runs a timer at Deadline that calls Flush, and
// calls FlushAll when the stream ends; each entry comes out through the
// caller's Out with the offset to acknowledge it by. Line, Flush and
// FlushAll may be called from two goroutines (the reader and the timer):
// they serialize, and Out is called with the Step's lock held.
type Step struct {
	inst    *Pipeline // nil: no stages
	set     *labels.Set
	meta    []loki.LabelPairAdapter // the container's own, when no stage changed it
	maxLine int
	guard   *Guard // the endpoint's bound on line-derived labels; nil: none
	e       Entry

	wake chan struct{} // tells the flusher the deadline may have moved

	mu      sync.Mutex
	ml      *Multiline // nil: each line is its own entry
	joined  []Joined
	lastAck int64 // the latest Joined.Ack handed on
}

// Out receives an entry of source to hand on with the offset to
// acknowledge it by,
// or, with keep false, the offset of an entry a stage dropped (counted in
// logferry_pipeline_dropped_total): it counts as delivered, and the caller
// resolves it in order with the others.
type Out func(e loki.Entry, source string, offset int64, keep bool) error

// NewStep returns the Step of one container for p and ml (either may be
// nil: no stages, no multiline; both nil: a nil Step). set and meta are
// the container's label set and structured metadata; maxLine is
// max-line-size; guard is its endpoint's (Guards.For); ackFloor is the
// offset the caller has acknowledged up to already (an entry handed before
// any line is acknowledgeable carries it).
func NewStep(p *Pipeline, ml *MultilineConfig, m *Metrics, set *labels.Set, meta []loki.LabelPairAdapter, maxLine int,
	guard *Guard, ackFloor int64) *Step {
	if p == nil && ml == nil {
		return nil
	}
	s := &Step{inst: p.Instance(m), set: set, meta: meta, maxLine: maxLine, guard: guard, lastAck: ackFloor}
	if ml != nil {
		c := *ml
		if c.MaxBytes <= 0 || c.MaxBytes > maxLine {
			c.MaxBytes = maxLine
		}
		s.ml = NewMultiline(&c, m)
		s.wake = make(chan struct{}, 1)
	}
	return s
}

// StartFlusher runs, for a Step that joins, the timer that hands on
// through out an entry that waited max_wait_time for another line: woken
// by Line, asleep while no entry is open. stop ends it and waits for it;
// call FlushAll after it.
func (s *Step) StartFlusher(out Out) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTimer(time.Hour)
		defer t.Stop()
		for {
			if d, ok := s.Deadline(); ok {
				t.Reset(max(time.Until(d), 0))
			} else {
				t.Reset(time.Hour)
			}
			select {
			case <-quit:
				return
			case <-s.wake:
			case now := <-t.C:
				_ = s.Flush(now, out)
			}
		}
	}()
	return func() { close(quit); <-done }
}

// SetAckFloor sets what an entry handed before any of its lines is
// acknowledgeable carries: the offset the caller had acknowledged up to
// (a restarted plugin learns it after the Step is made).
func (s *Step) SetAckFloor(off int64) {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.lastAck = max(s.lastAck, off)
	s.mu.Unlock()
}

// Joins reports whether the Step joins multiline entries.
func (s *Step) Joins() bool { return s != nil && s.ml != nil }

// Entry runs the stages on one line (valid UTF-8, as the joiner left it)
// and returns the entry to hand on, without Acker and Offset, which are
// the caller's. keep is false when a stage dropped the line (counted in
// logferry_pipeline_dropped_total): it counts as delivered. Only for a
// Step that does not join (Joins false).
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

// Line joins one line (token: the offset the caller acknowledges it by,
// not decreasing) and hands on the entries it completes.
func (s *Step) Line(now time.Time, source string, timeNano int64, line string, token int64, out Out) error {
	s.mu.Lock()
	s.joined = s.ml.Push(s.joined[:0], now, source, timeNano, line, token)
	err := s.handOn(out)
	s.mu.Unlock()
	select { // the flusher's deadline may have moved
	case s.wake <- struct{}{}:
	default:
	}
	return err
}

// Flush hands on the entries that waited MaxWait for another line.
func (s *Step) Flush(now time.Time, out Out) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.joined = s.ml.Flush(s.joined[:0], now)
	return s.handOn(out)
}

// FlushAll hands on every open entry: at the stream's end.
func (s *Step) FlushAll(out Out) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.joined = s.ml.FlushAll(s.joined[:0])
	return s.handOn(out)
}

// Deadline is when Flush has work; ok is false while no entry is open.
func (s *Step) Deadline() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ml.Deadline()
}

// handOn passes s.joined to out, each with the offset it is acknowledged
// by: its Ack, or (AckOK false: a line of another source pushed before it
// is still open) the last Ack handed on. Called with s.mu held.
func (s *Step) handOn(out Out) error {
	for _, j := range s.joined {
		if j.AckOK {
			s.lastAck = j.Ack
		}
		e, keep := s.Entry(j.Source, j.TimeNano, j.Line)
		if err := out(e, j.Source, s.lastAck, keep); err != nil {
			return err
		}
	}
	return nil
}
