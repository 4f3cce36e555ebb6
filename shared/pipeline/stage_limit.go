package pipeline

import (
	"container/list"
	"errors"
	"math"
	"time"

	"go.yaml.in/yaml/v3"
)

// limitStage drops entries past a rate (lines per second) with a burst,
// for the stream, or for each value of a label (by_label_name: entries
// without the label are not limited; at most max_distinct_labels values
// are tracked, the least recently seen forgotten first).
//
// Promtail's limit with drop: false makes the reader wait. logferry never
// waits: that would block the container's output (the plugin's FIFO) or
// hold a file open behind. Entries past the rate are dropped either way
// and counted under limit_stage.
type limitStage struct {
	rate        float64
	burst       float64
	byLabel     string
	maxDistinct int
	slot        int
}

func compileLimit(ps *parser, at *position, n *yaml.Node) (stage, error) {
	fs, err := ps.fields(at, n, "rate", "burst", "by_label_name", "max_distinct_labels", "drop")
	if err != nil {
		return nil, err
	}
	s := &limitStage{maxDistinct: MaxDistinctLabels}
	var ok bool
	if s.rate, ok, err = ps.number(at, "rate", fs["rate"], math.SmallestNonzeroFloat64, 1e9); err != nil {
		return nil, err
	} else if !ok {
		return nil, ps.errorf(at, "rate", n.Line, errors.New("required: lines per second"))
	}
	burst, ok, err := ps.integer(at, "burst", fs["burst"], 1, 1e9)
	if err != nil {
		return nil, err
	} else if !ok {
		return nil, ps.errorf(at, "burst", n.Line, errors.New("required: lines"))
	}
	s.burst = float64(burst)
	if s.byLabel, err = ps.str(at, "by_label_name", fs["by_label_name"]); err != nil {
		return nil, err
	}
	drop, err := ps.boolean(at, "drop", fs["drop"])
	if err != nil {
		return nil, err
	}
	if s.byLabel != "" {
		if err := ps.labelNameAny(at, "by_label_name", fs["by_label_name"].Line, s.byLabel); err != nil {
			return nil, err
		}
		if !drop {
			return nil, ps.errorf(at, "drop", n.Line, errors.New("must be true with by_label_name"))
		}
	}
	if md, ok, err := ps.integer(at, "max_distinct_labels", fs["max_distinct_labels"], 1, MaxDistinctLabels); err != nil {
		return nil, err
	} else if ok {
		s.maxDistinct = md
	}
	s.slot = len(ps.prog.limits)
	ps.prog.limits = append(ps.prog.limits, s)
	ps.prog.reasons = append(ps.prog.reasons, ReasonLimitStage)
	return s, nil
}

// labelNameAny checks a label name a stage reads (it may be one of ours
// that starts with anything valid).
func (ps *parser) labelNameAny(at *position, field string, line int, name string) error {
	if name != "source" {
		return ps.labelName(at, field, line, name)
	}
	return nil
}

func (*limitStage) kind() kind { return kindLimit }

func (s *limitStage) run(p *Pipeline, e *Entry) {
	l := p.limiters[s.slot]
	now := p.now()
	var b *bucket
	if s.byLabel == "" {
		b = &l.single
	} else {
		v, ok := e.label(s.byLabel)
		if !ok {
			return
		}
		b = l.byValue(v, s.maxDistinct)
	}
	if !b.take(now, s.rate, s.burst) {
		p.drop(e, ReasonLimitStage)
	}
}

// limiter is one instance's state of a limit stage.
type limiter struct {
	single bucket
	// values maps a label value to its element in lru, whose Value is a
	// *valueBucket; the front is the most recently used.
	values map[string]*list.Element
	lru    list.List
}

type valueBucket struct {
	value string
	b     bucket
}

func newLimiter(s *limitStage) *limiter {
	l := &limiter{}
	if s.byLabel != "" {
		l.values = map[string]*list.Element{}
	}
	return l
}

func (l *limiter) byValue(v string, maxDistinct int) *bucket {
	if el, ok := l.values[v]; ok {
		l.lru.MoveToFront(el)
		return &el.Value.(*valueBucket).b
	}
	if l.lru.Len() >= maxDistinct {
		oldest := l.lru.Back()
		delete(l.values, oldest.Value.(*valueBucket).value)
		l.lru.Remove(oldest)
	}
	vb := &valueBucket{value: v}
	l.values[v] = l.lru.PushFront(vb)
	return &vb.b
}

// bucket is a token bucket: it starts full (burst tokens) and refills at
// rate tokens a second.
type bucket struct {
	tokens float64
	last   time.Time
	primed bool
}

func (b *bucket) take(now time.Time, rate, burst float64) bool {
	if !b.primed {
		b.tokens, b.last, b.primed = burst, now, true
	} else if d := now.Sub(b.last); d > 0 {
		b.tokens = min(burst, b.tokens+d.Seconds()*rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return false
}
