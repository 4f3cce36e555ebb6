package pipeline

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestTemplateBounds: no template or replace makes more than MaxValueBytes
// from a line; what would is counted and leaves its target unchanged.
func TestTemplateBounds(t *testing.T) {
	big := strings.Repeat("ab", MaxValueBytes/4+1) // just over half the bound
	cases := []struct {
		name string
		yaml string
		line string
	}{
		{"output doubles", "- template: {source: t, template: '{{ .Entry }}{{ .Entry }}'}\n- output: {source: t}", big},
		{"Replace grows", "- template: {source: t, template: '{{ Replace .Entry \"\" \"xxxxxxxx\" -1 }}'}\n- output: {source: t}", strings.Repeat("a", 40000)},
		{"replace sprig grows", "- template: {source: t, template: '{{ replace \"a\" \"aaaaaaaaaaaaaaaaaaaa\" .Entry }}'}\n- output: {source: t}", strings.Repeat("a", 20000)},
		{"printf width", "- template: {source: t, template: '{{ printf \"%900000000d\" 1 }}'}\n- output: {source: t}", "x"},
		{"printf star", "- template: {source: t, template: '{{ printf \"%*d\" 900000000 1 }}'}\n- output: {source: t}", "x"},
		{"regexReplaceAll grows", "- template: {source: t, template: '{{ regexReplaceAll \"a\" .Entry \"$0$0$0$0$0$0$0$0$0$0$0$0\" }}'}\n- output: {source: t}", strings.Repeat("a", 30000)},
		{"replace stage grows", "- replace: {expression: '(a)', replace: 'aaaaaaaaaaaaaaaaaaaa'}", strings.Repeat("a", 20000)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := mustParse(t, c.yaml).Instance(NewMetrics(nil))
			e := run(p, c.line)
			if e.Line != c.line {
				t.Errorf("line changed to %d bytes", len(e.Line))
			}
			var failed float64
			for k := range numKinds {
				failed += testutil.ToFloat64(p.errCounters[k])
			}
			if failed != 1 {
				t.Errorf("%v failures counted, want 1", failed)
			}
		})
	}
}

func TestTemplateSeesTypes(t *testing.T) {
	// JSON numbers stay numbers for templates, as in Promtail.
	p := mustParse(t, "- json: {expressions: {n: , s: }}\n- template: {source: out, template: '{{ if gt .n 3.0 }}big{{ end }} {{ add .n 1 }} {{ .missing }}'}")
	e := run(p, `{"n": 5, "s": "x"}`)
	if got, _ := e.Extracted("out"); got != "big 6 <no value>" {
		t.Errorf("out = %q", got)
	}
}
