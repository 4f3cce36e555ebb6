package pipeline

import (
	"crypto/sha256"
	"crypto/sha3"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
)

// lineTemplate is a Go template of the template and replace stages, with
// Promtail's documented functions and a few of sprig's, all bounded: no
// call makes a string longer than MaxValueBytes, a template's output stops
// at MaxValueBytes, {{range}} and sub-templates are refused (nothing can
// loop), and the regex functions take constant patterns compiled when the
// configuration is parsed.
type lineTemplate struct {
	t *template.Template
	// regexes holds the compiled constant patterns of regex functions.
	regexes map[string]*regexp.Regexp
}

// errTooLong stops a template or function whose output would pass
// MaxValueBytes.
var errTooLong = fmt.Errorf("output longer than %d bytes", MaxValueBytes)

// regexFuncs are the functions whose first argument is a pattern.
var regexFuncs = map[string]bool{
	"regexReplaceAll": true, "regexReplaceAllLiteral": true, "regexMatch": true, "regexFind": true,
}

func compileLineTemplate(text string) (*lineTemplate, error) {
	if len(text) > MaxTemplateBytes {
		return nil, overLimit("template of %d bytes, more than %d", len(text), MaxTemplateBytes)
	}
	lt := &lineTemplate{regexes: map[string]*regexp.Regexp{}}
	t, err := template.New("").Funcs(lt.funcs()).Parse(text)
	if err != nil {
		return nil, err
	}
	if len(t.Templates()) > 1 {
		return nil, errors.New("{{define}} and {{block}} are not supported")
	}
	if err := lt.check(t.Root); err != nil {
		return nil, err
	}
	lt.t = t
	return lt, nil
}

// check refuses loops and sub-templates and compiles the regex functions'
// constant patterns.
func (lt *lineTemplate) check(n parse.Node) error {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return nil
		}
		for _, c := range n.Nodes {
			if err := lt.check(c); err != nil {
				return err
			}
		}
	case *parse.ActionNode:
		return lt.check(n.Pipe)
	case *parse.IfNode:
		return lt.checkBranch(&n.BranchNode)
	case *parse.WithNode:
		return lt.checkBranch(&n.BranchNode)
	case *parse.RangeNode:
		return errors.New("{{range}} is not supported")
	case *parse.TemplateNode:
		return errors.New("{{template}} is not supported")
	case *parse.PipeNode:
		if n == nil {
			return nil
		}
		for _, c := range n.Cmds {
			if err := lt.check(c); err != nil {
				return err
			}
		}
	case *parse.ChainNode:
		return lt.check(n.Node)
	case *parse.CommandNode:
		for _, a := range n.Args {
			if err := lt.check(a); err != nil {
				return err
			}
		}
		if id, ok := n.Args[0].(*parse.IdentifierNode); ok && regexFuncs[id.Ident] {
			var pat *parse.StringNode
			if len(n.Args) > 1 {
				pat, _ = n.Args[1].(*parse.StringNode)
			}
			if pat == nil {
				return fmt.Errorf("%s: the pattern must be a quoted constant", id.Ident)
			}
			if len(pat.Text) > MaxRegexBytes {
				return overLimit("%s: pattern of %d bytes, more than %d", id.Ident, len(pat.Text), MaxRegexBytes)
			}
			re, err := regexp.Compile(pat.Text)
			if err != nil {
				return fmt.Errorf("%s: %w", id.Ident, err)
			}
			lt.regexes[pat.Text] = re
		}
	}
	return nil
}

func (lt *lineTemplate) checkBranch(n *parse.BranchNode) error {
	for _, c := range []parse.Node{n.Pipe, n.List, n.ElseList} {
		if c == nil {
			continue
		}
		if l, ok := c.(*parse.ListNode); ok && l == nil {
			continue
		}
		if err := lt.check(c); err != nil {
			return err
		}
	}
	return nil
}

// execute runs the template into b (reset first) with data.
func (lt *lineTemplate) execute(b *boundedBuffer, data any) (string, error) {
	b.reset()
	if err := lt.t.Execute(b, data); err != nil {
		return "", err
	}
	return b.String(), nil
}

// boundedBuffer collects a template's output up to MaxValueBytes.
type boundedBuffer struct{ b []byte }

func (w *boundedBuffer) reset() { w.b = w.b[:0] }

func (w *boundedBuffer) Write(p []byte) (int, error) {
	if len(w.b)+len(p) > MaxValueBytes {
		return 0, errTooLong
	}
	w.b = append(w.b, p...)
	return len(p), nil
}

func (w *boundedBuffer) String() string { return string(w.b) }

func (lt *lineTemplate) regex(pattern string) (*regexp.Regexp, error) {
	if re := lt.regexes[pattern]; re != nil {
		return re, nil
	}
	return nil, errors.New("regex pattern not compiled")
}

// funcs are the template functions: Promtail's (ToLower, ToUpper, Replace,
// Trim*, regexReplaceAll, regexReplaceAllLiteral, Hash, Sha2Hash) and the
// sprig functions most used in its examples, each with sprig's argument
// order. printf is replaced by a version that refuses widths and
// precisions past MaxValueBytes.
func (lt *lineTemplate) funcs() template.FuncMap {
	return template.FuncMap{
		"ToLower":    strings.ToLower,
		"ToUpper":    strings.ToUpper,
		"Replace":    boundedReplace,
		"Trim":       strings.Trim,
		"TrimLeft":   strings.TrimLeft,
		"TrimRight":  strings.TrimRight,
		"TrimPrefix": strings.TrimPrefix,
		"TrimSuffix": strings.TrimSuffix,
		"TrimSpace":  strings.TrimSpace,
		"regexReplaceAll": func(pattern, s, repl string) (string, error) {
			re, err := lt.regex(pattern)
			if err != nil {
				return "", err
			}
			return boundedRegexReplace(re, s, repl, true)
		},
		"regexReplaceAllLiteral": func(pattern, s, repl string) (string, error) {
			re, err := lt.regex(pattern)
			if err != nil {
				return "", err
			}
			return boundedRegexReplace(re, s, repl, false)
		},
		"regexMatch": func(pattern, s string) (bool, error) {
			re, err := lt.regex(pattern)
			if err != nil {
				return false, err
			}
			return re.MatchString(s), nil
		},
		"regexFind": func(pattern, s string) (string, error) {
			re, err := lt.regex(pattern)
			if err != nil {
				return "", err
			}
			return re.FindString(s), nil
		},
		// Hash and Sha2Hash take the salt first, so that
		// {{ .Value | Hash "salt" }} hashes the value, as Promtail's
		// replace examples write it; the digest is of salt then value.
		"Hash":     func(salt, s string) string { h := sha3.Sum256([]byte(salt + s)); return hex.EncodeToString(h[:]) },
		"Sha2Hash": func(salt, s string) string { h := sha256.Sum256([]byte(salt + s)); return hex.EncodeToString(h[:]) },
		// sprig
		"lower":      strings.ToLower,
		"upper":      strings.ToUpper,
		"trim":       strings.TrimSpace,
		"trimAll":    func(cut, s string) string { return strings.Trim(s, cut) },
		"trimPrefix": func(p, s string) string { return strings.TrimPrefix(s, p) },
		"trimSuffix": func(p, s string) string { return strings.TrimSuffix(s, p) },
		"contains":   func(sub, s string) bool { return strings.Contains(s, sub) },
		"hasPrefix":  func(p, s string) bool { return strings.HasPrefix(s, p) },
		"hasSuffix":  func(p, s string) bool { return strings.HasSuffix(s, p) },
		"replace":    func(old, new, s string) (string, error) { return boundedReplace(s, old, new, -1) },
		"substr":     substr,
		"trunc":      trunc,
		"default":    dfault,
		"quote":      func(v any) (string, error) { return boundedString(strconv.Quote(fmt.Sprint(v))) },
		"toString":   func(v any) string { s, _ := stringOf(v); return s },
		"add":        func(a, b any) int64 { return toInt64(a) + toInt64(b) },
		"sub":        func(a, b any) int64 { return toInt64(a) - toInt64(b) },
		"printf":     boundedPrintf,
	}
}

func boundedString(s string) (string, error) {
	if len(s) > MaxValueBytes {
		return "", errTooLong
	}
	return s, nil
}

// boundedReplace is strings.Replace refusing to build more than
// MaxValueBytes.
func boundedReplace(s, old, new string, n int) (string, error) {
	k := strings.Count(s, old)
	if n >= 0 && n < k {
		k = n
	}
	if len(s)+k*(len(new)-len(old)) > MaxValueBytes {
		return "", errTooLong
	}
	return strings.Replace(s, old, new, n), nil
}

// boundedRegexReplace is ReplaceAllString (expand) or ReplaceAllLiteralString
// refusing to build more than MaxValueBytes.
func boundedRegexReplace(re *regexp.Regexp, s, repl string, expand bool) (string, error) {
	var out []byte
	last := 0
	for _, m := range re.FindAllStringSubmatchIndex(s, -1) {
		out = append(out, s[last:m[0]]...)
		if expand {
			out = re.ExpandString(out, repl, s, m)
		} else {
			out = append(out, repl...)
		}
		last = m[1]
		if len(out) > MaxValueBytes {
			return "", errTooLong
		}
	}
	out = append(out, s[last:]...)
	if len(out) > MaxValueBytes {
		return "", errTooLong
	}
	return string(out), nil
}

// substr is sprig's: the bytes from start to end; a negative start means
// from the beginning, a negative or large end to the end. Out of range
// indexes are clamped (sprig would panic).
func substr(start, end int, s string) string {
	start = max(start, 0)
	if end < 0 || end > len(s) {
		end = len(s)
	}
	if start >= end {
		return ""
	}
	return s[start:end]
}

// trunc is sprig's: the first n bytes, or the last -n.
func trunc(n int, s string) string {
	switch {
	case n < 0 && len(s)+n > 0:
		return s[len(s)+n:]
	case n >= 0 && len(s) > n:
		return s[:n]
	}
	return s
}

// dfault is sprig's default: given unless it is empty.
func dfault(def any, given ...any) any {
	if len(given) == 0 || given[0] == nil {
		return def
	}
	switch v := given[0].(type) {
	case string:
		if v == "" {
			return def
		}
	case bool:
		if !v {
			return def
		}
	case float64:
		if v == 0 {
			return def
		}
	}
	return given[0]
}

func toInt64(v any) int64 {
	switch v := v.(type) {
	case int:
		return int64(v)
	case int64:
		return v
	case float64:
		return int64(v)
	case string:
		i, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int64(f)
		}
		return i
	case bool:
		if v {
			return 1
		}
	}
	return 0
}

// boundedPrintf is fmt.Sprintf refusing formats whose width or precision
// could build more than MaxValueBytes ("%*d", "%999999999s") before any
// writer sees the output, and results longer than MaxValueBytes.
func boundedPrintf(format string, args ...any) (string, error) {
	if err := checkFormat(format); err != nil {
		return "", err
	}
	return boundedString(fmt.Sprintf(format, args...))
}

func checkFormat(format string) error {
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
		for i++; i < len(format); i++ {
			c := format[i]
			if c == '*' || c == '[' {
				return errors.New("printf: * and [n] are not supported")
			}
			if c >= '1' && c <= '9' {
				j := i
				for j < len(format) && format[j] >= '0' && format[j] <= '9' {
					j++
				}
				if n, err := strconv.Atoi(format[i:j]); err != nil || n > MaxValueBytes {
					return errTooLong
				}
				i = j - 1
				continue
			}
			if strings.IndexByte("+-# 0.", c) < 0 {
				break
			}
		}
	}
	return nil
}

// templateData fills the instance's reused map with what templates see:
// the labels the entry started with, the extracted values (which win),
// then Value and Entry.
func (p *Pipeline) templateData(e *Entry, value any, hasValue bool) map[string]any {
	d := p.tmplData
	if d == nil {
		d = make(map[string]any, 16)
		p.tmplData = d
	}
	clear(d)
	for _, l := range e.baseLabels {
		d[l.Name] = l.Value
	}
	if e.baseSource != "" {
		d["source"] = e.baseSource
	}
	for _, kv := range e.extracted.kv {
		d[kv.name] = kv.val.any()
	}
	if hasValue {
		d["Value"] = value
	}
	d["Entry"] = e.Line
	return d
}
