package pipeline

import (
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/logferry/logferry/shared/labels"
)

// FuzzParse: any text gives a pipeline or an error wrapping ErrInvalid,
// never a panic; a pipeline processes a line without panicking and within
// the label limits.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"- regex:\n    expression: '(level|lvl|severity)=(?P<level>\\w+)'\n- labels:\n    level:\n",
		"- json: {expressions: {a: 'b[0].c', d: }, drop_malformed: true}\n- labels: {a: , d: }",
		"- match:\n    selector: '{a=\"b\"} |~ \"x\"'\n    stages:\n    - template: {source: t, template: '{{ .Value | ToUpper }}'}\n    - output: {source: t}",
		"- multiline: {firstline: '^\\S', max_wait_time: 1s}\n- logfmt: {mapping: {a: }}",
		"- timestamp: {source: t, format: '2006-01-02', fallback_formats: [Unix]}",
		"- replace: {expression: '(\\d+)', replace: '{{ .Value | Hash \"s\" }}'}",
		"- drop: {source: [a, b], separator: '#', expression: x, longer_than: 1kb}",
		"- limit: {rate: 1, burst: 1, drop: true, by_label_name: a}",
		"pipeline_stages:\n- decolorize:\n- tenant: {value: t}\n- labelallow: [a]\n- labeldrop: [b]\n- static_labels: {c: d}\n- structured_metadata: {e: }",
		"- labels: &a {a: }\n- labels: *a",
		"[[[[[[[[[[[[[[[[[[[[",
		"- template: {source: a, template: '{{ printf \"%*d\" 100000000 1 }}'}",
	} {
		f.Add(s, "a=1 level=info {\"a\": \"x\"} 2006-01-02 \x1b[31mred")
	}
	f.Fuzz(func(t *testing.T, text, line string) {
		p, err := Parse(text)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error without ErrInvalid: %v", err)
			}
			return
		}
		if len(text) > MaxConfigBytes {
			t.Fatalf("accepted %d bytes", len(text))
		}
		p = p.Instance(NewMetrics(nil))
		if p == nil {
			return
		}
		p.now = func() time.Time { return t0 }
		e := run(p, line)
		if len(e.Labels)+1 > labels.MaxLabelsPerStream {
			t.Fatalf("%d labels", len(e.Labels))
		}
		for _, l := range e.Labels {
			if !labels.IsValidLabelName(l.Name) || len(l.Value) > labels.MaxLabelValueBytes || !utf8.ValidString(l.Value) || l.Value == "" {
				t.Fatalf("bad label %q=%q", l.Name, l.Value)
			}
		}
		if len(e.Line) > max(len(line), MaxValueBytes) {
			t.Fatalf("line grew to %d bytes", len(e.Line))
		}
		_ = p.Stream(e, &baseSet)
	})
}

// FuzzMultiline: any lines of two sources make entries in which every line
// appears exactly once, in order within its source, joined by "\n", with
// Acks that never go back and cover only lines already emitted.
func FuzzMultiline(f *testing.F) {
	f.Add(uint8(0), "java.lang.Error: x\n\tat a\nCaused by: y\n\t... 1 more\nnext", uint16(5))
	f.Add(uint8(1), "Traceback (most recent call last):\n  File \"a\"\nValueError: x\n\nDuring handling of the above exception\n\nTraceback (most recent call last):\nE\nok", uint16(3))
	f.Add(uint8(2), "panic: x\n\ngoroutine 1 [running]:\nmain.main()\n\t/a.go:1\nexit status 2\nok", uint16(64))
	f.Add(uint8(3), "/a.js:1\n  x\n  ^\n\nError: e\n    at f\n\nNode.js v1\nok", uint16(1))
	f.Add(uint8(4), "[1] a\nb\n[2] c", uint16(2))
	f.Fuzz(func(t *testing.T, which uint8, text string, bound uint16) {
		var cfg *MultilineConfig
		switch which % 5 {
		case 0:
			cfg, _ = MultilinePreset(PresetJava)
		case 1:
			cfg, _ = MultilinePreset(PresetPython)
		case 2:
			cfg, _ = MultilinePreset(PresetGo)
		case 3:
			cfg, _ = MultilinePreset(PresetNodeJS)
		default:
			cfg, _ = NewMultilineConfig(`^\[`, time.Second, 0)
		}
		cfg.MaxLines = int(bound%16) + 1
		cfg.MaxBytes = int(bound%200) + 1
		ml := NewMultiline(cfg, nil)
		lines := strings.Split(text, "\n")
		type input struct {
			src  string
			line string
		}
		inputs := make([]input, len(lines))
		var out []Joined
		now := t0
		for i, l := range lines {
			src := "stdout"
			if len(l) > 0 && l[0]%3 == 0 {
				src = "stderr"
			}
			inputs[i] = input{src, l}
			out = ml.Push(out, now, src, int64(i), l, int64(i))
			if i%7 == 6 {
				now = now.Add(cfg.MaxWait)
				out = ml.Flush(out, now)
			}
		}
		out = ml.FlushAll(out)
		if ml.Pending() != 0 {
			t.Fatal("lines pending after FlushAll")
		}
		// Replay: every line in exactly one entry, in order per source.
		next := map[string]int{} // next input index to expect per source
		seen := make([]bool, len(inputs))
		ack := int64(-1)
		for _, j := range out {
			var parts []string
			idx := next[j.Source]
			for n := 0; n < j.Lines; n++ {
				for idx < len(inputs) && inputs[idx].src != j.Source {
					idx++
				}
				if idx >= len(inputs) {
					t.Fatalf("entry %+v holds lines that do not exist", j)
				}
				if n == 0 && int64(idx) != j.First {
					t.Fatalf("entry starts at %d, want %d", j.First, idx)
				}
				if seen[idx] {
					t.Fatalf("line %d twice", idx)
				}
				seen[idx] = true
				parts = append(parts, inputs[idx].line)
				idx++
			}
			if int64(idx-1) != j.Last {
				t.Fatalf("entry ends at %d, want %d", j.Last, idx-1)
			}
			if joined := strings.Join(parts, "\n"); joined != j.Line {
				t.Fatalf("entry %q, want %q", j.Line, joined)
			}
			if j.Lines > cfg.MaxLines {
				t.Fatalf("entry of %d lines", j.Lines)
			}
			if j.Lines > 1 && len(j.Line) > cfg.MaxBytes {
				t.Fatalf("joined entry of %d bytes", len(j.Line))
			}
			next[j.Source] = idx
			if j.AckOK {
				if j.Ack < ack {
					t.Fatalf("ack went back from %d to %d", ack, j.Ack)
				}
				ack = j.Ack
				for k := int64(0); k <= ack; k++ {
					if !seen[k] {
						t.Fatalf("ack %d covers line %d not yet emitted", ack, k)
					}
				}
			}
		}
		for i, s := range seen {
			if !s {
				t.Fatalf("line %d lost", i)
			}
		}
		if len(out) > 0 && (!out[len(out)-1].AckOK || out[len(out)-1].Ack != int64(len(lines)-1)) {
			t.Fatalf("last ack %+v, want %d", out[len(out)-1], len(lines)-1)
		}
	})
}

// FuzzJSONScan: the scanner agrees with encoding/json on validity and on
// the values of top-level fields.
func FuzzJSONScan(f *testing.F) {
	for _, s := range []string{
		`{"a":"b","n":1.5e3,"t":true,"z":null,"o":{"x":[1,{"y":"\u00e9\ud83d\ude00"}]}}`,
		`{"a":"\ud800x","a":"dup"}`, `[1,2]`, `{"a":01}`, `{"a":"\x"}`, ` {"k\u0061y" : -0.0 } `, `{"a":1,}`,
		"{\"a\":\"\xff\"}", `{"a":1e400}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := jsonValid(s), json.Valid([]byte(s)); got != want {
			t.Fatalf("jsonValid(%q) = %v, json.Valid = %v", s, got, want)
		}
		var doc map[string]any
		if json.Unmarshal([]byte(s), &doc) != nil {
			return
		}
		i := skipJSONSpace(s, 0)
		got := map[string]any{}
		walkJSONObject(s, i, 1, func(key string, esc bool, vs, ve int) bool {
			k := jsonUnquote(key, esc)
			if v, ok := jsonSpanValue(s[vs:ve]); ok {
				got[k] = v.any()
				// The text a stage reads is the value's, formatted.
				if str, ok := v.str(); ok {
					if want, _ := stringOf(v.any()); str != want {
						t.Fatalf("%q: %s reads as %q, want %q", k, s[vs:ve], str, want)
					}
				}
			} else {
				delete(got, k)
			}
			return true
		})
		for k, v := range doc {
			want, ok := extractedValue(v)
			if !ok {
				if _, present := got[k]; present {
					t.Fatalf("%q: got %#v, want nothing", k, got[k])
				}
				continue
			}
			if !reflect.DeepEqual(got[k], want) {
				t.Fatalf("%q: got %#v, want %#v", k, got[k], want)
			}
		}
	})
}

// FuzzLineRegexp: the prefiltered search finds what regexp finds.
func FuzzLineRegexp(f *testing.F) {
	for _, s := range [][2]string{
		{`(level|lvl|severity)=(?P<level>\w+)`, "ts=1 lvl=warn level=info"},
		{`a+b`, "aaab aab"}, {`(?:ab|ac)d`, "abacd"}, {`[xy]z(q)?`, "xxz yzq"},
		{`password (\S+)`, "my password xyz!"}, {`(a|b)*c`, "abc"}, {`x{2,3}y`, "xxxxy"},
		{`(?s)level=(.*)$`, "level=a\nb"}, {`(?i)error`, "ERROR"}, {`\bword`, "a word"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, s string) {
		if len(pattern) > 64 {
			return
		}
		re, err := regexp.Compile(pattern)
		if err != nil {
			return
		}
		lr := newLineRegexp(re)
		if got, want := lr.FindStringSubmatchIndex(s), re.FindStringSubmatchIndex(s); !reflect.DeepEqual(got, want) {
			t.Fatalf("%q on %q: got %v, want %v (prefixes %q)", pattern, s, got, want, lr.prefixes)
		}
		if got, want := lr.MatchString(s), re.MatchString(s); got != want {
			t.Fatalf("%q on %q: MatchString %v, want %v", pattern, s, got, want)
		}
	})
}
