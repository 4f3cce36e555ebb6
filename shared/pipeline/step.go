package pipeline

import (
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/logferry/logferry/shared/dockerlog"

	"github.com/logferry/logferry/shared/labels"
	"github.com/logferry/logferry/shared/loki"
)

// Step is one container's step from a joined line to the dispatcher's
// entries, the same in both capture styles: it repairs invalid UTF-8
// (counted), joins multiline entries (when the pipeline starts with a
// multiline stage or a preset is set), runs the stages on each entry and
// makes the dispatcher's entry, with the stream, structured metadata and
// tenant the stages left and the final max-line-size cut. Without stages
// and multiline it only repairs and builds the entry.
//
// The caller feeds every line to Line and, for a Step that joins, runs
// StartFlusher and calls FlushAll when the stream ends; each entry comes
// out through the caller's Out with the offset to acknowledge it by.
// Without multiline, Line is called from one goroutine and calls Out
// before it returns. With multiline, Line, Flush and FlushAll may be called
// from two goroutines (the reader and the flusher): they serialize, and
// Out is called with the Step's lock held.
type Step struct {
	inst *Pipeline // nil: no stages
	set  *labels.Set
	meta []loki.LabelPairAdapter // the container's own, when no stage changed it
	// metaSlab is where the entries whose metadata a stage changed get
	// their own copy: cut from one allocation of metaSlabPairs, not one
	// allocation each. An entry keeps its slab alive while it waits.
	metaSlab []loki.LabelPairAdapter
	maxLine  int
	guard    *Guard       // the endpoint's bound on line-derived labels; nil: none
	memo     [2]guardMemo // by source: stdout, stderr
	invalid  prometheus.Counter
	e        Entry
	o        Output // what entry returns: one per Step, so no allocation per line

	wake chan struct{} // tells the flusher the deadline may have moved

	mu      sync.Mutex
	ml      *Multiline // nil: each line is its own entry
	joined  []Joined
	lastAck int64 // the latest Joined.Ack handed on
}

// Output is one entry a Step hands on.
type Output struct {
	Entry  loki.Entry // without Acker and Offset, which are the caller's
	Source string     // stdout or stderr, as captured
	// Offset is what the entry is acknowledged by: the token of its last
	// line the caller can acknowledge (see Line).
	Offset int64
	// Keep is false for an entry a stage dropped (counted in
	// logferry_pipeline_dropped_total): it counts as delivered, and the
	// caller resolves it in order with the others.
	Keep bool
	// Tenant is the Loki tenant a tenant stage chose; "" is the
	// container's own.
	Tenant string
}

// Out receives the entries a Step hands on; o is the Step's own, valid
// during the call.
type Out func(o *Output) error

// StepConfig is what NewStep builds a Step from.
type StepConfig struct {
	Pipeline  *Pipeline        // nil: no stages
	Multiline *MultilineConfig // nil: no joining
	Metrics   *Metrics
	Set       *labels.Set // the container's labels and structured metadata
	MaxLine   int         // max-line-size
	Guard     *Guard      // the endpoint's (Guards.For); nil: none
	// AckFloor is the offset the caller has acknowledged up to already: an
	// entry handed before any of its lines is acknowledgeable carries it.
	AckFloor int64
	// InvalidUTF8 counts the lines whose invalid UTF-8 was replaced; nil:
	// not counted.
	InvalidUTF8 prometheus.Counter
}

// NewStep returns the Step of one container.
func NewStep(c StepConfig) *Step {
	s := &Step{inst: c.Pipeline.Instance(c.Metrics), set: c.Set, maxLine: c.MaxLine,
		guard: c.Guard, invalid: c.InvalidUTF8, lastAck: c.AckFloor}
	// The container's structured metadata as the push carries it, in the
	// Set's order: entry shares it, and tells the stages' pairs from it.
	for _, p := range c.Set.StructuredMetadata {
		s.meta = append(s.meta, loki.LabelPairAdapter{Name: p.Name, Value: p.Value})
	}
	if c.Multiline != nil {
		m := *c.Multiline
		if m.MaxBytes <= 0 || m.MaxBytes > c.MaxLine {
			m.MaxBytes = c.MaxLine
		}
		s.ml = NewMultiline(&m, c.Metrics)
		s.wake = make(chan struct{}, 1)
	}
	return s
}

// SetsTenant reports whether the Step's stages can choose an entry's
// tenant: the caller then hands entries on by Output.Tenant.
func (s *Step) SetsTenant() bool { return s.inst.SetsTenant() }

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
	s.mu.Lock()
	s.lastAck = max(s.lastAck, off)
	s.mu.Unlock()
}

// Joins reports whether the Step joins multiline entries.
func (s *Step) Joins() bool { return s.ml != nil }

// Line takes one line as the joiner left it (data, any bytes; token: the
// offset the caller acknowledges it by, not decreasing) and hands on the
// entries it completes: without multiline, its own entry at once.
func (s *Step) Line(source string, timeNano int64, data []byte, token int64, out Out) error {
	line := string(data)
	if !utf8.ValidString(line) {
		if s.invalid != nil {
			s.invalid.Inc()
		}
		line = dockerlog.ValidUTF8(line)
	}
	if s.ml == nil {
		o := s.entry(source, timeNano, line)
		o.Offset = token
		return out(o)
	}
	s.mu.Lock()
	_, waiting := s.ml.Deadline()
	s.joined = s.ml.Push(s.joined[:0], time.Now(), source, timeNano, line, token)
	err := s.handOn(out)
	_, open := s.ml.Deadline()
	s.mu.Unlock()
	if open && !waiting {
		// The flusher sleeps without a deadline: wake it. A push while an
		// entry is open only moves the deadline later (the last push plus
		// max_wait_time), so the flusher, woken at the earlier one, finds
		// nothing due and sleeps again: one wake-up per max_wait_time, not
		// one per line.
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return err
}

// entry runs the stages on one entry's text (valid UTF-8) and returns what
// to hand on, without its Offset: s.o, overwritten by the next call.
func (s *Step) entry(source string, timeNano int64, line string) *Output {
	o := &s.o
	if s.inst == nil {
		if s.maxLine > 0 && len(line) > s.maxLine {
			line = cutRunes(line, s.maxLine) // a joined entry past the bound
		}
		*o = Output{Entry: loki.Entry{Stream: s.set.Stream(source), TimeNano: timeNano, Line: line, SharedMetadata: s.meta},
			Source: source, Keep: true}
		return o
	}
	s.e.Reset(s.set, source, timeNano, line)
	s.inst.Process(&s.e)
	if s.e.Dropped {
		*o = Output{Source: source}
		return o
	}
	s.e.Finish(s.maxLine)
	memo := &s.memo[0]
	if source == labels.SourceStderr {
		memo = &s.memo[1]
	}
	s.guard.admit(&s.e, s.set.Labels, func() string { return s.inst.Stream(&s.e, s.set) }, memo, timeNano)
	shared, meta := s.meta, []loki.LabelPairAdapter(nil)
	if s.e.MetadataChanged() {
		// The stages added pairs, or changed the container's: an entry
		// that keeps all the container's pairs shares them and owns only
		// the others.
		all, base := s.e.StructuredMetadata, s.set.StructuredMetadata
		if !keepsAll(all, base) {
			shared, base = nil, nil
		}
		meta = s.ownMeta(len(all) - len(base))
		i := 0
		for _, p := range all {
			if len(base) > 0 && p == base[0] {
				base = base[1:]
				continue
			}
			meta[i] = loki.LabelPairAdapter{Name: p.Name, Value: p.Value}
			i++
		}
	}
	*o = Output{Entry: loki.Entry{Stream: s.inst.Stream(&s.e, s.set), TimeNano: s.e.Time, Line: s.e.Line,
		SharedMetadata: shared, Metadata: meta},
		Source: source, Keep: true, Tenant: s.e.Tenant}
	return o
}

// keepsAll reports whether all, sorted by name, holds every pair of base,
// sorted by name, unchanged.
func keepsAll(all, base []labels.Pair) bool {
	for _, p := range all {
		if len(base) == 0 {
			return true
		}
		switch {
		case p.Name < base[0].Name:
		case p == base[0]:
			base = base[1:]
		default: // base[0] was changed or removed
			return false
		}
	}
	return len(base) == 0
}

// metaSlabPairs is how many metadata pairs one slab allocation holds.
const metaSlabPairs = 256

// ownMeta returns n pairs of fresh memory, cut from the slab.
func (s *Step) ownMeta(n int) []loki.LabelPairAdapter {
	if cap(s.metaSlab)-len(s.metaSlab) < n {
		s.metaSlab = make([]loki.LabelPairAdapter, 0, max(metaSlabPairs, n))
	}
	at := len(s.metaSlab)
	s.metaSlab = s.metaSlab[:at+n]
	return s.metaSlab[at : at+n : at+n]
}

// Flush hands on the entries that waited MaxWait for another line.
func (s *Step) Flush(now time.Time, out Out) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.joined = s.ml.Flush(s.joined[:0], now)
	return s.handOn(out)
}

// FlushAll hands on every open entry: at the stream's end. Without
// multiline there is none.
func (s *Step) FlushAll(out Out) error {
	if s.ml == nil {
		return nil
	}
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
		o := s.entry(j.Source, j.TimeNano, j.Line)
		o.Offset = s.lastAck
		if err := out(o); err != nil {
			return err
		}
	}
	return nil
}
