package pipeline

import (
	"errors"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// outputStage replaces the line with an extracted value.
type outputStage struct{ source string }

func compileOutput(ps *parser, at *position, n *yaml.Node) (stage, error) {
	fs, err := ps.fields(at, n, "source")
	if err != nil {
		return nil, err
	}
	source, err := ps.required(at, "source", fs)
	if err != nil {
		return nil, err
	}
	return &outputStage{source: source}, nil
}

func (*outputStage) kind() kind { return kindOutput }

func (s *outputStage) run(_ *Pipeline, e *Entry) {
	if v, ok := e.getString(s.source); ok {
		e.Line = v
	}
}

// decolorizeStage removes ANSI escape sequences (colors, cursor moves:
// ESC [ parameters intermediates final) from the line.
type decolorizeStage struct{}

func compileDecolorize(ps *parser, at *position, n *yaml.Node) (stage, error) {
	if _, err := ps.fields(at, n); err != nil {
		return nil, err
	}
	return decolorizeStage{}, nil
}

func (decolorizeStage) kind() kind { return kindDecolorize }

func (decolorizeStage) run(_ *Pipeline, e *Entry) { e.Line = decolorize(e.Line) }

func decolorize(s string) string {
	i := strings.IndexByte(s, 0x1b)
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i >= 0 {
		b.WriteString(s[:i])
		s = s[i+1:]
		if len(s) > 0 && s[0] == '[' {
			// CSI: parameter bytes 0x30-0x3F, intermediate bytes
			// 0x20-0x2F, one final byte 0x40-0x7E.
			j := 1
			for j < len(s) && s[j] >= 0x30 && s[j] <= 0x3f {
				j++
			}
			for j < len(s) && s[j] >= 0x20 && s[j] <= 0x2f {
				j++
			}
			if j < len(s) && s[j] >= 0x40 && s[j] <= 0x7e {
				j++
			}
			s = s[j:]
		}
		i = strings.IndexByte(s, 0x1b)
	}
	b.WriteString(s)
	return b.String()
}

// tenantStage sets the entry's tenant from an extracted value, a label or
// a fixed value. A value that is not a valid Loki tenant ID is counted and
// ignored.
type tenantStage struct {
	source, label, value string
}

func compileTenant(ps *parser, at *position, n *yaml.Node) (stage, error) {
	fs, err := ps.fields(at, n, "source", "label", "value")
	if err != nil {
		return nil, err
	}
	s := &tenantStage{}
	given := 0
	for _, f := range []struct {
		name string
		dst  *string
	}{{"source", &s.source}, {"label", &s.label}, {"value", &s.value}} {
		if *f.dst, err = ps.str(at, f.name, fs[f.name]); err != nil {
			return nil, err
		}
		if *f.dst != "" {
			given++
		}
	}
	if given != 1 {
		return nil, ps.errorf(at, "", n.Line, errors.New("want exactly one of source, label, value"))
	}
	if s.value != "" {
		if err := validTenant(s.value); err != nil {
			return nil, ps.errorf(at, "value", fs["value"].Line, err)
		}
	}
	ps.prog.setTenant = true
	return s, nil
}

// validTenant checks Loki's rules for tenant IDs: at most 150 bytes of
// letters, digits and !-_.*'(), not "." or "..".
func validTenant(t string) error {
	if t == "" || len(t) > maxTenantBytes || t == "." || t == ".." {
		return fmt.Errorf("a tenant ID has 1 to %d characters and is not . or ..", maxTenantBytes)
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!-_.*'()", c) >= 0) {
			return errors.New("a tenant ID holds only letters, digits and !-_.*'()")
		}
	}
	return nil
}

func (*tenantStage) kind() kind { return kindTenant }

func (s *tenantStage) run(p *Pipeline, e *Entry) {
	var v string
	var ok bool
	switch {
	case s.value != "":
		e.Tenant = s.value
		return
	case s.label != "":
		v, ok = e.label(s.label)
	default:
		v, ok = e.getString(s.source)
	}
	if !ok || v == "" {
		return
	}
	if validTenant(v) != nil {
		p.fail(kindTenant)
		return
	}
	e.Tenant = v
}
