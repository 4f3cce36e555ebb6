package pipeline

import (
	"errors"
	"maps"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/logferry/logferry/shared/labels"
)

func TestParseEmpty(t *testing.T) {
	for _, text := range []string{"", "  \n\t", "[]", "pipeline_stages:", "pipeline_stages: []", "# nothing\n"} {
		p, err := Parse(text)
		if err != nil || p != nil {
			t.Errorf("Parse(%q) = %v, %v; want nil, nil", text, p, err)
		}
		// A nil pipeline processes nothing and keeps the stream.
		e := run(p, "line")
		if e.Line != "line" || e.Dropped || e.LabelsChanged() || p.Stream(e, &baseSet) != baseSet.Stream("stdout") {
			t.Errorf("nil pipeline changed the entry: %+v", e)
		}
		if p.Multiline() != nil || p.SetsTenant() || p.Instance(nil) != nil || p.DropReasons() != nil {
			t.Error("nil pipeline has properties")
		}
	}
}

func TestParseErrors(t *testing.T) {
	long := strings.Repeat("a", MaxRegexBytes+1)
	cases := []struct {
		name  string
		yaml  string
		want  []string // substrings of the message
		limit bool     // wraps ErrLimit
	}{
		{"bad yaml", "- regex: {expression: [", []string{"loki-pipeline-stages: want a YAML list of stages"}, false},
		{"not a list", "regex: {}", []string{"want a YAML list of stages, or a map with only pipeline_stages"}, false},
		{"scalar", "hello", []string{"want a YAML list of stages"}, false},
		{"unknown stage", "- regex: {expression: '(?P<a>a)'}\n- rgex: {}", []string{"stage 2 (rgex)", "unknown stage", "regex"}, false},
		{"unsupported stage", "- cri: {}", []string{"stage 1 (cri)", "not supported"}, false},
		{"two keys", "- regex: {expression: a}\n  labels: {a: }", []string{"stage 1 (?)", "one key"}, false},
		{"unknown field", "- regex: {expresion: '(?P<a>a)'}", []string{"stage 1 (regex)", "expresion: unknown field", "expression, source"}, false},
		{"missing field", "- regex: {source: x}", []string{"stage 1 (regex)", "expression: required"}, false},
		{"bad regex", "- regex: {expression: '(?P<a>'}", []string{"stage 1 (regex) (line 1): expression: error parsing regexp"}, false},
		{"regex too long", "- regex: {expression: '(?P<a>" + long + ")'}", []string{"expression", "bytes, more than"}, true},
		{"nested position", "- json: {expressions: {a: }}\n- labels: {a: }\n- match:\n    selector: '{a=\"b\"}'\n    stages:\n    - regex: {expression: '('}",
			[]string{"stage 3 (match) > stage 1 (regex) (line 6): expression"}, false},
		{"bad selector", "- match: {selector: '{a=b}', action: drop}", []string{"stage 1 (match)", "selector", "want a quoted string"}, false},
		{"selector parser", "- match: {selector: '{a=\"b\"} | json', action: drop}", []string{"selector", "not supported"}, false},
		{"selector or", "- match: {selector: '{a=\"b\"} |= \"x\" or \"y\"', action: drop}", []string{"selector", `"or"`}, false},
		{"selector bad regex", "- match: {selector: '{a=~\"(\"}', action: drop}", []string{"selector", "regex"}, false},
		{"match drop with stages", "- match: {selector: '{a=\"b\"}', action: drop, stages: [{decolorize: }]}", []string{"stages: not allowed with action drop"}, false},
		{"match keep without stages", "- match: {selector: '{a=\"b\"}'}", []string{"stages: required"}, false},
		{"bad action", "- match: {selector: '{a=\"b\"}', action: maybe}", []string{"action: want keep or drop"}, false},
		{"bad template", "- template: {source: a, template: '{{ .a '}", []string{"stage 1 (template)", "template:"}, false},
		{"template range", "- template: {source: a, template: '{{ range 100000000 }}x{{ end }}'}", []string{"{{range}} is not supported"}, false},
		{"template define", "- template: {source: a, template: '{{ define \"x\" }}{{ end }}'}", []string{"not supported"}, false},
		{"template unknown func", "- template: {source: a, template: '{{ env \"HOME\" }}'}", []string{`function "env" not defined`}, false},
		{"template dynamic regex", "- template: {source: a, template: '{{ regexMatch .p .Value }}'}", []string{"pattern must be a quoted constant"}, false},
		{"template too long", "- template: {source: a, template: '" + strings.Repeat("x", MaxTemplateBytes+1) + "'}", []string{"template"}, true},
		{"replace bad template", "- replace: {expression: '(a)', replace: '{{ .Value'}", []string{"stage 1 (replace)", "replace:"}, false},
		{"bad timestamp format", "- timestamp: {source: t, format: 'yesterday'}", []string{"stage 1 (timestamp)", "format", "neither a format name"}, false},
		{"bad fallback", "- timestamp: {source: t, format: Unix, fallback_formats: [RFC3339, nope]}", []string{"fallback_formats[1]"}, false},
		{"bad location", "- timestamp: {source: t, format: Unix, location: Mars/Olympus}", []string{"location"}, false},
		{"bad action_on_failure", "- timestamp: {source: t, format: Unix, action_on_failure: panic}", []string{"action_on_failure: want fudge or skip"}, false},
		{"bad label name", "- labels: {'bad-name': }", []string{"stage 1 (labels)", "not a label name"}, false},
		{"reserved label name", "- static_labels: {__name__: x}", []string{"reserved"}, false},
		{"static value too long", "- static_labels: {a: " + strings.Repeat("v", labels.MaxLabelValueBytes+1) + "}", []string{"stage 1 (static_labels)"}, true},
		{"labeldrop not a list", "- labeldrop: {a: b}", []string{"want a list of strings"}, false},
		{"drop nothing", "- drop: {}", []string{"needs at least one of"}, false},
		{"drop value and expression", "- drop: {source: a, value: b, expression: c}", []string{"value: give value or expression"}, false},
		{"drop value without source", "- drop: {value: b}", []string{"value: needs source"}, false},
		{"drop bad size", "- drop: {longer_than: 8 parsecs}", []string{"longer_than"}, false},
		{"drop bad duration", "- drop: {older_than: yesterday}", []string{"older_than"}, false},
		{"drop bad reason", "- drop: {expression: x, drop_counter_reason: 'a b'}", []string{"drop_counter_reason"}, false},
		{"json bad jmespath", "- json: {expressions: {a: 'foo[?'}}", []string{"stage 1 (json)", "expressions.a", "JMESPath"}, false},
		{"json no expressions", "- json: {source: x}", []string{"expressions: required"}, false},
		{"json bad bool", "- json: {expressions: {a: }, drop_malformed: perhaps}", []string{"drop_malformed"}, false},
		{"logfmt no mapping", "- logfmt: {}", []string{"mapping: required"}, false},
		{"tenant two", "- tenant: {source: a, value: b}", []string{"exactly one of"}, false},
		{"tenant bad value", "- tenant: {value: 'a/b'}", []string{"value", "tenant ID"}, false},
		{"limit no rate", "- limit: {burst: 1}", []string{"rate: required"}, false},
		{"limit label without drop", "- limit: {rate: 1, burst: 1, by_label_name: ns}", []string{"drop: must be true"}, false},
		{"limit too many labels", "- limit: {rate: 1, burst: 1, drop: true, by_label_name: ns, max_distinct_labels: 1000000}", []string{"max_distinct_labels"}, false},
		{"multiline not first", "- decolorize:\n- multiline: {firstline: x}", []string{"stage 2 (multiline)", "first stage"}, false},
		{"multiline no firstline", "- multiline: {max_lines: 3}", []string{"stage 1 (multiline)", "firstline: required"}, false},
		{"multiline bad wait", "- multiline: {firstline: x, max_wait_time: 3}", []string{"max_wait_time"}, false},
		{"alias", "- labels: &a {a: }\n- labels: *a", []string{"aliases"}, false},
		{"duplicate field", "- regex: {expression: '(?P<a>a)', expression: '(?P<b>b)'}", []string{"given twice"}, false},
		{"too big", strings.Repeat("#", MaxConfigBytes+1), []string{"bytes, more than"}, true},
		{"too many stages", strings.Repeat("- decolorize:\n", MaxStages+1), []string{"stage 65 (decolorize)", "more than 64 stages"}, true},
		{"too deep", "- match:\n    selector: '{a=\"b\"}'\n    stages:\n    - match:\n        selector: '{a=\"b\"}'\n        stages:\n        - match:\n            selector: '{a=\"b\"}'\n            stages:\n            - match:\n                selector: '{a=\"b\"}'\n                stages:\n                - decolorize:",
			[]string{"stage 1 (match) > stage 1 (match) > stage 1 (match) > stage 1 (match)", "nested"}, true},
		{"too many keys", "- labels: {" + manyKeys(MaxFieldsPerStage+1) + "}", []string{"keys, more than"}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := Parse(c.yaml)
			if err == nil {
				t.Fatalf("Parse accepted it: %v", p)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			if errors.Is(err, ErrLimit) != c.limit {
				t.Errorf("errors.Is(ErrLimit) = %v, want %v: %v", !c.limit, c.limit, err)
			}
			var se *StageError
			if !errors.As(err, &se) || se.Option != OptPipelineStages {
				t.Errorf("not a *StageError naming the option: %#v", err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, OptPipelineStages+": ") {
				t.Errorf("message does not start with the option: %s", msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q does not contain %q", msg, w)
				}
			}
			if len(msg) > 2000 {
				t.Errorf("message of %d bytes", len(msg))
			}
		})
	}
}

func manyKeys(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("k")
		b.WriteString(strings.Repeat("x", i))
		b.WriteString(": ")
	}
	return b.String()
}

func TestParseOptionNamesOption(t *testing.T) {
	_, err := ParseOption(OptPipelineStageFile, "- nope: {}")
	if err == nil || !strings.HasPrefix(err.Error(), OptPipelineStageFile+": stage 1 (nope)") {
		t.Errorf("got %v", err)
	}
}

func TestMultilineStageConfig(t *testing.T) {
	p := mustParse(t, `
- multiline:
    firstline: '^\[\d{4}-\d{2}-\d{2} \d{1,2}:\d{2}:\d{2}\]'
    max_wait_time: 5s
    max_lines: 50
- regex:
    expression: '^(?P<time>\[\d{4}-\d{2}-\d{2} \d{1,2}:\d{2}:\d{2}\]) (?P<message>(?s:.*))$'
`)
	c := p.Multiline()
	if c == nil || c.MaxWait.Seconds() != 5 || c.MaxLines != 50 || c.Name() != "firstline" {
		t.Fatalf("Multiline() = %+v", c)
	}
	// The regex stage runs on the joined entry and captures all of it.
	e := run(p, "[2020-12-03 11:36:23] ERROR in app\nTraceback (most recent call last):\n  File \"x\"")
	if got, _ := e.Extracted("message"); got != "ERROR in app\nTraceback (most recent call last):\n  File \"x\"" {
		t.Errorf("message = %q", got)
	}
}

func TestLabelLimits(t *testing.T) {
	// A value over Loki's limit is cut on a rune boundary; invalid UTF-8
	// is repaired.
	long := strings.Repeat("é", labels.MaxLabelValueBytes) // 2 bytes a rune
	p := mustParse(t, "- logfmt: {mapping: {v: , w: }}\n- labels: {v: , w: }")
	p = p.Instance(NewMetrics(nil))
	e := run(p, "v="+long+" w=a\xffb")
	v := labelMap(e)["v"]
	if len(v) != labels.MaxLabelValueBytes || !utf8.ValidString(v) {
		t.Errorf("value of %d bytes, valid %v", len(v), utf8.ValidString(v))
	}
	if w := labelMap(e)["w"]; w != "a\uFFFDb" {
		t.Errorf("w = %q", w)
	}
	odd := "x" + strings.Repeat("é", labels.MaxLabelValueBytes/2+10)
	e = run(p, "v="+odd)
	if v := labelMap(e)["v"]; len(v) != labels.MaxLabelValueBytes-1 || !utf8.ValidString(v) {
		t.Errorf("odd cut: %d bytes, valid %v", len(v), utf8.ValidString(v))
	}
	if got := testutil.ToFloat64(p.m.cuts); got != 3 {
		t.Errorf("cuts counted %v, want 3", got)
	}

	// No more than MaxLabelsPerStream labels, source included.
	var yaml strings.Builder
	yaml.WriteString("- static_labels: {")
	for i := range 20 {
		yaml.WriteString("l" + strings.Repeat("x", i) + ": v, ")
	}
	yaml.WriteString("}")
	e = run(mustParse(t, yaml.String()), "x")
	if n := len(e.Labels) + 1; n != labels.MaxLabelsPerStream {
		t.Errorf("%d labels with source, want %d", n, labels.MaxLabelsPerStream)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	p := mustParse(t, "- drop: {expression: health, drop_counter_reason: health}\n- regex: {expression: '^(?P<ts>\\S+)'}\n- timestamp: {source: ts, format: RFC3339}").Instance(m)
	p.now = func() time.Time { return t0 }
	for _, line := range []string{"GET /health", "GET /health", "2020-01-01T00:00:00Z ok", "bad-time x"} {
		run(p, line)
	}
	if got := testutil.ToFloat64(m.dropped.WithLabelValues("health")); got != 2 {
		t.Errorf("dropped{health} = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.errors.WithLabelValues("timestamp")); got != 1 {
		t.Errorf("errors{timestamp} = %v, want 1", got)
	}
	if got := p.DropReasons(); len(got) != 1 || got[0] != "health" {
		t.Errorf("DropReasons = %v", got)
	}
	// Reasons past maxReasons share "other".
	for i := range maxReasons + 5 {
		m.dropCounter("r" + strings.Repeat("x", i))
	}
	if n := testutil.CollectAndCount(m.dropped); n > maxReasons+1 {
		t.Errorf("%d reason series, want at most %d", n, maxReasons+1)
	}
}

func TestStreamCache(t *testing.T) {
	p := mustParse(t, "- logfmt: {mapping: {level: }}\n- labels: {level: }")
	e := run(p, "level=info")
	s1 := p.Stream(e, &baseSet)
	if want := `{container_name="web", host="h1", level="info", source="stdout"}`; s1 != want {
		t.Errorf("stream %s, want %s", s1, want)
	}
	e = run(p, "level=info again")
	if s2 := p.Stream(e, &baseSet); s2 != s1 {
		t.Errorf("stream %s", s2)
	}
	e = run(p, "no level")
	if s := p.Stream(e, &baseSet); s != baseSet.Stream("stdout") {
		t.Errorf("unchanged labels gave %s", s)
	}
	if baseSet.Labels[0].Value != "web" || len(baseSet.Labels) != 2 {
		t.Error("a stage modified the shared label set")
	}
}

func TestDeterministic(t *testing.T) {
	yaml := `
- json: {expressions: {level: , msg: , ts: time, user: 'ctx.user'}}
- labels: {level: , user: }
- structured_metadata: {ts: }
- template: {source: msg, template: '{{ .level | ToUpper }} {{ .msg }}'}
- output: {source: msg}
`
	line := `{"level":"warn","msg":"m","time":"t","ctx":{"user":"u"}}`
	a, b := mustParse(t, yaml), mustParse(t, yaml)
	for range 50 {
		ea, eb := run(a, line), run(b, line)
		if ea.Line != eb.Line || a.Stream(ea, &baseSet) != b.Stream(eb, &baseSet) || !maps.Equal(metadataMap(ea), metadataMap(eb)) {
			t.Fatalf("different results: %+v %+v", ea, eb)
		}
	}
}

func TestEntryFinish(t *testing.T) {
	e := &Entry{Line: "ab\xffcé"}
	if cut := e.Finish(0); cut || e.Line != "ab\uFFFDcé" {
		t.Errorf("repair: %q %v", e.Line, cut)
	}
	e.Line = "aé"
	if cut := e.Finish(2); !cut || e.Line != "a" {
		t.Errorf("cut: %q %v", e.Line, cut)
	}
}
