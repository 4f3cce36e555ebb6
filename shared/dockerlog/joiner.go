package dockerlog

import "unicode/utf8"

// DefaultMaxLine is the line length the Joiner cuts at when given none. It is
// Loki's default max_line_size (256KB): a longer line would be rejected whole
// by the server, so keeping more than that in memory buys nothing.
const DefaultMaxLine = 256 << 10

// maxPendingStreams bounds how many streams may have a partial line waiting
// at once. Docker has two (stdout, stderr); the spare slots only make the
// joiner tolerant of an odd source name.
const maxPendingStreams = 4

// Line is a complete log line out of the Joiner.
type Line struct {
	Stream string
	// TimeNano is the time of the line's first chunk: Docker stamps every
	// chunk of a split line with it, and it orders the line among others.
	TimeNano int64
	// Data is the line without a trailing newline. It is at most maxLine
	// bytes long also once ValidUTF8 has replaced each of its invalid bytes
	// with U+FFFD (three bytes): the limit applies to what is sent, which
	// Loki checks against its max_line_size, not to what was read. It
	// aliases either the chunk passed to Push (a line that came whole) or
	// the Joiner's buffer: it is valid until the next Push or Flush and only
	// while the caller keeps that chunk's memory unchanged.
	Data []byte
	// Truncated reports that the line, repaired, was longer than maxLine:
	// Data holds its first bytes (cut between two runes or invalid bytes,
	// never inside a valid sequence) and the rest was discarded.
	Truncated bool
	// Chunks is how many pieces the line arrived in (1 for a whole line),
	// including discarded ones.
	Chunks int
}

// Joiner reassembles lines that Docker split into chunks (lines longer than
// 16 KiB, in the plugin FIFO, json-file and the logs stream alike). Chunks of
// stdout and stderr may interleave, so each stream has its own pending line.
// Memory is bounded by maxLine per pending stream, and a joiner that has
// grown its buffers makes no allocation. A Joiner is not safe for concurrent
// use; use one per container source.
type Joiner struct {
	maxLine int
	// mayGrow is maxLine/3: only a line longer than that can pass maxLine
	// once its invalid bytes become U+FFFD, so only such a line is
	// checked; the usual line costs one comparison.
	mayGrow int
	pending [maxPendingStreams]pendingLine
}

type pendingLine struct {
	active    bool
	stream    string
	timeNano  int64
	buf       []byte
	truncated bool
	chunks    int
}

// NewJoiner returns a Joiner that cuts lines at maxLine bytes, or at
// DefaultMaxLine when maxLine <= 0.
func NewJoiner(maxLine int) *Joiner {
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	return &Joiner{maxLine: maxLine, mayGrow: maxLine / 3}
}

// Push adds one chunk of stream's current line; ends says whether it is the
// line's last chunk (for a FIFO frame: !Partial || PartialLogMetadata.Last;
// for a json-file line: Log ended in '\n', which the caller strips). It
// returns the completed line and true when ends is true.
//
// When more streams than the joiner can track have a partial line at once,
// a chunk of yet another stream is returned at once as a line of its own:
// the text is kept, only the joining is lost.
func (j *Joiner) Push(stream string, timeNano int64, chunk []byte, ends bool) (Line, bool) {
	p := j.find(stream)
	if p == nil && !ends {
		p = j.free()
	}
	if p == nil {
		// A line that came whole (the usual case) is returned without
		// copying; so is a chunk that no free slot is left for.
		l := Line{Stream: stream, TimeNano: timeNano, Data: chunk, Chunks: 1}
		if len(chunk) > j.mayGrow {
			l.Data, l.Truncated = j.fit(chunk)
		}
		return l, true
	}
	if !p.active {
		p.active, p.stream, p.timeNano = true, stream, timeNano
	}
	p.chunks++
	if !p.truncated {
		j.appendChunk(p, chunk)
	}
	if !ends {
		return Line{}, false
	}
	return j.take(p), true
}

// Flush emits the pending partial lines, for example when the stream they
// came from has ended, in no particular order. Each Line is valid during the
// call to fn.
func (j *Joiner) Flush(fn func(Line)) {
	for i := range j.pending {
		if p := &j.pending[i]; p.active {
			fn(j.take(p))
		}
	}
}

// Pending reports how many streams have a partial line waiting.
func (j *Joiner) Pending() int {
	n := 0
	for i := range j.pending {
		if j.pending[i].active {
			n++
		}
	}
	return n
}

func (j *Joiner) find(stream string) *pendingLine {
	for i := range j.pending {
		if p := &j.pending[i]; p.active && p.stream == stream {
			return p
		}
	}
	return nil
}

func (j *Joiner) free() *pendingLine {
	for i := range j.pending {
		if p := &j.pending[i]; !p.active {
			return p
		}
	}
	return nil
}

// appendChunk adds chunk to p.buf, cutting the line at maxLine bytes as
// read (take cuts it further if its repair would pass maxLine). The buffer
// grows by doubling but never past maxLine, so that one huge line cannot
// leave more than maxLine behind.
func (j *Joiner) appendChunk(p *pendingLine, chunk []byte) {
	if need := len(p.buf) + len(chunk); need > cap(p.buf) {
		newCap := max(2*cap(p.buf), need, 1024)
		newCap = min(newCap, j.maxLine)
		if newCap > cap(p.buf) {
			grown := make([]byte, len(p.buf), newCap)
			copy(grown, p.buf)
			p.buf = grown
		}
	}
	if len(p.buf)+len(chunk) <= j.maxLine {
		p.buf = append(p.buf, chunk...)
		return
	}
	p.truncated = true
	if at := cutPoint(p.buf, chunk, j.maxLine); at <= len(p.buf) {
		p.buf = p.buf[:at]
	} else {
		p.buf = append(p.buf, chunk[:at-len(p.buf)]...)
	}
}

// take returns p's line and frees p; the buffer is kept for the next line.
func (j *Joiner) take(p *pendingLine) Line {
	l := Line{Stream: p.stream, TimeNano: p.timeNano, Data: p.buf, Truncated: p.truncated, Chunks: p.chunks}
	if len(l.Data) > j.mayGrow {
		var cut bool
		l.Data, cut = j.fit(l.Data)
		l.Truncated = l.Truncated || cut
	}
	*p = pendingLine{buf: p.buf[:0]}
	return l
}

// fit returns the longest prefix of data that is at most maxLine bytes
// once ValidUTF8 has repaired it, and whether that is shorter than data.
// The cut falls between two runes or invalid bytes: a valid sequence is
// kept whole or left out whole, so the prefix decodes as it did inside
// the whole line. Valid UTF-8 costs one utf8.Valid pass, and no line costs
// more than its first maxLine bytes: repair never shortens, so nothing past
// them can be kept.
func (j *Joiner) fit(data []byte) ([]byte, bool) {
	if utf8.Valid(data[:min(len(data), j.maxLine+utf8.UTFMax)]) {
		if len(data) <= j.maxLine {
			return data, false
		}
		return data[:cutPoint(nil, data, j.maxLine)], true
	}
	// ValidUTF8 keeps a valid rune and turns each byte that does not start
	// one into the three bytes of U+FFFD; count the same way.
	size := 0
	for i := 0; i < len(data); {
		n, grown := 1, 1
		if c := data[i]; c >= utf8.RuneSelf {
			var r rune
			r, n = utf8.DecodeRune(data[i:])
			if grown = n; r == utf8.RuneError && n == 1 {
				grown = replacementLen
			}
		}
		if size+grown > j.maxLine {
			return data[:i], true
		}
		size += grown
		i += n
	}
	return data, false
}

// cutPoint returns where to cut head+chunk, which is longer than limit, so
// that at most limit bytes remain: at limit, or before a UTF-8 sequence that
// would straddle it. Invalid UTF-8 is cut at limit.
func cutPoint(head, chunk []byte, limit int) int {
	byteAt := func(i int) byte {
		if i < len(head) {
			return head[i]
		}
		return chunk[i-len(head)]
	}
	at := limit
	// Back over continuation bytes (10xxxxxx) to the sequence's first byte;
	// a sequence has at most three of them.
	for back := 0; back < 3 && at > 0 && byteAt(at)&0xC0 == 0x80; back++ {
		at--
	}
	if c := byteAt(at); c >= 0xC0 && at+seqLen(c) > limit {
		return at
	}
	return limit
}

// seqLen is the length of the UTF-8 sequence that lead byte c starts.
func seqLen(c byte) int {
	switch {
	case c >= 0xF0:
		return 4
	case c >= 0xE0:
		return 3
	case c >= 0xC0:
		return 2
	}
	return 1
}
