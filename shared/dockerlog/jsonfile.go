package dockerlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"unicode/utf16"
	"unicode/utf8"
)

// ErrCorruptLine is returned (wrapped, with the reason) by JSONDecoder.Decode
// for a line that is not a json-file entry: bad JSON, a missing or non-string
// "log" or "time", an unparsable time. The caller counts and skips the line.
var ErrCorruptLine = errors.New("corrupt json-file line")

// Errors without a position are built once so that a file full of garbage
// does not also cost an allocation per line.
var (
	errEmptyLine    = fmt.Errorf("%w: empty line", ErrCorruptLine)
	errNotObject    = fmt.Errorf("%w: not a JSON object", ErrCorruptLine)
	errMissingLog   = fmt.Errorf("%w: missing \"log\" field", ErrCorruptLine)
	errMissingTime  = fmt.Errorf("%w: missing \"time\" field", ErrCorruptLine)
	errLogType      = fmt.Errorf("%w: \"log\" is not a string", ErrCorruptLine)
	errStreamType   = fmt.Errorf("%w: \"stream\" is not a string", ErrCorruptLine)
	errTimeType     = fmt.Errorf("%w: \"time\" is not a string", ErrCorruptLine)
	errAttrsType    = fmt.Errorf("%w: \"attrs\" is not an object of strings", ErrCorruptLine)
	errTrailingData = fmt.Errorf("%w: data after the object", ErrCorruptLine)
	errTooDeep      = fmt.Errorf("%w: nesting too deep", ErrCorruptLine)
)

// maxNesting matches encoding/json's limit, so that an unknown field the
// standard library would skip is skipped here too.
const maxNesting = 10000

// Attr is one entry of a json-file line's "attrs" object (set by the labels,
// env and tag log-opts).
type Attr struct{ Key, Value []byte }

// JSONLine is one decoded json-file line. Its slices alias the JSONDecoder's
// buffers and stay valid until the next Decode with the same decoder.
type JSONLine struct {
	// Log is the unescaped "log" value, including its trailing '\n' when it
	// has one: Docker omits it only on a chunk of a line longer than 16 KiB
	// that is not the last chunk.
	Log []byte
	// Stream is SourceStdout or SourceStderr (no allocation), any other
	// value as written, or "" when the field is absent.
	Stream string
	// TimeNano is "time" as Unix nanoseconds.
	TimeNano int64
	// Attrs holds "attrs" in file order; duplicate keys are kept.
	Attrs []Attr
	// InvalidUTF8 reports that invalid UTF-8 (or a lone UTF-16 surrogate
	// escape) in Log or Attrs was replaced by U+FFFD. It is not an error:
	// the line is still shipped, the caller counts it.
	InvalidUTF8 bool
}

// EndsLine reports whether this entry completes a line: Docker writes the
// line's '\n' into "log" only with its last chunk.
func (l *JSONLine) EndsLine() bool {
	return len(l.Log) > 0 && l.Log[len(l.Log)-1] == '\n'
}

// Text is Log without its trailing '\n', the chunk to give a Joiner.
func (l *JSONLine) Text() []byte {
	if l.EndsLine() {
		return l.Log[:len(l.Log)-1]
	}
	return l.Log
}

// JSONDecoder decodes json-file lines without reflection, reusing its buffers
// so that decoding costs no allocation once they have grown to the largest
// line seen. A JSONDecoder is not safe for concurrent use.
//
// It follows JSON (RFC 8259) with these deliberate differences: field names
// match exactly (encoding/json also accepts other letter cases); raw control
// characters inside strings are kept instead of rejected, because dropping a
// log line over a stray tab helps nobody; invalid UTF-8 is replaced by U+FFFD
// exactly as encoding/json does. When a field appears twice the last one
// wins, as with encoding/json.
type JSONDecoder struct {
	log     []byte
	attrBuf []byte
	attrOff []int // key start, key end, value start, value end: per attr, into attrBuf
	attrs   []Attr
	scratch []byte // keys, stream and time values that contain escapes
	stack   []byte // closing brackets while skipping an unknown value
	// odd remembers the last stream name that was neither stdout nor
	// stderr, so that a container with one keeps costing no allocation.
	odd string
}

// Decode parses line, which may end in '\n', into out. On error out is left
// zero.
func (d *JSONDecoder) Decode(line []byte, out *JSONLine) error {
	*out = JSONLine{}
	err := d.decode(line, out)
	if err != nil {
		*out = JSONLine{}
	}
	return err
}

func (d *JSONDecoder) decode(line []byte, out *JSONLine) error {
	i := skipSpace(line, 0)
	if i == len(line) {
		return errEmptyLine
	}
	if line[i] != '{' {
		return errNotObject
	}
	i = skipSpace(line, i+1)
	if i < len(line) && line[i] == '}' {
		return errMissingLog
	}

	// A repeated field replaces the earlier one, and so does its UTF-8 report.
	var haveLog, haveTime, logBad, attrsBad bool
	d.attrOff = d.attrOff[:0]
	for {
		if i == len(line) || line[i] != '"' {
			return syntaxError("expected a field name", i)
		}
		key, next, err := d.readString(line, i+1)
		if err != nil {
			return err
		}
		i = skipSpace(line, next)
		if i == len(line) || line[i] != ':' {
			return syntaxError("expected ':'", i)
		}
		i = skipSpace(line, i+1)
		if i == len(line) {
			return syntaxError("expected a value", i)
		}

		switch string(key) {
		case "log":
			if line[i] != '"' {
				return errLogType
			}
			d.log, i, logBad, err = appendString(d.log[:0], line, i+1)
			if err != nil {
				return err
			}
			haveLog = true
		case "stream":
			if line[i] != '"' {
				return errStreamType
			}
			var s []byte
			s, i, err = d.readString(line, i+1)
			if err != nil {
				return err
			}
			out.Stream = d.intern(s)
		case "time":
			if line[i] != '"' {
				return errTimeType
			}
			var s []byte
			s, i, err = d.readString(line, i+1)
			if err != nil {
				return err
			}
			out.TimeNano, err = ParseTimestamp(s)
			if err != nil {
				return fmt.Errorf("%w: bad \"time\": %w", ErrCorruptLine, err)
			}
			haveTime = true
		case "attrs":
			i, attrsBad, err = d.readAttrs(line, i)
			if err != nil {
				return err
			}
		default:
			i, err = d.skipValue(line, i)
			if err != nil {
				return err
			}
		}

		i = skipSpace(line, i)
		if i == len(line) {
			return syntaxError("unterminated object", i)
		}
		if line[i] == '}' {
			break
		}
		if line[i] != ',' {
			return syntaxError("expected ',' or '}'", i)
		}
		i = skipSpace(line, i+1)
	}
	if skipSpace(line, i+1) != len(line) {
		return errTrailingData
	}
	if !haveLog {
		return errMissingLog
	}
	if !haveTime {
		return errMissingTime
	}

	out.Log = d.log
	out.InvalidUTF8 = logBad || attrsBad
	// Attr slices are built only now: attrBuf may have moved while growing.
	d.attrs = d.attrs[:0]
	for k := 0; k+3 < len(d.attrOff); k += 4 {
		o := d.attrOff[k : k+4 : k+4]
		d.attrs = append(d.attrs, Attr{
			Key:   d.attrBuf[o[0]:o[1]:o[1]],
			Value: d.attrBuf[o[2]:o[3]:o[3]],
		})
	}
	if len(d.attrs) > 0 {
		out.Attrs = d.attrs
	}
	return nil
}

func syntaxError(what string, offset int) error {
	return fmt.Errorf("%w: %s at offset %d", ErrCorruptLine, what, offset)
}

// intern returns s as a string without allocating for the names Docker uses.
func (d *JSONDecoder) intern(s []byte) string {
	switch string(s) {
	case SourceStdout:
		return SourceStdout
	case SourceStderr:
		return SourceStderr
	case d.odd:
		return d.odd
	}
	d.odd = string(s)
	return d.odd
}

// readAttrs parses the "attrs" value at line[i]: an object of strings, or null.
func (d *JSONDecoder) readAttrs(line []byte, i int) (next int, invalid bool, err error) {
	// A repeated "attrs" replaces the earlier one.
	d.attrBuf = d.attrBuf[:0]
	d.attrOff = d.attrOff[:0]
	if hasLiteral(line, i, "null") {
		return i + 4, false, nil
	}
	if line[i] != '{' {
		return 0, false, errAttrsType
	}
	i = skipSpace(line, i+1)
	if i < len(line) && line[i] == '}' {
		return i + 1, false, nil
	}
	for {
		if i == len(line) || line[i] != '"' {
			return 0, false, syntaxError("expected an attrs key", i)
		}
		var bad bool
		ks := len(d.attrBuf)
		d.attrBuf, i, bad, err = appendString(d.attrBuf, line, i+1)
		if err != nil {
			return 0, false, err
		}
		invalid = invalid || bad
		ke := len(d.attrBuf)
		i = skipSpace(line, i)
		if i == len(line) || line[i] != ':' {
			return 0, false, syntaxError("expected ':'", i)
		}
		i = skipSpace(line, i+1)
		if i == len(line) || line[i] != '"' {
			return 0, false, errAttrsType
		}
		d.attrBuf, i, bad, err = appendString(d.attrBuf, line, i+1)
		if err != nil {
			return 0, false, err
		}
		invalid = invalid || bad
		d.attrOff = append(d.attrOff, ks, ke, ke, len(d.attrBuf))
		i = skipSpace(line, i)
		if i == len(line) {
			return 0, false, syntaxError("unterminated attrs", i)
		}
		if line[i] == '}' {
			return i + 1, invalid, nil
		}
		if line[i] != ',' {
			return 0, false, syntaxError("expected ',' or '}' in attrs", i)
		}
		i = skipSpace(line, i+1)
	}
}

// readString returns the string starting after the opening quote at
// line[i-1]: the raw bytes when they need no unescaping (the usual case for
// names, streams and times), otherwise an unescaped copy in d.scratch.
func (d *JSONDecoder) readString(line []byte, i int) (s []byte, next int, err error) {
	j := scanPlain(line, i)
	if j < len(line) && line[j] == '"' {
		return line[i:j], j + 1, nil
	}
	d.scratch, next, _, err = appendString(d.scratch[:0], line, i)
	return d.scratch, next, err
}

// appendString unescapes the JSON string starting after the opening quote
// at s[i-1] onto dst and returns the index after the closing quote. invalid
// reports a U+FFFD replacement of invalid UTF-8 or of a lone surrogate.
func appendString(dst, s []byte, i int) (out []byte, next int, invalid bool, err error) {
	start := i
	for {
		i = scanPlain(s, i)
		if i == len(s) {
			return dst, 0, false, syntaxError("unterminated string", i)
		}
		switch c := s[i]; c {
		case '"':
			return append(dst, s[start:i]...), i + 1, invalid, nil
		case '\\':
			dst = append(dst, s[start:i]...)
			if i+1 == len(s) {
				return dst, 0, false, syntaxError("unterminated string", i)
			}
			switch e := s[i+1]; e {
			case '"', '\\', '/':
				dst = append(dst, e)
				i += 2
			case 'b':
				dst = append(dst, '\b')
				i += 2
			case 'f':
				dst = append(dst, '\f')
				i += 2
			case 'n':
				dst = append(dst, '\n')
				i += 2
			case 'r':
				dst = append(dst, '\r')
				i += 2
			case 't':
				dst = append(dst, '\t')
				i += 2
			case 'u':
				r, ok := hex4(s, i+2)
				if !ok {
					return dst, 0, false, syntaxError("bad \\u escape", i)
				}
				i += 6
				if utf16.IsSurrogate(r) {
					// Only a high surrogate directly followed by an escaped
					// low one makes a rune; anything else is replaced, and
					// a following escape is then decoded on its own.
					r2, ok := rune(0), false
					if i+1 < len(s) && s[i] == '\\' && s[i+1] == 'u' {
						r2, ok = hex4(s, i+2)
					}
					if dec := utf16.DecodeRune(r, r2); ok && dec != utf8.RuneError {
						r = dec
						i += 6
					} else {
						r = utf8.RuneError
						invalid = true
					}
				}
				dst = utf8.AppendRune(dst, r)
			default:
				return dst, 0, false, syntaxError("bad escape", i)
			}
			start = i
		default: // c >= 0x80
			if r, size := utf8.DecodeRune(s[i:]); r != utf8.RuneError || size != 1 {
				i += size // valid: stays part of the run
				continue
			}
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\uFFFD"...)
			invalid = true
			i++
			start = i
		}
	}
}

func hex4(s []byte, i int) (rune, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	var r rune
	for _, c := range s[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// scanPlain returns the index of the first byte at or after i that a string
// decoder must look at ('"', '\\' or a non-ASCII byte), or len(s). Log text
// is mostly plain ASCII, so it tests eight bytes per step: a byte equal to c
// makes (x^c*lsb) zero, and v-lsb &^ v sets the top bit of a zero byte (and
// possibly of bytes above it, which the lowest-bit search ignores).
func scanPlain(s []byte, i int) int {
	for ; i+8 <= len(s); i += 8 {
		x := binary.LittleEndian.Uint64(s[i:])
		q := x ^ (lsb * '"')
		b := x ^ (lsb * '\\')
		if m := ((q - lsb) &^ q) | ((b - lsb) &^ b) | x; m&msb != 0 {
			return i + bits.TrailingZeros64(m&msb)/8
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' || c >= 0x80 {
			return i
		}
	}
	return i
}

func skipSpace(s []byte, i int) int {
	for ; i < len(s); i++ {
		switch s[i] {
		case ' ', '\t', '\n', '\r':
		default:
			return i
		}
	}
	return i
}

func hasLiteral(s []byte, i int, lit string) bool {
	return len(s)-i >= len(lit) && string(s[i:i+len(lit)]) == lit
}

// skipValue validates and skips the JSON value at s[i] (an unknown field:
// Docker adds none today, but a newer daemon may).
func (d *JSONDecoder) skipValue(s []byte, i int) (int, error) {
	d.stack = d.stack[:0]
	for {
		// A value starts at i.
		i = skipSpace(s, i)
		if i == len(s) {
			return 0, syntaxError("expected a value", i)
		}
		switch c := s[i]; {
		case c == '"':
			var err error
			if i, err = skipString(s, i+1); err != nil {
				return 0, err
			}
		case c == '{' || c == '[':
			if len(d.stack) >= maxNesting-1 {
				return 0, errTooDeep
			}
			closer := byte('}')
			if c == '[' {
				closer = ']'
			}
			i = skipSpace(s, i+1)
			if i < len(s) && s[i] == closer {
				i++
				break
			}
			d.stack = append(d.stack, closer)
			if closer == '}' {
				var err error
				if i, err = skipKey(s, i); err != nil {
					return 0, err
				}
			}
			continue
		case hasLiteral(s, i, "true"), hasLiteral(s, i, "null"):
			i += 4
		case hasLiteral(s, i, "false"):
			i += 5
		case c == '-' || isDigit(c):
			var err error
			if i, err = skipNumber(s, i); err != nil {
				return 0, err
			}
		default:
			return 0, syntaxError("bad value", i)
		}

		// A value ended at i: close what it ends, then find the next one.
		for {
			if len(d.stack) == 0 {
				return i, nil
			}
			i = skipSpace(s, i)
			if i == len(s) {
				return 0, syntaxError("unterminated value", i)
			}
			top := d.stack[len(d.stack)-1]
			if s[i] == top {
				d.stack = d.stack[:len(d.stack)-1]
				i++
				continue
			}
			if s[i] != ',' {
				return 0, syntaxError("expected ',' or a closing bracket", i)
			}
			i++
			if top == '}' {
				var err error
				if i, err = skipKey(s, i); err != nil {
					return 0, err
				}
			}
			break
		}
	}
}

// skipKey skips `"name" :` starting at or before whitespace at s[i].
func skipKey(s []byte, i int) (int, error) {
	i = skipSpace(s, i)
	if i == len(s) || s[i] != '"' {
		return 0, syntaxError("expected a field name", i)
	}
	i, err := skipString(s, i+1)
	if err != nil {
		return 0, err
	}
	i = skipSpace(s, i)
	if i == len(s) || s[i] != ':' {
		return 0, syntaxError("expected ':'", i)
	}
	return i + 1, nil
}

// skipString validates the escapes of the string starting after the quote
// at s[i-1] and returns the index after its closing quote. Invalid UTF-8 is
// not an error (encoding/json would replace it).
func skipString(s []byte, i int) (int, error) {
	for {
		i = scanPlain(s, i)
		if i == len(s) {
			return 0, syntaxError("unterminated string", i)
		}
		switch s[i] {
		case '"':
			return i + 1, nil
		case '\\':
			if i+1 == len(s) {
				return 0, syntaxError("unterminated string", i)
			}
			switch s[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if _, ok := hex4(s, i+2); !ok {
					return 0, syntaxError("bad \\u escape", i)
				}
				i += 6
			default:
				return 0, syntaxError("bad escape", i)
			}
		default:
			i++
		}
	}
}

// skipNumber skips -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func skipNumber(s []byte, i int) (int, error) {
	start := i
	if s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && isDigit(s[i]):
		i = skipDigits(s, i)
	default:
		return 0, syntaxError("bad number", start)
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i == len(s) || !isDigit(s[i]) {
			return 0, syntaxError("bad number", start)
		}
		i = skipDigits(s, i)
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i == len(s) || !isDigit(s[i]) {
			return 0, syntaxError("bad number", start)
		}
		i = skipDigits(s, i)
	}
	return i, nil
}

func skipDigits(s []byte, i int) int {
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i
}
