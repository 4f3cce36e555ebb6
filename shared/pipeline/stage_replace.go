package pipeline

import (
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// replaceStage replaces, in the line or an extracted value, every capture
// group of every match of expression with replace, a template that sees
// the captured text as .Value (and what template stages see). A
// named group's replaced value is also extracted under its name. An
// expression without groups replaces whole matches. Groups nested in an
// earlier replaced group are left as they are.
type replaceStage struct {
	re      *regexp.Regexp
	source  string
	literal string
	tmpl    *lineTemplate
	names   []string
}

func compileReplace(ps *parser, at *position, n *yaml.Node) (stage, error) {
	fs, err := ps.fields(at, n, "expression", "source", "replace")
	if err != nil {
		return nil, err
	}
	expr, err := ps.required(at, "expression", fs)
	if err != nil {
		return nil, err
	}
	s := &replaceStage{}
	if s.re, err = ps.compileRE(at, "expression", fs["expression"], expr); err != nil {
		return nil, err
	}
	s.names = s.re.SubexpNames()
	if s.source, err = ps.str(at, "source", fs["source"]); err != nil {
		return nil, err
	}
	repl, err := ps.str(at, "replace", fs["replace"])
	if err != nil {
		return nil, err
	}
	if strings.Contains(repl, "{{") {
		if s.tmpl, err = compileLineTemplate(repl); err != nil {
			return nil, ps.errorf(at, "replace", fs["replace"].Line, err)
		}
	} else {
		s.literal = repl
	}
	return s, nil
}

func (*replaceStage) kind() kind { return kindReplace }

func (s *replaceStage) run(p *Pipeline, e *Entry) {
	in := e.Line
	if s.source != "" {
		v, ok := e.getString(s.source)
		if !ok {
			return
		}
		in = v
	}
	matches := s.re.FindAllStringSubmatchIndex(in, -1)
	if matches == nil {
		return
	}
	var out []byte
	last := 0
	var extracted []pair
	for _, m := range matches {
		groups := len(m) / 2
		first := 1
		if groups == 1 {
			first = 0
		}
		for g := first; g < groups; g++ {
			start, end := m[2*g], m[2*g+1]
			if start < 0 || start < last {
				continue
			}
			r, ok := s.replacement(p, e, in[start:end])
			if !ok {
				p.fail(kindReplace)
				return
			}
			out = append(out, in[last:start]...)
			out = append(out, r...)
			last = end
			if len(out) > MaxValueBytes {
				p.fail(kindReplace)
				return
			}
			if name := s.names[g]; name != "" {
				extracted = append(extracted, pair{name, r})
			}
		}
	}
	out = append(out, in[last:]...)
	if len(out) > MaxValueBytes {
		p.fail(kindReplace)
		return
	}
	for _, kv := range extracted {
		e.setString(kv.key, kv.value)
	}
	if s.source != "" {
		e.setString(s.source, string(out))
	} else {
		e.Line = string(out)
	}
}

func (s *replaceStage) replacement(p *Pipeline, e *Entry, captured string) (string, bool) {
	if s.tmpl == nil {
		return s.literal, true
	}
	out, err := s.tmpl.execute(&p.out, p.templateData(e, captured, true))
	return out, err == nil
}
