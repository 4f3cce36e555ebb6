package pipeline

import (
	"fmt"
	"slices"

	"go.yaml.in/yaml/v3"

	"github.com/logferry/logferry/shared/labels"
)

// labelsStage sets labels from extracted values (or labels the entry
// started with); a missing or empty value sets nothing.
type labelsStage struct {
	set []pair // key: label name, value: extracted name
}

func compileLabels(ps *parser, at *position, n *yaml.Node) (stage, error) {
	m, err := ps.nameMap(at, n)
	if err != nil {
		return nil, err
	}
	return &labelsStage{set: m}, nil
}

// nameMap reads the map of labels and structured_metadata: new names to
// extracted names (empty: the same name).
func (ps *parser) nameMap(at *position, n *yaml.Node) ([]pair, error) {
	m, err := ps.stringMap(at, "", n)
	if err != nil {
		return nil, err
	}
	if len(m) == 0 {
		return nil, ps.errorf(at, "", n.Line, fmt.Errorf("required: a map of names (name: or name: extracted_name)"))
	}
	for i := range m {
		if err := ps.labelName(at, "", n.Line, m[i].key); err != nil {
			return nil, err
		}
		if m[i].value == "" {
			m[i].value = m[i].key
		}
	}
	return m, nil
}

func (*labelsStage) kind() kind { return kindLabels }

func (s *labelsStage) run(_ *Pipeline, e *Entry) {
	for _, kv := range s.set {
		if v, ok := e.getString(kv.value); ok {
			e.setLabel(kv.key, v)
		}
	}
}

// structuredMetadataStage sets structured-metadata fields from extracted
// values. A name found not in the extracted map but among the entry's
// labels moves from the labels to structured metadata, as Promtail's
// documentation shows for labels from service discovery.
type structuredMetadataStage struct {
	set []pair
}

func compileStructuredMetadata(ps *parser, at *position, n *yaml.Node) (stage, error) {
	m, err := ps.nameMap(at, n)
	if err != nil {
		return nil, err
	}
	return &structuredMetadataStage{set: m}, nil
}

func (*structuredMetadataStage) kind() kind { return kindStructuredMetadata }

func (s *structuredMetadataStage) run(_ *Pipeline, e *Entry) {
	for _, kv := range s.set {
		if v, ok := e.extracted.lookup(kv.value); ok {
			if str, ok := v.str(); ok {
				e.setMetadata(kv.key, str)
			}
			continue
		}
		if v, ok := e.label(kv.value); ok {
			e.setMetadata(kv.key, v)
			e.deleteLabel(kv.value)
		}
	}
}

// staticLabelsStage sets fixed labels.
type staticLabelsStage struct {
	set []pair
}

func compileStaticLabels(ps *parser, at *position, n *yaml.Node) (stage, error) {
	m, err := ps.stringMap(at, "", n)
	if err != nil {
		return nil, err
	}
	if len(m) == 0 {
		return nil, ps.errorf(at, "", n.Line, fmt.Errorf("required: a map of label names to values"))
	}
	for _, kv := range m {
		if err := ps.labelName(at, "", n.Line, kv.key); err != nil {
			return nil, err
		}
		if _, cut := boundLabelValue(kv.value); cut {
			return nil, ps.errorf(at, quoteField(kv.key), n.Line,
				overLimit("a label value holds at most %d bytes of valid UTF-8", labels.MaxLabelValueBytes))
		}
	}
	return &staticLabelsStage{set: m}, nil
}

func (*staticLabelsStage) kind() kind { return kindStaticLabels }

func (s *staticLabelsStage) run(_ *Pipeline, e *Entry) {
	for _, kv := range s.set {
		e.setLabel(kv.key, kv.value)
	}
}

// labelDropStage removes labels; labelAllowStage keeps only the given ones.
type labelDropStage struct{ names []string }
type labelAllowStage struct{ names []string }

func compileLabelDrop(ps *parser, at *position, n *yaml.Node) (stage, error) {
	names, err := ps.labelList(at, n)
	if err != nil {
		return nil, err
	}
	return &labelDropStage{names: names}, nil
}

func compileLabelAllow(ps *parser, at *position, n *yaml.Node) (stage, error) {
	names, err := ps.labelList(at, n)
	if err != nil {
		return nil, err
	}
	return &labelAllowStage{names: names}, nil
}

func (ps *parser) labelList(at *position, n *yaml.Node) ([]string, error) {
	names, err := ps.stringList(at, "", n, false)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, ps.errorf(at, "", n.Line, fmt.Errorf("required: a list of label names"))
	}
	for _, name := range names {
		if err := ps.labelName(at, "", n.Line, name); err != nil {
			return nil, err
		}
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

func (*labelDropStage) kind() kind  { return kindLabelDrop }
func (*labelAllowStage) kind() kind { return kindLabelAllow }

func (s *labelDropStage) run(_ *Pipeline, e *Entry) {
	for _, name := range s.names {
		e.deleteLabel(name)
	}
}

func (s *labelAllowStage) run(_ *Pipeline, e *Entry) {
	e.keepLabels(func(name string) bool {
		_, ok := slices.BinarySearch(s.names, name)
		return ok
	})
}
