package tail

import "github.com/logferry/logferry/shared/dockerlog"

// Line is one complete log line: the chunks Docker split a long line into
// are joined.
type Line struct {
	// Stream is "stdout" or "stderr" (as the file says).
	Stream string
	// TimeNano is the line's time (its first chunk's), Unix nanoseconds.
	TimeNano int64
	// Data is the text without its trailing newline, cut at MaxLineSize.
	// It and Attrs are valid only until the callback returns.
	Data []byte
	// Attrs are the line's "attrs" (labels/env/tag log-opts), if any.
	Attrs []dockerlog.Attr
	// Truncated: Data was cut at MaxLineSize.
	Truncated bool
	// InvalidUTF8: invalid UTF-8 in the line was replaced with U+FFFD.
	InvalidUTF8 bool
	// Partial: the line's last chunk never came (the file was truncated, or
	// the container finished in the middle of a split line).
	Partial bool
	// Token acknowledges this line: Position(Token) is where reading
	// resumes to deliver the lines after it. Tokens never decrease over a
	// Tailer's life, so a consumer may acknowledge in order and save only
	// the latest. A token may repeat, and may point before this line's end
	// when a line of the other stream is still incomplete: resuming there
	// delivers some lines again (Loki drops exact duplicates) but loses none.
	Token int64
}

// assembler turns json-file lines into Lines. It decodes each, joins the
// chunks Docker split a long line into (each stream apart, as they may
// interleave), cuts a line at MaxLineSize, and gives each complete line a
// token from which resuming loses none of the lines it still holds
// incomplete: the line's end, or the start of the earliest incomplete line
// when that is before it. It hands every Line to emit and counts the cut
// and repaired ones. It knows nothing of files: the caller passes tokens.
// It belongs to Run's goroutine.
type assembler struct {
	m      *Metrics
	emit   func(Line) error // set by Run
	dec    dockerlog.JSONDecoder
	jl     dockerlog.JSONLine // the line decode parsed
	joiner *dockerlog.Joiner
	// pend are where the lines the joiner holds incomplete started, one
	// slot per joiner slot.
	pend [4]pendingStart
}

// pendingStart is where a line that the joiner holds incomplete started:
// resuming must not skip past it.
type pendingStart struct {
	active  bool
	stream  string
	token   int64
	invalid bool
}

func newAssembler(maxLine int, m *Metrics) *assembler {
	return &assembler{m: m, joiner: dockerlog.NewJoiner(maxLine)}
}

// decode parses one json-file line for add.
func (a *assembler) decode(raw []byte) error { return a.dec.Decode(raw, &a.jl) }

// add joins the line decode parsed, which starts at token start and ends at
// token end, and delivers the line it completes, if any.
func (a *assembler) add(start, end int64) error {
	stream := a.jl.Stream
	l, done := a.joiner.Push(stream, a.jl.TimeNano, a.jl.Text(), a.jl.EndsLine())
	p := a.pending(stream)
	if !done {
		if p == nil {
			p = a.freePending()
			*p = pendingStart{active: true, stream: stream, token: start}
		}
		p.invalid = p.invalid || a.jl.InvalidUTF8
		return nil
	}
	invalid := a.jl.InvalidUTF8
	if p != nil {
		invalid = invalid || p.invalid
		*p = pendingStart{}
	}
	return a.deliver(l, a.jl.Attrs, invalid, false, a.safeToken(end))
}

// flush delivers the incomplete lines as Partial (their last chunk will
// not come), each acknowledged at at, or before it at the start of a line
// still held.
func (a *assembler) flush(at int64) error {
	var err error
	a.joiner.Flush(func(l dockerlog.Line) {
		invalid := false
		if p := a.pending(l.Stream); p != nil {
			invalid = p.invalid
			*p = pendingStart{}
		}
		if err == nil {
			err = a.deliver(l, nil, invalid, true, a.safeToken(at))
		}
	})
	a.pend = [4]pendingStart{}
	return err
}

// safeToken is at, or the start of an incomplete line if that is earlier.
func (a *assembler) safeToken(at int64) int64 {
	for i := range a.pend {
		if a.pend[i].active {
			at = min(at, a.pend[i].token)
		}
	}
	return at
}

func (a *assembler) pending(stream string) *pendingStart {
	for i := range a.pend {
		if p := &a.pend[i]; p.active && p.stream == stream {
			return p
		}
	}
	return nil
}

func (a *assembler) freePending() *pendingStart {
	for i := range a.pend {
		if !a.pend[i].active {
			return &a.pend[i]
		}
	}
	// The joiner has as many slots, so it returns a chunk whole rather than
	// holding a fifth stream; this is not reached.
	return &a.pend[0]
}

func (a *assembler) deliver(l dockerlog.Line, attrs []dockerlog.Attr, invalid, partial bool, token int64) error {
	if l.Truncated {
		a.m.cut.Inc()
	}
	if invalid {
		a.m.invalidUTF8.Inc()
	}
	return a.emit(Line{
		Stream:      l.Stream,
		TimeNano:    l.TimeNano,
		Data:        l.Data,
		Attrs:       attrs,
		Truncated:   l.Truncated,
		InvalidUTF8: invalid,
		Partial:     partial,
		Token:       token,
	})
}
