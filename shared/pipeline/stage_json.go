package pipeline

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/jmespath/go-jmespath"
	"go.yaml.in/yaml/v3"
)

// jsonStage extracts JMESPath expressions from the line (or an extracted
// value) parsed as a JSON object.
//
// Expressions that are a field or a dotted path of fields (level,
// "grpc.stream", a.b) are looked up by a scan of the text that builds no
// tree; any other expression is evaluated by go-jmespath on the document
// decoded by encoding/json, as Promtail does. Both give the same values:
// strings, float64 numbers, booleans; objects and arrays become their JSON
// text; null extracts nothing.
type jsonStage struct {
	exprs         []jsonExpr
	source        string
	dropMalformed bool
	// paths: every expression is a path, no tree is needed.
	paths bool
}

type jsonExpr struct {
	name string
	path []string
	jmes *jmespath.JMESPath
}

func compileJSON(ps *parser, at *position, n *yaml.Node) (stage, error) {
	fs, err := ps.fields(at, n, "expressions", "source", "drop_malformed")
	if err != nil {
		return nil, err
	}
	exprs, err := ps.stringMap(at, "expressions", fs["expressions"])
	if err != nil {
		return nil, err
	}
	if len(exprs) == 0 {
		line := n.Line
		return nil, ps.errorf(at, "expressions", line, fmt.Errorf("required: a map of names to JMESPath expressions"))
	}
	s := &jsonStage{paths: true}
	for _, kv := range exprs {
		expr := kv.value
		if expr == "" {
			expr = kv.key
		}
		field := joinField("expressions", kv.key)
		if len(expr) > MaxExpressionBytes {
			return nil, ps.errorf(at, field, n.Line, overLimit("%d bytes, more than %d", len(expr), MaxExpressionBytes))
		}
		jm, err := compileJMESPath(expr)
		if err != nil {
			return nil, ps.errorf(at, field, n.Line, fmt.Errorf("JMESPath %q: %w", expr, err))
		}
		je := jsonExpr{name: kv.key, path: simplePath(expr)}
		if je.path == nil {
			je.jmes = jm
			s.paths = false
		}
		s.exprs = append(s.exprs, je)
	}
	if s.source, err = ps.str(at, "source", fs["source"]); err != nil {
		return nil, err
	}
	if s.dropMalformed, err = ps.boolean(at, "drop_malformed", fs["drop_malformed"]); err != nil {
		return nil, err
	}
	if s.dropMalformed {
		ps.prog.reasons = append(ps.prog.reasons, ReasonMalformedJSON)
	}
	return s, nil
}

// compileJMESPath compiles expr, turning a panic of the library on odd
// input into an error: expressions come from configurations image authors
// may write.
func compileJMESPath(expr string) (jm *jmespath.JMESPath, err error) {
	defer func() {
		if r := recover(); r != nil {
			jm, err = nil, fmt.Errorf("cannot compile: %v", r)
		}
	}()
	return jmespath.Compile(expr)
}

// simplePath returns the fields of a JMESPath expression made only of
// fields joined by dots (a, a.b, "a.b".c, with no escapes in quoted ones),
// or nil.
func simplePath(expr string) []string {
	var path []string
	for i := 0; ; {
		if i >= len(expr) {
			return nil
		}
		var seg string
		if expr[i] == '"' {
			j := strings.IndexByte(expr[i+1:], '"')
			if j < 0 {
				return nil
			}
			seg = expr[i+1 : i+1+j]
			if seg == "" || strings.ContainsAny(seg, "\\") || strings.ContainsFunc(seg, func(r rune) bool { return r < 0x20 }) {
				return nil
			}
			i += j + 2
		} else {
			j := i
			for j < len(expr) && (expr[j] == '_' || expr[j] >= 'a' && expr[j] <= 'z' || expr[j] >= 'A' && expr[j] <= 'Z' || (j > i && expr[j] >= '0' && expr[j] <= '9')) {
				j++
			}
			if j == i {
				return nil
			}
			seg = expr[i:j]
			i = j
		}
		path = append(path, seg)
		if i == len(expr) {
			return path
		}
		if expr[i] != '.' {
			return nil
		}
		i++
	}
}

func (*jsonStage) kind() kind { return kindJSON }

func (s *jsonStage) run(p *Pipeline, e *Entry) {
	in := e.Line
	if s.source != "" {
		v, ok := e.getString(s.source)
		if !ok {
			return
		}
		in = v
	}
	var ok bool
	if s.paths {
		ok = s.runPaths(e, in)
	} else {
		ok = s.runJMESPath(e, in)
	}
	if ok {
		return
	}
	p.fail(kindJSON)
	if s.dropMalformed {
		p.drop(e, ReasonMalformedJSON)
	}
}

// runPaths looks the paths up in one scan; it reports false when in is not
// a JSON object.
func (s *jsonStage) runPaths(e *Entry, in string) bool {
	i := skipJSONSpace(in, 0)
	if i >= len(in) || in[i] != '{' {
		return false
	}
	// Spans of the values of each expression's first field; -1: absent.
	var spansBuf [16][2]int
	spans := spansBuf[:0]
	if len(s.exprs) > len(spansBuf) {
		spans = make([][2]int, 0, len(s.exprs))
	}
	for range s.exprs {
		spans = append(spans, [2]int{-1, -1})
	}
	end, ok := walkJSONObject(in, i, 1, func(key string, esc bool, vs, ve int) bool {
		if esc {
			key = jsonUnquote(key, true)
		}
		for k := range s.exprs {
			if s.exprs[k].path[0] == key {
				spans[k] = [2]int{vs, ve}
			}
		}
		return true
	})
	if !ok || skipJSONSpace(in, end) != len(in) {
		return false
	}
	for k, x := range s.exprs {
		vs, ve := spans[k][0], spans[k][1]
		if vs < 0 {
			continue
		}
		for _, field := range x.path[1:] {
			if in[vs] != '{' {
				vs = -1
				break
			}
			ns, ne := -1, -1
			walkJSONObject(in, vs, 1, func(key string, esc bool, s0, e0 int) bool {
				if esc {
					key = jsonUnquote(key, true)
				}
				if key == field {
					ns, ne = s0, e0
				}
				return true
			})
			vs, ve = ns, ne
			if vs < 0 {
				break
			}
		}
		if vs < 0 {
			continue
		}
		if v, ok := jsonSpanValue(in[vs:ve]); ok {
			e.setValue(x.name, v)
		}
	}
	return true
}

// jsonSpanValue converts a valid JSON value's text to what extracted holds.
func jsonSpanValue(raw string) (value, bool) {
	switch raw[0] {
	case '"':
		_, esc, _ := scanJSONString(raw, 0)
		return stringValue(jsonUnquote(raw[1:len(raw)-1], esc)), true
	case 't':
		return anyValue(true), true
	case 'f':
		return anyValue(false), true
	case 'n':
		return value{}, false
	case '{', '[':
		var v any
		if err := json.Unmarshal([]byte(raw), &v); err != nil {
			return value{}, false
		}
		x, ok := extractedValue(v)
		return anyValue(x), ok
	default:
		if x, ok := smallIntValue(raw); ok {
			return x, true
		}
		// encoding/json decodes numbers with ParseFloat too; out of
		// range (1e400) it fails, and the field is left out.
		f, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return value{}, false
		}
		return value{kind: valueFloat, f: f}, true
	}
}

// extractedValue converts a decoded JSON value (or JMESPath result) to what
// extracted holds: objects and arrays as their JSON text, null as nothing.
func extractedValue(v any) (any, bool) {
	switch v := v.(type) {
	case nil:
		return nil, false
	case string, float64, bool:
		return v, true
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, false
		}
		return string(b), true
	}
}

func (s *jsonStage) runJMESPath(e *Entry, in string) bool {
	var doc any
	if err := json.Unmarshal([]byte(in), &doc); err != nil {
		return false
	}
	if _, ok := doc.(map[string]any); !ok {
		return false
	}
	for _, x := range s.exprs {
		var r any
		if x.path != nil {
			r = lookupPath(doc, x.path)
		} else {
			var err error
			if r, err = searchJMESPath(x.jmes, doc); err != nil {
				continue
			}
		}
		if v, ok := extractedValue(r); ok {
			e.set(x.name, v)
		}
	}
	return true
}

func lookupPath(doc any, path []string) any {
	for _, f := range path {
		m, ok := doc.(map[string]any)
		if !ok {
			return nil
		}
		doc = m[f]
	}
	return doc
}

// searchJMESPath evaluates jm, turning a panic of the library on odd data
// into an error: the data is the container's output.
func searchJMESPath(jm *jmespath.JMESPath, doc any) (r any, err error) {
	defer func() {
		if p := recover(); p != nil {
			r, err = nil, fmt.Errorf("JMESPath: %v", p)
		}
	}()
	return jm.Search(doc)
}

// smallIntValue reads a JSON number that is an integer of at most 15
// digits (ids, counts, sequence numbers: most numbers in logs) without
// strconv: its float64 is exact, and its text is what formatting that
// float64 back gives (JSON has no leading zeros), so the value keeps the
// text for value.str instead of formatting it again.
func smallIntValue(raw string) (value, bool) {
	digits := raw
	if digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(digits) > 15 {
		return value{}, false
	}
	var n uint64
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		if c < '0' || c > '9' {
			return value{}, false
		}
		n = n*10 + uint64(c-'0')
	}
	f := float64(n)
	if raw[0] == '-' {
		f = -f // -0 stays -0, as ParseFloat reads it
	}
	return value{kind: valueFloat, f: f, s: raw}, true
}
