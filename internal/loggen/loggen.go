// Package loggen owns the format of the test log generator's lines
// (scripts/loggen): self-describing lines that a test can check arrived
// whole, exactly once and in order, byte for byte.
//
// A line is
//
//	loggen id=<id> seq=<n> stream=<stdout|stderr> len=<L> text=<ascii|unicode> <padding>
//
// where L is the length of the whole line in bytes (without the newline) and
// the padding is derived from seq, L and the text kind alone, so Parse can
// rebuild the line and compare every byte.
package loggen

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Streams a line can be written to.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// Text kinds of the padding.
const (
	textASCII   = "ascii"
	textUnicode = "unicode"
)

const prefix = "loggen "

// Errors Parse returns, wrapped with details.
var (
	// ErrNotLoggen: the line does not start with "loggen ".
	ErrNotLoggen = errors.New("not a loggen line")
	// ErrMalformed: the header fields are missing or invalid.
	ErrMalformed = errors.New("malformed loggen line")
	// ErrLength: the line is not as long as its len= field says (truncated,
	// split, or joined with something else).
	ErrLength = errors.New("loggen line has the wrong length")
	// ErrContent: the line has the right length but some byte differs from
	// what the generator wrote.
	ErrContent = errors.New("loggen line content differs")
)

// Record is what a line says about itself.
type Record struct {
	ID      string
	Seq     uint64
	Stream  string
	Len     int // bytes in the whole line, without a newline
	Unicode bool
}

// asciiPadding is the alphabet of ASCII padding.
const asciiPadding = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"

// unicodePadding mixes 1- to 4-byte UTF-8 runes (accents, CJK, emoji) with the
// ASCII characters that JSON encoders escape (", \, <, >, &), so a line
// exercises UTF-8 handling and escaping, and a split at a byte boundary can
// fall inside a rune.
var unicodePadding = []rune("aé\"ü日ñ本\\ç😀語<ß中>文🚀&ø✓x€")

// ValidID reports whether id can be used in a line: 1 to 64 bytes of
// [A-Za-z0-9._-].
func ValidID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Format returns the line with sequence number seq for stream, padded to size
// bytes, or longer if the header alone needs more. id must satisfy ValidID
// and stream must be Stdout or Stderr; Format panics otherwise, as the
// generator validates its flags first.
func Format(id string, seq uint64, stream string, size int, unicode bool) string {
	return string(Append(nil, id, seq, stream, size, unicode))
}

// Append is Format appending to dst, for a generator that reuses a buffer.
func Append(dst []byte, id string, seq uint64, stream string, size int, unicode bool) []byte {
	if !ValidID(id) {
		panic(fmt.Sprintf("loggen: invalid id %q", id))
	}
	if stream != Stdout && stream != Stderr {
		panic(fmt.Sprintf("loggen: invalid stream %q", stream))
	}
	text := textASCII
	if unicode {
		text = textUnicode
	}
	seqStr := strconv.FormatUint(seq, 10)
	// Header without the digits of L, plus the space and at least one byte of
	// padding, so a line never ends in a space.
	fixed := len(prefix) + len("id=") + len(id) + len(" seq=") + len(seqStr) +
		len(" stream=") + len(stream) + len(" len=") + len(" text=") + len(text) + 1 + 1
	total := lineLen(fixed, size)

	start := len(dst)
	dst = append(dst, prefix...)
	dst = append(dst, "id="...)
	dst = append(dst, id...)
	dst = append(dst, " seq="...)
	dst = append(dst, seqStr...)
	dst = append(dst, " stream="...)
	dst = append(dst, stream...)
	dst = append(dst, " len="...)
	dst = strconv.AppendInt(dst, int64(total), 10)
	dst = append(dst, " text="...)
	dst = append(dst, text...)
	dst = append(dst, ' ')
	return appendPadding(dst, seq, total-(len(dst)-start), unicode)
}

// lineLen returns the length of a line whose header, without the digits of
// its own length, takes fixed bytes: at least size, and enough for the header.
func lineLen(fixed, size int) int {
	digits := 1
	for {
		n := max(size, fixed+digits)
		d := len(strconv.Itoa(n))
		if d == digits {
			return n
		}
		digits = d
	}
}

// appendPadding appends exactly n bytes of padding for line seq.
func appendPadding(dst []byte, seq uint64, n int, unicode bool) []byte {
	if !unicode {
		chunk := asciiPadding[seq%uint64(len(asciiPadding)):]
		for n > 0 {
			if len(chunk) > n {
				chunk = chunk[:n]
			}
			dst = append(dst, chunk...)
			n -= len(chunk)
			chunk = asciiPadding
		}
		return dst
	}
	k := int(seq % uint64(len(unicodePadding)))
	for n > 0 {
		r := unicodePadding[k%len(unicodePadding)]
		if w := utf8.RuneLen(r); w <= n {
			dst = utf8.AppendRune(dst, r)
			n -= w
		} else {
			// Not enough room for this rune: finish with ASCII.
			dst = append(dst, asciiPadding[k%len(asciiPadding)])
			n--
		}
		k++
	}
	return dst
}

// Parse reads a line's header and checks the whole line against what the
// generator writes for that header. The error wraps ErrNotLoggen,
// ErrMalformed, ErrLength or ErrContent; for ErrLength and ErrContent the
// Record is still filled in from the header, so a test can say which line
// went wrong.
func Parse(line string) (Record, error) {
	var rec Record
	rest, ok := strings.CutPrefix(line, prefix)
	if !ok {
		return rec, ErrNotLoggen
	}
	fields := make([]string, 0, 5)
	for _, key := range []string{"id=", "seq=", "stream=", "len=", "text="} {
		var field string
		field, rest, ok = strings.Cut(rest, " ")
		if !ok && key != "text=" {
			return rec, fmt.Errorf("%w: header ends before %q", ErrMalformed, key)
		}
		value, found := strings.CutPrefix(field, key)
		if !found {
			return rec, fmt.Errorf("%w: want field %q, got %q", ErrMalformed, key, truncate(field))
		}
		fields = append(fields, value)
	}
	rec.ID = fields[0]
	if !ValidID(rec.ID) {
		return rec, fmt.Errorf("%w: invalid id %q", ErrMalformed, truncate(rec.ID))
	}
	seq, err := strconv.ParseUint(fields[1], 10, 64)
	if err != nil {
		return rec, fmt.Errorf("%w: seq: %w", ErrMalformed, err)
	}
	rec.Seq = seq
	rec.Stream = fields[2]
	if rec.Stream != Stdout && rec.Stream != Stderr {
		return rec, fmt.Errorf("%w: invalid stream %q", ErrMalformed, truncate(rec.Stream))
	}
	n, err := strconv.Atoi(fields[3])
	if err != nil || n <= 0 {
		return rec, fmt.Errorf("%w: invalid len %q", ErrMalformed, truncate(fields[3]))
	}
	rec.Len = n
	switch fields[4] {
	case textASCII:
	case textUnicode:
		rec.Unicode = true
	default:
		return rec, fmt.Errorf("%w: invalid text %q", ErrMalformed, truncate(fields[4]))
	}

	if len(line) != rec.Len {
		return rec, fmt.Errorf("%w: line %s seq %d: len=%d, got %d bytes", ErrLength, rec.ID, rec.Seq, rec.Len, len(line))
	}
	want := Append(make([]byte, 0, len(line)), rec.ID, rec.Seq, rec.Stream, rec.Len, rec.Unicode)
	if string(want) != line {
		i := 0
		for i < len(line) && line[i] == want[i] {
			i++
		}
		return rec, fmt.Errorf("%w: line %s seq %d: first difference at byte %d of %d", ErrContent, rec.ID, rec.Seq, i, rec.Len)
	}
	return rec, nil
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// DockerChunk is where dockerd cuts a long line (its copier's buffer).
const DockerChunk = 16 << 10

// JSONFileView returns line as dockerd's json-file driver stores it: cut
// into 16 KiB chunks, one JSON object each, whose encoder writes every byte
// of invalid UTF-8 as U+FFFD. When a cut falls inside a multi-byte
// character both halves are lost on disk for good, so a reader of the file
// (the sidecar) ships U+FFFD there; the plugin receives the raw bytes.
func JSONFileView(line string) string {
	var b strings.Builder
	for len(line) > 0 {
		chunk := line[:min(len(line), DockerChunk)]
		line = line[len(chunk):]
		for i := 0; i < len(chunk); {
			r, size := utf8.DecodeRuneInString(chunk[i:])
			if r == utf8.RuneError && size == 1 {
				b.WriteRune(utf8.RuneError)
			} else {
				b.WriteString(chunk[i : i+size])
			}
			i += size
		}
	}
	return b.String()
}

// jsonLevels are the levels AppendJSON gives stdout lines in turn; stderr
// lines are "error".
var jsonLevels = [...]string{"info", "info", "debug", "info", "warn"}

// AppendJSON appends line seq as a service that logs JSON writes it, one
// object on one line:
//
//	{"level":"info","seq":N,"stream":"stdout","msg":"<the loggen line>"}
//
// The loggen line in "msg" (see Append, JSON-escaped when unicode) is padded
// so that the whole object is about size bytes, never less than its header
// needs. Parse the "msg" field's value to check the line.
func AppendJSON(dst []byte, id string, seq uint64, stream string, size int, unicode bool) []byte {
	level := "error"
	if stream == Stdout {
		level = jsonLevels[seq%uint64(len(jsonLevels))]
	}
	start := len(dst)
	dst = append(dst, `{"level":"`...)
	dst = append(dst, level...)
	dst = append(dst, `","seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"stream":"`...)
	dst = append(dst, stream...)
	dst = append(dst, `","msg":"`...)
	inner := size - (len(dst) - start) - len(`"}`)
	line := Append(nil, id, seq, stream, max(inner, 0), unicode)
	for _, c := range line {
		if c == '"' || c == '\\' {
			dst = append(dst, '\\')
		}
		dst = append(dst, c)
	}
	return append(dst, `"}`...)
}
