package labels

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"text/scanner"
	"unicode/utf8"

	"github.com/logferry/logferry/shared/metadata"
)

// parseStream parses a stream selector the way Loki's push path does
// (pkg/logql/syntax: a text/scanner lexer, string tokens that must be valid
// UTF-8 and are unquoted with Go's rules), for equality matchers only.
func parseStream(s string) ([]Pair, error) {
	var sc scanner.Scanner
	sc.Init(strings.NewReader(s))
	sc.Mode = scanner.ScanIdents | scanner.ScanStrings
	var errs []string
	sc.Error = func(_ *scanner.Scanner, msg string) { errs = append(errs, msg) }
	expect := func(r rune) error {
		if got := sc.Scan(); got != r {
			return fmt.Errorf("at %s: got %q, want %q", sc.Position, sc.TokenText(), string(r))
		}
		return nil
	}
	if err := expect('{'); err != nil {
		return nil, err
	}
	var out []Pair
	for {
		tok := sc.Scan()
		if tok == '}' && len(out) == 0 {
			break
		}
		if tok != scanner.Ident {
			return nil, fmt.Errorf("at %s: got %q, want a label name", sc.Position, sc.TokenText())
		}
		name := sc.TokenText()
		if err := expect('='); err != nil {
			return nil, err
		}
		if sc.Scan() != scanner.String {
			return nil, fmt.Errorf("at %s: got %q, want a string", sc.Position, sc.TokenText())
		}
		text := sc.TokenText()
		if !utf8.ValidString(text) {
			return nil, errors.New("invalid UTF-8 rune")
		}
		v, err := strconv.Unquote(text)
		if err != nil {
			return nil, fmt.Errorf("unquote %s: %w", text, err)
		}
		out = append(out, Pair{name, v})
		tok = sc.Scan()
		if tok == '}' {
			break
		}
		if tok != ',' {
			return nil, fmt.Errorf("at %s: got %q, want , or }", sc.Position, sc.TokenText())
		}
	}
	if sc.Scan() != scanner.EOF {
		return nil, errors.New("trailing text")
	}
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "; "))
	}
	return out, nil
}

func TestStreamFormat(t *testing.T) {
	tests := []struct {
		name   string
		labels []Pair
		source string
		want   string
	}{
		{"empty, no source", nil, "", `{}`},
		{"empty", nil, "stdout", `{source="stdout"}`},
		{"no source", L("a=1", "b=2"), "", `{a="1", b="2"}`},
		{"source last", L("compose_project=x", "container_name=y", "host=h"), "stdout",
			`{compose_project="x", container_name="y", host="h", source="stdout"}`},
		{"source first", L("swarm_service=s", "swarm_stack=t"), "stderr",
			`{source="stderr", swarm_service="s", swarm_stack="t"}`},
		{"source between", L("host=h", "swarm_stack=t"), "stdout",
			`{host="h", source="stdout", swarm_stack="t"}`},
		{"uppercase sorts before source", L("APP=x", "host=h"), "stdout",
			`{APP="x", host="h", source="stdout"}`},
		{"other source", L("host=h"), "journal", `{host="h", source="journal"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSet(tt.labels, nil, Cuts{})
			if got := s.Stream(tt.source); got != tt.want {
				t.Errorf("Stream(%q) = %s, want %s", tt.source, got, tt.want)
			}
			if got := formatStream(tt.labels, tt.source); got != tt.want {
				t.Errorf("formatStream = %s, want %s", got, tt.want)
			}
			// The zero Set computes what newSet precomputes.
			zero := Set{Labels: tt.labels}
			if got := zero.Stream(tt.source); got != tt.want {
				t.Errorf("Set without precomputed streams: Stream(%q) = %s, want %s", tt.source, got, tt.want)
			}
			if _, err := parseStream(tt.want); err != nil {
				t.Errorf("%s does not parse: %v", tt.want, err)
			}
		})
	}
}

func TestStreamEscaping(t *testing.T) {
	tests := []struct {
		name, value, quoted string
	}{
		{"plain", "web", `"web"`},
		{"double quote", `say "hi"`, `"say \"hi\""`},
		{"backslash", `C:\logs\`, `"C:\\logs\\"`},
		{"newline", "a\nb", `"a\nb"`},
		{"carriage return and tab", "a\r\tb", `"a\r\tb"`},
		{"NUL", "a\x00b", `"a\x00b"`},
		{"DEL", "a\x7fb", `"a\x7fb"`},
		{"single quote kept", "it's", `"it's"`},
		{"backtick kept", "a`b", "\"a`b\""},
		{"braces and comma kept", `{a="b"},c`, `"{a=\"b\"},c"`},
		{"latin", "café", `"café"`},
		{"cjk", "日本語", `"日本語"`},
		{"emoji", "🚢", `"🚢"`},
		{"zero-width space escaped", "a\u200bb", `"a\u200bb"`},
		{"line separator escaped", "a\u2028b", `"a\u2028b"`},
		{"replacement char", "a\uFFFDb", `"a�b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			labels := []Pair{{"v", tt.value}}
			got := formatStream(labels, "stdout")
			want := `{source="stdout", v=` + tt.quoted + `}`
			if got != want {
				t.Errorf("formatStream = %s, want %s", got, want)
			}
			parsed, err := parseStream(got)
			if err != nil {
				t.Fatalf("%s does not parse: %v", got, err)
			}
			if len(parsed) != 2 || parsed[1].Value != tt.value {
				t.Errorf("round trip of %q gave %v", tt.value, parsed)
			}
		})
	}
}

func TestStreamThroughBuild(t *testing.T) {
	// Values come from containers verbatim: the Set must still parse.
	b, err := NewBuilder(Config{Labels: []string{"weird"}}, "host \"one\"\\")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"\"", "\\", "\n", "}", "{x=\"y\"}", "a,b=c", "\xff", "é\u200b", strings.Repeat("x", 4096)} {
		s, err := b.Build(with(web(), func(c *metadata.Container) { c.Labels["weird"] = v }))
		if err != nil {
			t.Fatal(err)
		}
		checkInvariants(t, s)
	}
}

func TestStreamPrecomputedDoesNotAllocate(t *testing.T) {
	b, err := NewBuilder(Config{}, "node1")
	if err != nil {
		t.Fatal(err)
	}
	s, err := b.Build(web())
	if err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		_ = s.Stream(SourceStdout)
		_ = s.Stream(SourceStderr)
	})
	if allocs != 0 {
		t.Errorf("Stream(stdout/stderr) allocates %v times, want 0", allocs)
	}
	if got, want := s.String(), `{compose_project="shop", compose_service="web", container_name="shop-web-1", host="node1"}`; got != want {
		t.Errorf("String() = %s, want %s", got, want)
	}
}
