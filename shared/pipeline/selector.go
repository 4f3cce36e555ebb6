package pipeline

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/logferry/logferry/shared/labels"
)

// selector is a LogQL log selector as the match stage takes it: a stream
// selector {name op "value", ...} with =, !=, =~, !~, then any number of
// line filters |= != |~ !~. As in Loki, a missing label has the value ""
// and a label regex must match the whole value.
type selector struct {
	matchers []labelMatcher
	filters  []lineFilter
}

type matchOp uint8

const (
	opEq matchOp = iota
	opNeq
	opRe
	opNre
)

type labelMatcher struct {
	name  string
	op    matchOp
	value string
	re    *regexp.Regexp
}

type lineFilter struct {
	op    matchOp // opEq: |=, opNeq: !=, opRe: |~, opNre: !~
	value string
	re    *lineRegexp
}

func (s *selector) matches(e *Entry) bool {
	for i := range s.matchers {
		m := &s.matchers[i]
		v, _ := e.label(m.name)
		var ok bool
		switch m.op {
		case opEq:
			ok = v == m.value
		case opNeq:
			ok = v != m.value
		case opRe:
			ok = m.re.MatchString(v)
		case opNre:
			ok = !m.re.MatchString(v)
		}
		if !ok {
			return false
		}
	}
	for i := range s.filters {
		f := &s.filters[i]
		var ok bool
		switch f.op {
		case opEq:
			ok = strings.Contains(e.Line, f.value)
		case opNeq:
			ok = !strings.Contains(e.Line, f.value)
		case opRe:
			ok = f.re.MatchString(e.Line)
		case opNre:
			ok = !f.re.MatchString(e.Line)
		}
		if !ok {
			return false
		}
	}
	return true
}

// parseSelector parses a LogQL log selector. Parsers (| json), label
// filters, ip() and pattern filters, and "or" between filters are not
// supported.
func parseSelector(text string) (*selector, error) {
	l := &selLexer{s: text}
	s := &selector{}
	if !l.consume("{") {
		return nil, l.errorf("want a stream selector starting with {")
	}
	for {
		if l.consume("}") {
			break
		}
		if len(s.matchers) > 0 && !l.consume(",") {
			return nil, l.errorf("want , or }")
		}
		if len(s.matchers) > 0 && l.consume("}") {
			break
		}
		name := l.ident()
		if name == "" {
			return nil, l.errorf("want a label name")
		}
		if !labels.IsValidLabelName(name) {
			return nil, l.errorf("%q is not a label name", name)
		}
		var op matchOp
		switch {
		case l.consume("=~"):
			op = opRe
		case l.consume("!~"):
			op = opNre
		case l.consume("!="):
			op = opNeq
		case l.consume("="):
			op = opEq
		default:
			return nil, l.errorf("want =, !=, =~ or !~ after %s", name)
		}
		v, err := l.str()
		if err != nil {
			return nil, err
		}
		m := labelMatcher{name: name, op: op, value: v}
		if op == opRe || op == opNre {
			if m.re, err = compileSelectorRE("^(?:"+v+")$", v); err != nil {
				return nil, err
			}
		}
		s.matchers = append(s.matchers, m)
	}
	if len(s.matchers) == 0 {
		return nil, l.errorf("want at least one label matcher in {}")
	}
	for {
		l.space()
		if l.done() {
			return s, nil
		}
		var op matchOp
		switch {
		case l.consume("|="):
			op = opEq
		case l.consume("!="):
			op = opNeq
		case l.consume("|~"):
			op = opRe
		case l.consume("!~"):
			op = opNre
		default:
			return nil, l.errorf("want a line filter (|= != |~ !~); parsers, label filters and other expressions are not supported")
		}
		v, err := l.str()
		if err != nil {
			return nil, err
		}
		f := lineFilter{op: op, value: v}
		if op == opRe || op == opNre {
			re, err := compileSelectorRE(v, v)
			if err != nil {
				return nil, err
			}
			f.re = newLineRegexp(re)
		}
		s.filters = append(s.filters, f)
		if l.peekIdent("or") {
			return nil, l.errorf(`"or" between line filters is not supported`)
		}
	}
}

func compileSelectorRE(expr, given string) (*regexp.Regexp, error) {
	if len(given) > MaxRegexBytes {
		return nil, overLimit("regex of %d bytes, more than %d", len(given), MaxRegexBytes)
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("regex %q: %w", given, err)
	}
	return re, nil
}

type selLexer struct {
	s string
	i int
}

func (l *selLexer) errorf(format string, args ...any) error {
	return fmt.Errorf("at offset %d: %s", l.i, fmt.Sprintf(format, args...))
}

func (l *selLexer) space() {
	for l.i < len(l.s) && (l.s[l.i] == ' ' || l.s[l.i] == '\t' || l.s[l.i] == '\n' || l.s[l.i] == '\r') {
		l.i++
	}
}

func (l *selLexer) done() bool { return l.i >= len(l.s) }

func (l *selLexer) consume(tok string) bool {
	l.space()
	if strings.HasPrefix(l.s[l.i:], tok) {
		l.i += len(tok)
		return true
	}
	return false
}

func (l *selLexer) ident() string {
	l.space()
	start := l.i
	for l.i < len(l.s) {
		c := l.s[l.i]
		if c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || (l.i > start && (c >= '0' && c <= '9' || c == ':')) {
			l.i++
			continue
		}
		break
	}
	return l.s[start:l.i]
}

func (l *selLexer) peekIdent(word string) bool {
	l.space()
	rest := l.s[l.i:]
	return strings.HasPrefix(rest, word) && (len(rest) == len(word) || !isIdentByte(rest[len(word)]))
}

func isIdentByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// str reads a double-quoted (Go escapes) or backquoted string.
func (l *selLexer) str() (string, error) {
	l.space()
	if l.done() {
		return "", l.errorf("want a quoted string")
	}
	switch l.s[l.i] {
	case '`':
		end := strings.IndexByte(l.s[l.i+1:], '`')
		if end < 0 {
			return "", l.errorf("unterminated `string`")
		}
		v := l.s[l.i+1 : l.i+1+end]
		l.i += end + 2
		return v, nil
	case '"':
		for j := l.i + 1; j < len(l.s); j++ {
			switch l.s[j] {
			case '\\':
				j++
			case '"':
				v, err := strconv.Unquote(l.s[l.i : j+1])
				if err != nil {
					return "", l.errorf("bad string %s: %v", l.s[l.i:j+1], err)
				}
				l.i = j + 1
				return v, nil
			}
		}
		return "", l.errorf(`unterminated "string"`)
	}
	return "", l.errorf("want a quoted string")
}
