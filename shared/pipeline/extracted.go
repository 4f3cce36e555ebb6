package pipeline

import "strconv"

// value is one extracted value. Parsing stages find strings (regex, logfmt,
// JSON strings), numbers and booleans (JSON): held as they are, none of them
// is boxed into an interface, which would cost an allocation per field per
// line. Anything else (a template's result is a string too) is held in v.
type value struct {
	kind valueKind
	s    string // a string's value; a number's text when it is what formatting f gives
	f    float64
	v    any
}

type valueKind uint8

const (
	valueString valueKind = iota
	valueFloat
	valueBool // f is 1 for true
	valueAny
)

func stringValue(s string) value { return value{kind: valueString, s: s} }

// anyValue holds v, keeping strings, float64 and bool unboxed.
func anyValue(v any) value {
	switch v := v.(type) {
	case string:
		return value{kind: valueString, s: v}
	case float64:
		return value{kind: valueFloat, f: v}
	case bool:
		x := value{kind: valueBool}
		if v {
			x.f = 1
		}
		return x
	}
	return value{kind: valueAny, v: v}
}

// any returns the value as templates and Promtail's extracted map see it.
func (x value) any() any {
	switch x.kind {
	case valueString:
		return x.s
	case valueFloat:
		return x.f
	case valueBool:
		return x.f != 0
	}
	return x.v
}

// str is stringOf without boxing.
func (x value) str() (string, bool) {
	switch x.kind {
	case valueString:
		return x.s, true
	case valueFloat:
		if x.s != "" {
			return x.s, true
		}
		return strconv.FormatFloat(x.f, 'f', -1, 64), true
	case valueBool:
		return strconv.FormatBool(x.f != 0), true
	}
	return stringOf(x.v)
}

// extracted holds what parsing stages found, by name, in the order first
// set. A pipeline extracts a few fields per line: a linear look beats a
// map's hashing there, and the slice is reused from line to line; past
// extractedIndexed names a map indexes them.
type extracted struct {
	kv  []namedValue
	idx map[string]int
}

type namedValue struct {
	name string
	val  value
}

const extractedIndexed = 16

func (x *extracted) reset() {
	clear(x.kv) // let the strings go
	x.kv = x.kv[:0]
	if x.idx != nil {
		clear(x.idx)
	}
}

func (x *extracted) find(name string) int {
	if len(x.kv) > extractedIndexed {
		if i, ok := x.idx[name]; ok {
			return i
		}
		return -1
	}
	for i := range x.kv {
		if x.kv[i].name == name {
			return i
		}
	}
	return -1
}

func (x *extracted) lookup(name string) (value, bool) {
	if i := x.find(name); i >= 0 {
		return x.kv[i].val, true
	}
	return value{}, false
}

func (x *extracted) set(name string, v value) {
	if i := x.find(name); i >= 0 {
		x.kv[i].val = v
		return
	}
	x.kv = append(x.kv, namedValue{name, v})
	switch n := len(x.kv); {
	case n == extractedIndexed+1:
		if x.idx == nil {
			x.idx = make(map[string]int, 2*extractedIndexed)
		}
		for i := range x.kv {
			x.idx[x.kv[i].name] = i
		}
	case n > extractedIndexed+1:
		x.idx[name] = n - 1
	}
}

// Extracted returns the value a stage extracted under name, as Promtail's
// extracted map holds it (a string, float64 or bool, or a stage's other
// result), without the labels the entry started with.
func (e *Entry) Extracted(name string) (any, bool) {
	v, ok := e.extracted.lookup(name)
	if !ok {
		return nil, false
	}
	return v.any(), true
}
