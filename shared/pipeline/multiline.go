package pipeline

import (
	"fmt"
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"
)

// Multiline defaults: Promtail's max_wait_time and max_lines, and Loki's
// default max_line_size as the bound on an entry's bytes.
const (
	DefaultMaxWait       = 3 * time.Second
	DefaultMaxLines      = 128
	DefaultMaxEntryBytes = 256 << 10
	// maxMaxLines bounds max_lines.
	maxMaxLines = 100000
)

// MultilineConfig says where entries begin and how long and large they may
// grow. Build it with NewMultilineConfig, MultilinePreset or from a
// pipeline's leading multiline stage (Pipeline.Multiline); it is
// immutable once a Multiline uses it, and shared by any number of them.
// To change a bound (MaxBytes to the max-line-size option), copy it first:
// c := *cfg; c.MaxBytes = n.
type MultilineConfig struct {
	// MaxWait is how long an entry waits for another line before Flush
	// emits it.
	MaxWait time.Duration
	// MaxLines: an entry with this many lines is emitted at once.
	MaxLines int
	// MaxBytes: a line that would make the entry longer (lines and the
	// "\n" between them) starts a new entry. A single line longer than
	// MaxBytes is an entry alone, not cut: lines come bounded by the
	// caller's max-line-size, and the caller cuts the final entry
	// (Entry.Finish). Set it to max-line-size.
	MaxBytes int

	name      string
	firstline *regexp.Regexp
	preset    func() splitter
}

// NewMultilineConfig is the configuration of Promtail's multiline stage: a
// line matching firstline begins an entry, any other line joins the
// current one. Zero maxWait and maxLines take the defaults.
func NewMultilineConfig(firstline string, maxWait time.Duration, maxLines int) (*MultilineConfig, error) {
	if firstline == "" {
		return nil, fmt.Errorf("%w: firstline: required", ErrInvalid)
	}
	if len(firstline) > MaxRegexBytes {
		return nil, fmt.Errorf("%w: firstline: %w", ErrInvalid, overLimit("%d bytes, more than %d", len(firstline), MaxRegexBytes))
	}
	re, err := regexp.Compile(firstline)
	if err != nil {
		return nil, fmt.Errorf("%w: firstline: %w", ErrInvalid, err)
	}
	c := &MultilineConfig{MaxWait: maxWait, MaxLines: maxLines, MaxBytes: DefaultMaxEntryBytes, name: "firstline", firstline: re}
	if c.MaxWait == 0 {
		c.MaxWait = DefaultMaxWait
	}
	if c.MaxLines == 0 {
		c.MaxLines = DefaultMaxLines
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate checks the bounds.
func (c *MultilineConfig) Validate() error {
	switch {
	case c.firstline == nil && c.preset == nil:
		return fmt.Errorf("%w: multiline: no firstline and no preset", ErrInvalid)
	case c.MaxWait <= 0:
		return fmt.Errorf("%w: max_wait_time: must be positive", ErrInvalid)
	case c.MaxLines < 1 || c.MaxLines > maxMaxLines:
		return fmt.Errorf("%w: max_lines: want 1 to %d", ErrInvalid, maxMaxLines)
	case c.MaxBytes < 1:
		return fmt.Errorf("%w: max bytes: must be positive", ErrInvalid)
	}
	return nil
}

// Name is the preset's name, or "firstline".
func (c *MultilineConfig) Name() string { return c.name }

func (c *MultilineConfig) newSplitter() splitter {
	if c.preset != nil {
		return c.preset()
	}
	return regexSplitter{c.firstline}
}

// multiline is the leading multiline stage of a pipeline configuration.
func (ps *parser) multiline(at *position, n *yaml.Node) (*MultilineConfig, error) {
	fs, err := ps.fields(at, n, "firstline", "max_wait_time", "max_lines")
	if err != nil {
		return nil, err
	}
	first, err := ps.required(at, "firstline", fs)
	if err != nil {
		return nil, err
	}
	re, err := ps.compileRE(at, "firstline", fs["firstline"], first)
	if err != nil {
		return nil, err
	}
	c := &MultilineConfig{MaxWait: DefaultMaxWait, MaxLines: DefaultMaxLines, MaxBytes: DefaultMaxEntryBytes, name: "firstline", firstline: re}
	if d, ok, err := ps.duration(at, "max_wait_time", fs["max_wait_time"]); err != nil {
		return nil, err
	} else if ok {
		c.MaxWait = d
	}
	if l, ok, err := ps.integer(at, "max_lines", fs["max_lines"], 1, maxMaxLines); err != nil {
		return nil, err
	} else if ok {
		c.MaxLines = l
	}
	return c, nil
}

// splitter decides, line by line, where entries of one stream begin. It
// may keep state (the presets do); the Multiline keeps one per source.
type splitter interface {
	// starts reports whether line begins a new entry. pending says
	// whether an entry is open (a line that does not start one joins it).
	starts(line string, pending bool) bool
}

type regexSplitter struct{ re *regexp.Regexp }

func (s regexSplitter) starts(line string, _ bool) bool { return s.re.MatchString(line) }

// FlushReason says why Multiline emitted an entry.
type FlushReason uint8

const (
	// FlushFirstLine: a line began the next entry.
	FlushFirstLine FlushReason = iota
	// FlushMaxLines: the entry reached MaxLines.
	FlushMaxLines
	// FlushMaxBytes: the next line would have passed MaxBytes.
	FlushMaxBytes
	// FlushMaxWait: no line came for MaxWait (Flush).
	FlushMaxWait
	// FlushEnd: the stream ended (FlushAll).
	FlushEnd
	// FlushSources: more sources than a Multiline follows at once; the
	// oldest one's entry made room.
	FlushSources
	numFlushReasons
)

var flushReasonNames = [numFlushReasons]string{"firstline", "max_lines", "max_bytes", "max_wait", "end", "sources"}

func (r FlushReason) String() string { return flushReasonNames[r] }

// Joined is an entry out of Multiline.
type Joined struct {
	// Source is the source its lines came from.
	Source string
	// Line is the lines joined by "\n".
	Line string
	// TimeNano is the time of its first line.
	TimeNano int64
	// First and Last are the tokens of its first and last lines, Lines
	// how many it holds: the Lines lines of Source pushed from First to
	// Last, in order, with no other line of that source between them.
	First, Last int64
	Lines       int
	Reason      FlushReason
	// Ack is what the caller may acknowledge once this entry and every
	// entry returned before it are delivered (or dropped on purpose): the
	// token of the latest line pushed such that it and every line pushed
	// before it, of any source, are in entries returned so far. AckOK is
	// false when there is no such line yet (a line of another source
	// pushed earlier is still pending). Successive Acks never go back.
	Ack   int64
	AckOK bool
}

// maxSources bounds the sources a Multiline keeps entries open for at once:
// Docker has stdout and stderr.
const maxSources = 4

// Multiline joins the lines of one container's sources into entries.
//
// The contract with the caller (the plugin's FIFO reader, the sidecar's
// tailer), who owns the Multiline on one goroutine:
//
//   - Push every line of the container, of every source, in the order
//     they were read, each with a token: the offset or id the caller
//     acknowledges it by, not decreasing from line to line. Push returns
//     the entries the line completed (zero, one or two) appended to dst.
//   - Every line pushed appears in exactly one returned entry, in order
//     within its source; nothing is dropped or cut here.
//   - Acknowledge by Joined.Ack, never by Last: an entry of stdout can be
//     complete while an earlier stderr line still waits in an open entry.
//     Hand each entry on with Ack as its offset when AckOK; when not, the
//     entry's lines are covered by a later entry's Ack. An entry the
//     stages drop counts as delivered: its Ack is resolved in order with
//     the others (for instance carried by the next entry handed on, or
//     acknowledged once everything handed before it is).
//   - Call Flush at Deadline (a timer the caller owns) to emit entries
//     that waited MaxWait for another line, and FlushAll when the stream
//     ends (container stop, EOF) or at shutdown, before the last
//     acknowledgements, so that no line is held.
//   - After a restart, read again from the last acknowledged token: lines
//     of an entry that was open then are read and joined again, so an
//     entry is neither lost nor sent twice.
type Multiline struct {
	cfg  *MultilineConfig
	srcs [maxSources]openEntry
	// seq numbers the lines pushed; lastToken is the latest line's token.
	seq       uint64
	lastToken int64
	anyToken  bool

	lines   prometheus.Counter
	reasons [numFlushReasons]prometheus.Counter
}

type openEntry struct {
	used     bool // the slot belongs to source (split keeps its state)
	source   string
	split    splitter
	open     bool
	timeNano int64
	first    int64
	last     int64
	firstSeq uint64
	// prevToken is the token of the line pushed just before this
	// entry's first one: the Ack while this entry is the oldest open.
	prevToken int64
	prevOK    bool
	lines     int
	// single is the first line while the entry has only one, so that a
	// line alone is not copied; buf holds the joined lines after.
	single   string
	buf      []byte
	size     int
	lastPush time.Time
	lastUse  uint64
}

// NewMultiline returns a joiner for one container with cfg (not nil),
// counted in m (nil: not counted).
func NewMultiline(cfg *MultilineConfig, m *Metrics) *Multiline {
	ml := &Multiline{cfg: cfg}
	if m != nil {
		ml.lines = m.mlLines
		for r := range numFlushReasons {
			ml.reasons[r] = m.mlEntries.WithLabelValues(r.String())
		}
	}
	return ml
}

// Push adds a line of source read at now (the wall clock, for MaxWait)
// with its time and token, and appends the entries it completed to dst.
func (ml *Multiline) Push(dst []Joined, now time.Time, source string, timeNano int64, line string, token int64) []Joined {
	if ml.lines != nil {
		ml.lines.Inc()
	}
	o, dst := ml.slot(dst, source)
	starts := o.split.starts(line, o.open)
	if o.open {
		switch {
		case starts:
			dst = ml.emit(dst, o, FlushFirstLine)
		case o.size+1+len(line) > ml.cfg.MaxBytes:
			dst = ml.emit(dst, o, FlushMaxBytes)
		}
	}
	ml.seq++
	if !o.open {
		o.open = true
		o.timeNano = timeNano
		o.first = token
		o.firstSeq = ml.seq
		o.prevToken, o.prevOK = ml.lastToken, ml.anyToken
		o.lines = 1
		o.single = line
		o.buf = o.buf[:0]
		o.size = len(line)
	} else {
		if o.lines == 1 {
			o.buf = append(o.buf[:0], o.single...)
			o.single = ""
		}
		o.buf = append(o.buf, '\n')
		o.buf = append(o.buf, line...)
		o.lines++
		o.size += 1 + len(line)
	}
	o.last = token
	o.lastPush = now
	ml.lastToken, ml.anyToken = token, true
	switch {
	case o.lines >= ml.cfg.MaxLines:
		dst = ml.emit(dst, o, FlushMaxLines)
	case o.size >= ml.cfg.MaxBytes:
		dst = ml.emit(dst, o, FlushMaxBytes)
	}
	return dst
}

// slot returns the source's entry slot, making room when every slot has
// another source (the least recently used one is emitted and reused).
func (ml *Multiline) slot(dst []Joined, source string) (*openEntry, []Joined) {
	var free, lru *openEntry
	for i := range ml.srcs {
		o := &ml.srcs[i]
		if o.used && o.source == source {
			o.lastUse = ml.seq
			return o, dst
		}
		if !o.used && free == nil {
			free = o
		}
		if lru == nil || o.lastUse < lru.lastUse {
			lru = o
		}
	}
	if free == nil {
		if lru.open {
			dst = ml.emit(dst, lru, FlushSources)
		}
		free = lru
	}
	buf := free.buf[:0]
	*free = openEntry{used: true, source: source, split: ml.cfg.newSplitter(), buf: buf, lastUse: ml.seq}
	return free, dst
}

// emit closes o's entry and appends it to dst with the Ack that holds once
// it is out.
func (ml *Multiline) emit(dst []Joined, o *openEntry, why FlushReason) []Joined {
	j := Joined{
		Source:   o.source,
		TimeNano: o.timeNano,
		First:    o.first,
		Last:     o.last,
		Lines:    o.lines,
		Reason:   why,
	}
	if o.lines == 1 {
		j.Line = o.single
	} else {
		j.Line = string(o.buf)
	}
	o.open, o.single = false, ""
	if cap(o.buf) > 64<<10 {
		// Do not keep a buffer grown by one large entry while the
		// source is quiet.
		o.buf = nil
	}
	j.Ack, j.AckOK = ml.ack()
	if c := ml.reasons[why]; c != nil {
		c.Inc()
	}
	return append(dst, j)
}

// ack is the token of the latest line such that it and every earlier line
// are out of open entries.
func (ml *Multiline) ack() (int64, bool) {
	var oldest *openEntry
	for i := range ml.srcs {
		o := &ml.srcs[i]
		if o.open && (oldest == nil || o.firstSeq < oldest.firstSeq) {
			oldest = o
		}
	}
	if oldest == nil {
		return ml.lastToken, ml.anyToken
	}
	return oldest.prevToken, oldest.prevOK
}

// Flush appends to dst the entries whose last line was pushed MaxWait or
// longer before now, oldest first.
func (ml *Multiline) Flush(dst []Joined, now time.Time) []Joined {
	return ml.flush(dst, func(o *openEntry) bool { return now.Sub(o.lastPush) >= ml.cfg.MaxWait }, FlushMaxWait)
}

// FlushAll appends every open entry to dst, oldest first: at the end of
// the stream and at shutdown.
func (ml *Multiline) FlushAll(dst []Joined) []Joined {
	return ml.flush(dst, func(*openEntry) bool { return true }, FlushEnd)
}

func (ml *Multiline) flush(dst []Joined, due func(*openEntry) bool, why FlushReason) []Joined {
	for {
		var next *openEntry
		for i := range ml.srcs {
			o := &ml.srcs[i]
			if o.open && due(o) && (next == nil || o.firstSeq < next.firstSeq) {
				next = o
			}
		}
		if next == nil {
			return dst
		}
		dst = ml.emit(dst, next, why)
	}
}

// Deadline returns when the next open entry is due for Flush; false when
// no entry is open.
func (ml *Multiline) Deadline() (time.Time, bool) {
	var d time.Time
	found := false
	for i := range ml.srcs {
		o := &ml.srcs[i]
		if !o.open {
			continue
		}
		t := o.lastPush.Add(ml.cfg.MaxWait)
		if !found || t.Before(d) {
			d, found = t, true
		}
	}
	return d, found
}

// Pending returns how many lines open entries hold.
func (ml *Multiline) Pending() int {
	n := 0
	for i := range ml.srcs {
		if ml.srcs[i].open {
			n += ml.srcs[i].lines
		}
	}
	return n
}
