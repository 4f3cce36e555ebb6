package pipeline

import (
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// A small JSON scanner over strings: it validates a document as
// encoding/json does (the same grammar and nesting limit, so a line is
// malformed here exactly when json.Valid says so) and finds members of
// objects without building the whole tree, so that the json stage's usual
// expressions (a field, a dotted path) cost one pass over the line and no
// allocation for plain string values.

// maxJSONDepth is encoding/json's nesting limit.
const maxJSONDepth = 10000

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipJSONSpace(s string, i int) int {
	for i < len(s) && isJSONSpace(s[i]) {
		i++
	}
	return i
}

// jsonValid reports whether s is one JSON value with optional white space
// around it.
func jsonValid(s string) bool {
	i := skipJSONSpace(s, 0)
	end, ok := skipJSONValue(s, i, 0)
	return ok && skipJSONSpace(s, end) == len(s)
}

// skipJSONValue validates the value at s[i] and returns the index after
// it.
func skipJSONValue(s string, i, depth int) (int, bool) {
	if i >= len(s) {
		return i, false
	}
	switch c := s[i]; {
	case c == '{':
		return walkJSONObject(s, i, depth+1, nil)
	case c == '[':
		return skipJSONArray(s, i, depth+1)
	case c == '"':
		end, _, ok := scanJSONString(s, i)
		return end, ok
	case c == 't':
		return scanJSONLiteral(s, i, "true")
	case c == 'f':
		return scanJSONLiteral(s, i, "false")
	case c == 'n':
		return scanJSONLiteral(s, i, "null")
	case c == '-' || (c >= '0' && c <= '9'):
		return scanJSONNumber(s, i)
	}
	return i, false
}

func scanJSONLiteral(s string, i int, lit string) (int, bool) {
	if len(s)-i >= len(lit) && s[i:i+len(lit)] == lit {
		return i + len(lit), true
	}
	return i, false
}

func scanJSONNumber(s string, i int) (int, bool) {
	if s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return i, false
	}
	if i < len(s) && s[i] == '.' {
		i++
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return i, false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return i, false
		}
	}
	return i, true
}

// scanJSONString validates the string at s[i] == '"' and returns the index
// after its closing quote and whether it holds escapes.
func scanJSONString(s string, i int) (end int, escaped, ok bool) {
	i++
	for i < len(s) {
		// Most bytes are plain: skip eight at a time while none of them is
		// special, then one at a time.
		for i+8 <= len(s) {
			b := s[i : i+8]
			x := uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
				uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
			if jsonSpecialWord(x) {
				break
			}
			i += 8
		}
		for i < len(s) && jsonPlain[s[i]] {
			i++
		}
		if i >= len(s) {
			break
		}
		c := s[i]
		switch {
		case c == '"':
			return i + 1, escaped, true
		case c == '\\':
			escaped = true
			if i+1 >= len(s) {
				return i, escaped, false
			}
			switch s[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(s) || !isHex4(s[i+2:i+6]) {
					return i, escaped, false
				}
				i += 6
			default:
				return i, escaped, false
			}
		case c < 0x20:
			return i, escaped, false
		default:
			i++
		}
	}
	return i, escaped, false
}

// jsonSpecialWord reports whether any of the 8 bytes in x is '"', '\\' or
// a control character, testing them at once: x has a zero byte exactly when
// (x - 0x01..01) & ^x & 0x80..80 is not zero, and a byte below 0x20
// exactly when (x - 0x20..20) & ^x & 0x80..80 is not zero (the borrows only
// ever mark bytes above a byte that is really marked).
func jsonSpecialWord(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	q := x ^ (ones * '"')
	bs := x ^ (ones * '\\')
	return ((q-ones)&^q|(bs-ones)&^bs|(x-ones*0x20)&^x)&highs != 0
}

// jsonPlain marks the bytes a JSON string holds as they are: not '"',
// '\\' or a control character.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func isHex4(s string) bool {
	for i := 0; i < 4; i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func skipJSONArray(s string, i, depth int) (int, bool) {
	if depth > maxJSONDepth {
		return i, false
	}
	i = skipJSONSpace(s, i+1)
	if i < len(s) && s[i] == ']' {
		return i + 1, true
	}
	for {
		end, ok := skipJSONValue(s, i, depth)
		if !ok {
			return end, false
		}
		var more bool
		if i, more, ok = nextJSONItem(s, end, ']'); !ok || !more {
			return i, ok
		}
	}
}

// nextJSONItem reads what follows an array element or object member that
// ends before s[end]: a ',' (more: i is the next item's start) or the
// closing byte (i is after it).
func nextJSONItem(s string, end int, closing byte) (i int, more, ok bool) {
	i = skipJSONSpace(s, end)
	switch {
	case i >= len(s):
		return i, false, false
	case s[i] == ',':
		return skipJSONSpace(s, i+1), true, true
	case s[i] == closing:
		return i + 1, false, true
	}
	return i, false, false
}

// jsonMember is called by walkJSONObject for each member: the key as
// written (without quotes, escapes not decoded) and the value's span. It
// returns false to stop the walk early (the object is then not validated
// to its end).
type jsonMember func(key string, keyEscaped bool, valStart, valEnd int) bool

// walkJSONObject validates the object at s[i] == '{', calling fn (if not
// nil) for each member, and returns the index after it.
func walkJSONObject(s string, i, depth int, fn jsonMember) (int, bool) {
	if depth > maxJSONDepth {
		return i, false
	}
	i = skipJSONSpace(s, i+1)
	if i < len(s) && s[i] == '}' {
		return i + 1, true
	}
	for {
		if i >= len(s) || s[i] != '"' {
			return i, false
		}
		kEnd, kEsc, ok := scanJSONString(s, i)
		if !ok {
			return kEnd, false
		}
		key := s[i+1 : kEnd-1]
		i = skipJSONSpace(s, kEnd)
		if i >= len(s) || s[i] != ':' {
			return i, false
		}
		vStart := skipJSONSpace(s, i+1)
		vEnd, ok := skipJSONValue(s, vStart, depth)
		if !ok {
			return vEnd, false
		}
		if fn != nil && !fn(key, kEsc, vStart, vEnd) {
			return vEnd, true
		}
		var more bool
		if i, more, ok = nextJSONItem(s, vEnd, '}'); !ok || !more {
			return i, ok
		}
	}
}

// jsonUnquote decodes the contents of a valid JSON string (between its
// quotes) as encoding/json does: escapes decoded, a lone surrogate and
// each invalid UTF-8 byte becoming U+FFFD. Without escapes and with valid
// UTF-8 it returns raw itself.
func jsonUnquote(raw string, escaped bool) string {
	if !escaped && utf8.ValidString(raw) {
		return raw
	}
	b := make([]byte, 0, len(raw)+8)
	for i := 0; i < len(raw); {
		c := raw[i]
		switch {
		case c == '\\':
			switch raw[i+1] {
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r := rune(hex4(raw[i+2 : i+6]))
				i += 6
				if utf16.IsSurrogate(r) {
					if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
						if d := utf16.DecodeRune(r, rune(hex4(raw[i+2:i+6]))); d != utf8.RuneError {
							b = utf8.AppendRune(b, d)
							i += 6
							continue
						}
					}
					r = utf8.RuneError
				}
				b = utf8.AppendRune(b, r)
				continue
			default: // '"', '\\', '/'
				b = append(b, raw[i+1])
			}
			i += 2
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, n := utf8.DecodeRuneInString(raw[i:])
			if r == utf8.RuneError && n == 1 {
				b = utf8.AppendRune(b, utf8.RuneError)
			} else {
				b = append(b, raw[i:i+n]...)
			}
			i += n
		}
	}
	return string(b)
}

func hex4(s string) uint16 {
	v, _ := strconv.ParseUint(s, 16, 16)
	return uint16(v)
}
