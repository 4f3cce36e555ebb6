package pipeline

import (
	"regexp"

	"go.yaml.in/yaml/v3"
)

// compileRE compiles a regular expression field within MaxRegexBytes.
func (ps *parser) compileRE(at *position, field string, n *yaml.Node, expr string) (*regexp.Regexp, error) {
	if len(expr) > MaxRegexBytes {
		return nil, ps.errorf(at, field, n.Line, overLimit("%d bytes, more than %d", len(expr), MaxRegexBytes))
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, ps.errorf(at, field, n.Line, err)
	}
	return re, nil
}

// regexStage extracts the named groups of expression, matched against the
// line or an extracted value, into the extracted map.
type regexStage struct {
	re     *lineRegexp
	source string
	// names[i] is group i's name, "" for unnamed groups (not extracted).
	names []string
}

func compileRegex(ps *parser, at *position, n *yaml.Node) (stage, error) {
	fs, err := ps.fields(at, n, "expression", "source")
	if err != nil {
		return nil, err
	}
	expr, err := ps.required(at, "expression", fs)
	if err != nil {
		return nil, err
	}
	re, err := ps.compileRE(at, "expression", fs["expression"], expr)
	if err != nil {
		return nil, err
	}
	// A regex without named groups extracts nothing; it is accepted, as a
	// configuration that worked with the Loki driver must work here.
	source, err := ps.str(at, "source", fs["source"])
	if err != nil {
		return nil, err
	}
	return &regexStage{re: newLineRegexp(re), source: source, names: re.SubexpNames()}, nil
}

func (*regexStage) kind() kind { return kindRegex }

func (s *regexStage) run(p *Pipeline, e *Entry) {
	in := e.Line
	if s.source != "" {
		v, ok := e.getString(s.source)
		if !ok {
			return
		}
		in = v
	}
	m := s.re.FindStringSubmatchIndex(in)
	if m == nil {
		return
	}
	for i, name := range s.names {
		if name == "" || m[2*i] < 0 {
			continue
		}
		e.setString(name, in[m[2*i]:m[2*i+1]])
	}
}
