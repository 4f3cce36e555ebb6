package pipeline

import (
	"go.yaml.in/yaml/v3"
)

// templateStage sets an extracted value (source, created if missing) to a
// template's output. The template sees the extracted values and the
// labels the entry started with by name, .Value (source's value) and
// .Entry (the line). A template that fails, or whose output passes
// MaxValueBytes, leaves the value unchanged and is counted.
type templateStage struct {
	source string
	tmpl   *lineTemplate
}

func compileTemplate(ps *parser, at *position, n *yaml.Node) (stage, error) {
	fs, err := ps.fields(at, n, "source", "template")
	if err != nil {
		return nil, err
	}
	source, err := ps.required(at, "source", fs)
	if err != nil {
		return nil, err
	}
	text, err := ps.required(at, "template", fs)
	if err != nil {
		return nil, err
	}
	t, err := compileLineTemplate(text)
	if err != nil {
		return nil, ps.errorf(at, "template", fs["template"].Line, err)
	}
	return &templateStage{source: source, tmpl: t}, nil
}

func (*templateStage) kind() kind { return kindTemplate }

func (s *templateStage) run(p *Pipeline, e *Entry) {
	v, ok := e.get(s.source)
	out, err := s.tmpl.execute(&p.out, p.templateData(e, v.any(), ok))
	if err != nil {
		p.fail(kindTemplate)
		return
	}
	e.setString(s.source, out)
}
