package pipeline

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// dropStage drops an entry when every condition given holds (several drop
// stages make an OR):
//
//   - source alone: at least one of the extracted names is present;
//   - expression: the regex matches the line, or, with source, the
//     sources' values joined by separator (every source present);
//   - value (needs source): the joined values equal it exactly;
//   - older_than: the entry's time is older than now minus it;
//   - longer_than: the line is longer than that many bytes.
type dropStage struct {
	sources    []string
	separator  string
	re         *lineRegexp
	value      string
	hasValue   bool
	olderThan  time.Duration
	longerThan int
	reason     string
}

func compileDrop(ps *parser, at *position, n *yaml.Node) (stage, error) {
	fs, err := ps.fields(at, n, "source", "separator", "expression", "value", "older_than", "longer_than", "drop_counter_reason")
	if err != nil {
		return nil, err
	}
	s := &dropStage{separator: ";"}
	if s.sources, err = ps.stringList(at, "source", fs["source"], true); err != nil {
		return nil, err
	}
	if sep, ok := fs["separator"]; ok {
		if s.separator, err = ps.str(at, "separator", sep); err != nil {
			return nil, err
		}
	}
	expr, err := ps.str(at, "expression", fs["expression"])
	if err != nil {
		return nil, err
	}
	if expr != "" {
		re, err := ps.compileRE(at, "expression", fs["expression"], expr)
		if err != nil {
			return nil, err
		}
		s.re = newLineRegexp(re)
	}
	if v, ok := fs["value"]; ok && !isNull(v) {
		if s.value, err = ps.str(at, "value", v); err != nil {
			return nil, err
		}
		s.hasValue = true
		switch {
		case len(s.sources) == 0:
			return nil, ps.errorf(at, "value", v.Line, errors.New("needs source"))
		case s.re != nil:
			return nil, ps.errorf(at, "value", v.Line, errors.New("give value or expression, not both"))
		}
	}
	if s.olderThan, _, err = ps.duration(at, "older_than", fs["older_than"]); err != nil {
		return nil, err
	}
	if lt, ok := fs["longer_than"]; ok {
		str, err := ps.str(at, "longer_than", lt)
		if err != nil {
			return nil, err
		}
		if s.longerThan, err = parseByteSize(str); err != nil {
			return nil, ps.errorf(at, "longer_than", lt.Line, err)
		}
	}
	if len(s.sources) == 0 && s.re == nil && s.olderThan == 0 && s.longerThan == 0 {
		return nil, ps.errorf(at, "", n.Line, errors.New("needs at least one of source, expression, older_than, longer_than"))
	}
	if s.reason, err = ps.reason(at, "drop_counter_reason", fs["drop_counter_reason"], ReasonDropStage); err != nil {
		return nil, err
	}
	return s, nil
}

// parseByteSize reads a size in bytes: an integer with an optional unit
// b, kb, mb, gb (powers of 1024, case ignored, also k, m, g, KiB, MiB, GiB).
func parseByteSize(s string) (int, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil || n <= 0 {
		return 0, errors.New("want a positive size in bytes (8192, 8kb, 1mb)")
	}
	mult := int64(1)
	switch strings.TrimSpace(t[i:]) {
	case "", "b":
	case "k", "kb", "kib":
		mult = 1 << 10
	case "m", "mb", "mib":
		mult = 1 << 20
	case "g", "gb", "gib":
		mult = 1 << 30
	default:
		return 0, errors.New("want a positive size in bytes (8192, 8kb, 1mb)")
	}
	if n > (1<<40)/mult {
		return 0, errors.New("size too large")
	}
	return int(n * mult), nil
}

func (*dropStage) kind() kind { return kindDrop }

func (s *dropStage) run(p *Pipeline, e *Entry) {
	if s.longerThan > 0 && len(e.Line) <= s.longerThan {
		return
	}
	if s.olderThan > 0 && e.Time >= p.now().Add(-s.olderThan).UnixNano() {
		return
	}
	switch {
	case len(s.sources) > 0 && (s.re != nil || s.hasValue):
		v, ok := s.joined(e)
		if !ok {
			return
		}
		if s.hasValue && v != s.value {
			return
		}
		if s.re != nil && !s.re.MatchString(v) {
			return
		}
	case len(s.sources) > 0:
		found := false
		for _, src := range s.sources {
			if _, ok := e.get(src); ok {
				found = true
				break
			}
		}
		if !found {
			return
		}
	case s.re != nil:
		if !s.re.MatchString(e.Line) {
			return
		}
	}
	p.drop(e, s.reason)
}

// joined returns the sources' values joined by the separator, false if one
// is missing.
func (s *dropStage) joined(e *Entry) (string, bool) {
	if len(s.sources) == 1 {
		return e.getString(s.sources[0])
	}
	var b strings.Builder
	for i, src := range s.sources {
		v, ok := e.getString(src)
		if !ok {
			return "", false
		}
		if i > 0 {
			b.WriteString(s.separator)
		}
		b.WriteString(v)
	}
	return b.String(), true
}
