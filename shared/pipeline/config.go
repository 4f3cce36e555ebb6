package pipeline

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/logferry/logferry/shared/labels"
)

// Parse reads the value of loki-pipeline-stages; see ParseOption.
func Parse(text string) (*Pipeline, error) { return ParseOption(OptPipelineStages, text) }

// ParseOption compiles a pipeline from text, naming option in its errors
// (OptPipelineStages, OptPipelineStageFile with the file's contents, or a
// key of the sidecar's configuration). text is a YAML list of stages, each
// a map with one key, the stage's kind, as in the Loki driver's example:
//
//	loki-pipeline-stages: |
//	  - regex:
//	      expression: '(level|lvl|severity)=(?P<level>\w+)'
//	  - labels:
//	      level:
//
// or a map whose one key pipeline_stages holds that list. Empty text (or
// only white space, or an empty list) gives a nil *Pipeline, which
// processes nothing, as the Loki driver accepts an empty option.
//
// Unknown stages and fields, YAML aliases and bad values are errors (see
// StageError); so is a multiline stage anywhere but first (see
// Pipeline.Multiline).
func ParseOption(option, text string) (*Pipeline, error) {
	if strings.TrimSpace(text) == "" {
		return nil, nil
	}
	ps := &parser{option: option}
	if len(text) > MaxConfigBytes {
		return nil, ps.errorf(nil, "", 0, overLimit("%d bytes, more than %d", len(text), MaxConfigBytes))
	}
	var doc yaml.Node // zero (Kind 0) for text of only comments
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		return nil, ps.errorf(nil, "", 0, fmt.Errorf("want a YAML list of stages: %w", err))
	}
	list := &doc
	if list.Kind == 0 {
		return nil, nil // only comments
	}
	if list.Kind == yaml.DocumentNode {
		if len(list.Content) == 0 {
			return nil, nil // only comments
		}
		if len(list.Content) != 1 {
			return nil, ps.errorf(nil, "", 0, errors.New("want one YAML document"))
		}
		list = list.Content[0]
	}
	if list.Kind == yaml.MappingNode {
		if len(list.Content) != 2 || list.Content[0].Value != "pipeline_stages" {
			return nil, ps.errorf(nil, "", list.Line, errors.New("want a YAML list of stages, or a map with only pipeline_stages"))
		}
		list = list.Content[1]
	}
	if isNull(list) {
		return nil, nil
	}
	if list.Kind != yaml.SequenceNode {
		return nil, ps.errorf(nil, "", list.Line, errors.New("want a YAML list of stages"))
	}
	if len(list.Content) == 0 {
		return nil, nil
	}
	prog := &program{option: option}
	ps.prog = prog
	start := 0
	if first := list.Content[0]; first.Kind == yaml.MappingNode && len(first.Content) == 2 && first.Content[0].Value == stageMultiline {
		at := &position{index: 1, kind: stageMultiline}
		ps.stages++
		cfg, err := ps.multiline(at, first.Content[1])
		if err != nil {
			return nil, err
		}
		prog.multiline = cfg
		start = 1
	}
	stages, err := ps.stageList(nil, list.Content[start:], start)
	if err != nil {
		return nil, err
	}
	prog.stages = stages
	slices.Sort(prog.reasons)
	prog.reasons = slices.Compact(prog.reasons)
	return newInstance(prog, nil), nil
}

// parser holds what compiling one configuration counts across stages.
type parser struct {
	option string
	prog   *program
	stages int
}

// position is a stage's place: its 1-based index and kind, under its
// parent match stage.
type position struct {
	parent *position
	index  int
	kind   string
}

func (p *position) String() string {
	if p == nil {
		return ""
	}
	s := fmt.Sprintf("stage %d (%s)", p.index, p.kind)
	if p.parent != nil {
		return p.parent.String() + " > " + s
	}
	return s
}

func (p *position) depth() int {
	d := 0
	for ; p != nil; p = p.parent {
		d++
	}
	return d
}

func (ps *parser) errorf(at *position, field string, line int, err error) error {
	return &StageError{Option: ps.option, Path: at.String(), Field: field, Line: line, Err: err}
}

// stageList compiles the stages of a list; offset is how many items of
// the list came before (a leading multiline stage).
func (ps *parser) stageList(parent *position, items []*yaml.Node, offset int) ([]stage, error) {
	out := make([]stage, 0, len(items))
	for i, item := range items {
		at := &position{parent: parent, index: offset + i + 1, kind: "?"}
		if item.Kind == yaml.AliasNode {
			return nil, ps.errorf(at, "", item.Line, errors.New("YAML aliases are not supported"))
		}
		if item.Kind != yaml.MappingNode || len(item.Content) != 2 {
			return nil, ps.errorf(at, "", item.Line, errors.New("want a map with one key, the stage's kind (- regex: {...})"))
		}
		key, val := item.Content[0], item.Content[1]
		if key.Kind != yaml.ScalarNode {
			return nil, ps.errorf(at, "", key.Line, errors.New("the stage's kind must be a string"))
		}
		at.kind = key.Value
		if ps.stages++; ps.stages > MaxStages {
			return nil, ps.errorf(at, "", key.Line, overLimit("more than %d stages", MaxStages))
		}
		compile, ok := compiler(key.Value)
		if !ok {
			why, known := unsupported[key.Value]
			if !known {
				why = "unknown stage (logferry supports " + strings.Join(stageKinds, ", ") + ")"
			}
			return nil, ps.errorf(at, "", key.Line, errors.New(why))
		}
		if val.Kind == yaml.AliasNode {
			return nil, ps.errorf(at, "", val.Line, errors.New("YAML aliases are not supported"))
		}
		s, err := compile(ps, at, val)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// Stage kinds and their compilers.
const (
	stageMultiline = "multiline"
)

// compiler returns the compiler of a stage kind. (A switch, not a map: a
// package-level map would refer to compileMatch, which refers back to it.)
func compiler(kind string) (func(*parser, *position, *yaml.Node) (stage, error), bool) {
	switch kind {
	case "regex":
		return compileRegex, true
	case "json":
		return compileJSON, true
	case "logfmt":
		return compileLogfmt, true
	case "labels":
		return compileLabels, true
	case "structured_metadata":
		return compileStructuredMetadata, true
	case "static_labels":
		return compileStaticLabels, true
	case "labeldrop":
		return compileLabelDrop, true
	case "labelallow":
		return compileLabelAllow, true
	case "drop":
		return compileDrop, true
	case "match":
		return compileMatch, true
	case "timestamp":
		return compileTimestamp, true
	case "output":
		return compileOutput, true
	case "template":
		return compileTemplate, true
	case "replace":
		return compileReplace, true
	case "decolorize":
		return compileDecolorize, true
	case "tenant":
		return compileTenant, true
	case "limit":
		return compileLimit, true
	case stageMultiline:
		return func(ps *parser, at *position, n *yaml.Node) (stage, error) {
			return nil, ps.errorf(at, "", n.Line, errors.New("multiline must be the first stage of the pipeline (logferry joins lines before the other stages run)"))
		}, true
	}
	return nil, false
}

// stageKinds are the kinds compiler knows, for error messages.
var stageKinds = []string{
	"decolorize", "drop", "json", "labelallow", "labeldrop", "labels", "limit", "logfmt", "match",
	stageMultiline, "output", "regex", "replace", "static_labels", "structured_metadata", "template",
	"tenant", "timestamp",
}

// unsupported are Promtail stages logferry refuses, with the reason.
var unsupported = map[string]string{
	"docker":             "not needed: logferry decodes Docker's formats before the pipeline; remove this stage",
	"cri":                "not supported: logferry reads Docker's formats, not CRI's",
	"metrics":            "not supported: logferry exports its own metrics, not metrics from log lines",
	"pack":               "not supported",
	"geoip":              "not supported",
	"sampling":           "not supported",
	"eventlogmessage":    "not supported",
	"non_indexed_labels": "renamed structured_metadata in Promtail; use structured_metadata",
	"windowsevent":       "not supported",
}

// fields returns the fields of a stage given as a map, checking each key
// against allowed; a null value (decolorize:) is an empty map.
func (ps *parser) fields(at *position, n *yaml.Node, allowed ...string) (map[string]*yaml.Node, error) {
	if isNull(n) {
		return map[string]*yaml.Node{}, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, ps.errorf(at, "", n.Line, errors.New("want a map of fields"))
	}
	out := make(map[string]*yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, ps.errorf(at, "", k.Line, errors.New("field names must be strings"))
		}
		if !slices.Contains(allowed, k.Value) {
			msg := "unknown field"
			if len(allowed) > 0 {
				msg += " (this stage takes " + strings.Join(allowed, ", ") + ")"
			} else {
				msg += " (this stage takes none)"
			}
			return nil, ps.errorf(at, quoteField(k.Value), k.Line, errors.New(msg))
		}
		if _, dup := out[k.Value]; dup {
			return nil, ps.errorf(at, k.Value, k.Line, errors.New("given twice"))
		}
		if v.Kind == yaml.AliasNode {
			return nil, ps.errorf(at, k.Value, v.Line, errors.New("YAML aliases are not supported"))
		}
		out[k.Value] = v
	}
	return out, nil
}

// quoteField shows a field name from the input safely.
func quoteField(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	q := strconv.Quote(s)
	if q[1:len(q)-1] == s && s != "" {
		return s
	}
	return q
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// str returns a scalar field as a string; null and absent are "".
func (ps *parser) str(at *position, field string, n *yaml.Node) (string, error) {
	if isNull(n) {
		return "", nil
	}
	if n.Kind != yaml.ScalarNode {
		return "", ps.errorf(at, field, n.Line, errors.New("want a string"))
	}
	return n.Value, nil
}

// required is str for a field that must be given and not empty.
func (ps *parser) required(at *position, field string, fs map[string]*yaml.Node) (string, error) {
	n := fs[field]
	s, err := ps.str(at, field, n)
	if err != nil {
		return "", err
	}
	if s == "" {
		line := 0
		if n != nil {
			line = n.Line
		}
		return "", ps.errorf(at, field, line, errors.New("required"))
	}
	return s, nil
}

func (ps *parser) boolean(at *position, field string, n *yaml.Node) (bool, error) {
	s, err := ps.str(at, field, n)
	if err != nil || s == "" {
		return false, err
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, ps.errorf(at, field, n.Line, fmt.Errorf("want true or false, not %q", s))
	}
	return b, nil
}

func (ps *parser) integer(at *position, field string, n *yaml.Node, lo, hi int) (int, bool, error) {
	s, err := ps.str(at, field, n)
	if err != nil || s == "" {
		return 0, false, err
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < lo || v > hi {
		return 0, false, ps.errorf(at, field, n.Line, fmt.Errorf("want an integer from %d to %d, not %q", lo, hi, s))
	}
	return v, true, nil
}

func (ps *parser) number(at *position, field string, n *yaml.Node, lo, hi float64) (float64, bool, error) {
	s, err := ps.str(at, field, n)
	if err != nil || s == "" {
		return 0, false, err
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || !(v >= lo && v <= hi) {
		return 0, false, ps.errorf(at, field, n.Line, fmt.Errorf("want a number from %g to %g, not %q", lo, hi, s))
	}
	return v, true, nil
}

func (ps *parser) duration(at *position, field string, n *yaml.Node) (time.Duration, bool, error) {
	s, err := ps.str(at, field, n)
	if err != nil || s == "" {
		return 0, false, err
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, false, ps.errorf(at, field, n.Line, fmt.Errorf("want a positive Go duration (3s, 1m30s), not %q", s))
	}
	return d, true, nil
}

// pair is one entry of a stage's name map.
type pair struct{ key, value string }

// stringMap reads a map of names to optional strings (labels: {level: }),
// sorted by key so that stages apply it the same way every time.
func (ps *parser) stringMap(at *position, field string, n *yaml.Node) ([]pair, error) {
	if isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, ps.errorf(at, field, n.Line, errors.New("want a map"))
	}
	if len(n.Content)/2 > MaxFieldsPerStage {
		return nil, ps.errorf(at, field, n.Line, overLimit("%d keys, more than %d", len(n.Content)/2, MaxFieldsPerStage))
	}
	out := make([]pair, 0, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || isNull(k) || k.Value == "" {
			return nil, ps.errorf(at, field, k.Line, errors.New("keys must be non-empty strings"))
		}
		if v.Kind != yaml.ScalarNode {
			return nil, ps.errorf(at, joinField(field, k.Value), v.Line, errors.New("want a string or nothing"))
		}
		val := v.Value
		if isNull(v) {
			val = ""
		}
		out = append(out, pair{k.Value, val})
	}
	slices.SortFunc(out, func(a, b pair) int { return strings.Compare(a.key, b.key) })
	for i := 1; i < len(out); i++ {
		if out[i].key == out[i-1].key {
			return nil, ps.errorf(at, joinField(field, out[i].key), n.Line, errors.New("given twice"))
		}
	}
	return out, nil
}

func joinField(field, key string) string {
	if field == "" {
		return quoteField(key)
	}
	return field + "." + quoteField(key)
}

// stringList reads a list of strings; a single string is a list of one
// when one is true (drop's source).
func (ps *parser) stringList(at *position, field string, n *yaml.Node, one bool) ([]string, error) {
	if isNull(n) {
		return nil, nil
	}
	if n.Kind == yaml.ScalarNode && one {
		return []string{n.Value}, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, ps.errorf(at, field, n.Line, errors.New("want a list of strings"))
	}
	if len(n.Content) > MaxFieldsPerStage {
		return nil, ps.errorf(at, field, n.Line, overLimit("%d items, more than %d", len(n.Content), MaxFieldsPerStage))
	}
	out := make([]string, 0, len(n.Content))
	for _, c := range n.Content {
		if c.Kind != yaml.ScalarNode || isNull(c) || c.Value == "" {
			return nil, ps.errorf(at, field, c.Line, errors.New("want non-empty strings"))
		}
		out = append(out, c.Value)
	}
	return out, nil
}

// labelName checks a label name a stage would create: Loki's
// [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__" (reserved), and within
// labels.MaxLabelNameBytes.
func (ps *parser) labelName(at *position, field string, line int, name string) error {
	switch {
	case !labels.IsValidLabelName(name):
		return ps.errorf(at, field, line, fmt.Errorf("%s is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)", quoteField(name)))
	case strings.HasPrefix(name, "__"):
		return ps.errorf(at, field, line, fmt.Errorf("%s: names starting with __ are reserved", quoteField(name)))
	case len(name) > labels.MaxLabelNameBytes:
		return ps.errorf(at, field, line, overLimit("label name of %d bytes, more than %d", len(name), labels.MaxLabelNameBytes))
	}
	return nil
}

// reason checks a drop_counter_reason, which becomes a metric label value:
// short, printable ASCII without quotes or spaces.
func (ps *parser) reason(at *position, field string, n *yaml.Node, def string) (string, error) {
	s, err := ps.str(at, field, n)
	if err != nil {
		return "", err
	}
	if s == "" {
		s = def
	}
	if len(s) > MaxReasonBytes {
		return "", ps.errorf(at, field, n.Line, overLimit("%d bytes, more than %d", len(s), MaxReasonBytes))
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return "", ps.errorf(at, field, n.Line, errors.New("want letters, digits and punctuation without spaces or quotes"))
		}
	}
	ps.prog.reasons = append(ps.prog.reasons, s)
	return s, nil
}
