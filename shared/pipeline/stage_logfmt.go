package pipeline

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// logfmtStage extracts logfmt fields (key=value key2="quoted value") of
// the line or an extracted value. Values are strings.
type logfmtStage struct {
	// fields maps a logfmt key to the extracted names it goes to.
	mapping []pair // key: extracted name, value: logfmt field
	source  string
}

func compileLogfmt(ps *parser, at *position, n *yaml.Node) (stage, error) {
	fs, err := ps.fields(at, n, "mapping", "source")
	if err != nil {
		return nil, err
	}
	m, err := ps.stringMap(at, "mapping", fs["mapping"])
	if err != nil {
		return nil, err
	}
	if len(m) == 0 {
		return nil, ps.errorf(at, "mapping", n.Line, fmt.Errorf("required: a map of names to logfmt fields"))
	}
	for i := range m {
		if m[i].value == "" {
			m[i].value = m[i].key
		}
	}
	source, err := ps.str(at, "source", fs["source"])
	if err != nil {
		return nil, err
	}
	return &logfmtStage{mapping: m, source: source}, nil
}

func (*logfmtStage) kind() kind { return kindLogfmt }

func (s *logfmtStage) run(_ *Pipeline, e *Entry) {
	in := e.Line
	if s.source != "" {
		v, ok := e.getString(s.source)
		if !ok {
			return
		}
		in = v
	}
	ScanLogfmt(in, func(key, value string) {
		for _, m := range s.mapping {
			if m.value == key {
				e.setString(m.key, value)
			}
		}
	})
}

// ScanLogfmt calls fn for each key=value pair of s, in order (a later
// pair with the same key wins when fn stores them). A key is a run of
// bytes above space other than '=' and '"'; a value is a run of bytes above
// space, or a double-quoted string with Go-style escapes; a key without
// '=' has the empty value. A stray '"' or '=' is skipped up to the next
// space and an unterminated quote ends the scan, keeping the pairs found:
// lines are what programs write, not always well formed.
func ScanLogfmt(s string, fn func(key, value string)) {
	i := 0
	for i < len(s) {
		for i < len(s) && s[i] <= ' ' {
			i++
		}
		if i >= len(s) {
			return
		}
		start := i
		for i < len(s) && s[i] > ' ' && s[i] != '=' && s[i] != '"' {
			i++
		}
		key := s[start:i]
		if key == "" {
			// A stray '"' or '=': skip the garbage.
			i = skipToSpace(s, i+1)
			continue
		}
		if i >= len(s) || s[i] != '=' {
			if i < len(s) && s[i] == '"' {
				i = skipToSpace(s, i)
				continue
			}
			fn(key, "")
			continue
		}
		i++ // '='
		if i < len(s) && s[i] == '"' {
			end, esc, ok := scanQuoted(s, i)
			if !ok {
				return
			}
			raw := s[i+1 : end-1]
			v := raw
			if esc {
				if u, err := strconv.Unquote(s[i:end]); err == nil {
					v = u
				} else {
					v = strings.ReplaceAll(raw, `\"`, `"`)
				}
			}
			if !utf8.ValidString(v) {
				v = strings.ToValidUTF8(v, "\uFFFD")
			}
			fn(key, v)
			i = end
			continue
		}
		vs := i
		for i < len(s) && s[i] > ' ' {
			i++
		}
		fn(key, s[vs:i])
	}
}

func skipToSpace(s string, i int) int {
	for i < len(s) && s[i] > ' ' {
		i++
	}
	return i
}

// scanQuoted finds the end of the quoted string at s[i] == '"': the index
// after its closing quote and whether it holds a backslash.
func scanQuoted(s string, i int) (end int, escaped, ok bool) {
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			return j + 1, escaped, true
		}
	}
	return len(s), escaped, false
}
