package pipeline

import (
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/logferry/logferry/shared/labels"
)

// Entry is one log entry as the stages see and change it. The caller fills
// it (Reset), Process transforms it, and the caller ships what is left:
// Line at Time, in the stream Labels plus Source, with StructuredMetadata,
// for Tenant ("" is the configured default), unless Dropped.
//
// An Entry, its map and its label buffers are reused from line to line by
// one goroutine: after Process the caller copies out what it keeps (Labels,
// StructuredMetadata) before the next Reset.
type Entry struct {
	// Line is the log line (a multiline entry: its lines joined by "\n").
	Line string
	// Time is the entry's time in Unix nanoseconds.
	Time int64
	// Source is the value of the source label (stdout, stderr); "" leaves
	// the label out. Stages see it as the label named source.
	Source string
	// Labels are the stream's labels, sorted by name, without source.
	// They start as the container's label set, shared and never modified
	// in place: the first stage that changes them copies them.
	Labels []labels.Pair
	// StructuredMetadata are the entry's fields that make no stream,
	// sorted by name; copied on first change as Labels are.
	StructuredMetadata []labels.Pair
	// extracted holds what parsing stages found, for later stages. Values
	// are strings, float64 or bool (JSON numbers and booleans keep their
	// type, as in Promtail). The labels the entry started with are also
	// visible to stages under their names, as Promtail's extracted map
	// starts with them, without being copied into it. See Extracted.
	extracted extracted
	// Tenant is the Loki tenant a tenant stage chose; "" keeps the
	// endpoint's.
	Tenant string
	// Dropped is set by a stage that drops the entry; DropReason is the
	// reason it was counted under (drop_counter_reason or a default).
	Dropped    bool
	DropReason string

	// baseLabels are the labels at Reset, which extracted lookups fall
	// back to.
	baseLabels []labels.Pair
	baseSource string
	// ownLabels and ownMetadata: Labels and StructuredMetadata are this
	// entry's copies.
	ownLabels, ownMetadata bool
	// cuts counts what label limits cut or refused, for the metrics.
	cuts int
	// labelBuf and metaBuf keep the copies' memory from entry to entry.
	labelBuf, metaBuf []labels.Pair
}

// Reset makes e the entry of a line from source, in the stream set: its
// labels and structured metadata. It keeps e's map for reuse.
func (e *Entry) Reset(set *labels.Set, source string, timeNano int64, line string) {
	e.extracted.reset()
	*e = Entry{
		Line:               line,
		Time:               timeNano,
		Source:             source,
		Labels:             set.Labels,
		StructuredMetadata: set.StructuredMetadata,
		extracted:          e.extracted,
		baseLabels:         set.Labels,
		baseSource:         source,
		labelBuf:           e.labelBuf[:0],
		metaBuf:            e.metaBuf[:0],
	}
}

// LabelsChanged reports whether a stage changed Labels or Source: the
// stream is then not the container's precomputed one.
func (e *Entry) LabelsChanged() bool { return e.ownLabels || e.Source != e.baseSource }

// MetadataChanged reports whether a stage changed StructuredMetadata.
func (e *Entry) MetadataChanged() bool { return e.ownMetadata }

// Finish makes Line what Loki accepts after the stages: valid UTF-8 (each
// invalid byte becomes U+FFFD, as the capture side repairs lines) and at
// most maxLine bytes, cut between two runes (maxLine <= 0: no cut). It
// reports whether it cut.
func (e *Entry) Finish(maxLine int) (cut bool) {
	if !utf8.ValidString(e.Line) {
		e.Line = strings.ToValidUTF8(e.Line, "\uFFFD")
		// ToValidUTF8 replaces a run of invalid bytes with one U+FFFD;
		// dockerlog.ValidUTF8 replaces each. Lines from the capture side
		// are already valid: only stages (template, replace) can make
		// invalid bytes here, which are rare.
	}
	if maxLine > 0 && len(e.Line) > maxLine {
		e.Line = cutRunes(e.Line, maxLine)
		return true
	}
	return false
}

// get returns what a stage reads under name: the extracted value, else the
// label the entry started with (source included).
func (e *Entry) get(name string) (value, bool) {
	if v, ok := e.extracted.lookup(name); ok {
		return v, true
	}
	if name == labels.LabelSource {
		return stringValue(e.baseSource), e.baseSource != ""
	}
	if i, ok := slices.BinarySearchFunc(e.baseLabels, name, cmpPairName); ok {
		return stringValue(e.baseLabels[i].Value), true
	}
	return value{}, false
}

// getString is get as a string (see stringOf).
func (e *Entry) getString(name string) (string, bool) {
	v, ok := e.get(name)
	if !ok {
		return "", false
	}
	return v.str()
}

// set extracts v under name; setString a string, without boxing it.
func (e *Entry) set(name string, v any)        { e.extracted.set(name, anyValue(v)) }
func (e *Entry) setString(name, v string)      { e.extracted.set(name, stringValue(v)) }
func (e *Entry) setValue(name string, v value) { e.extracted.set(name, v) }

func cmpPairName(p labels.Pair, name string) int { return strings.Compare(p.Name, name) }

// label returns a current label's value (source included).
func (e *Entry) label(name string) (string, bool) {
	if name == labels.LabelSource {
		return e.Source, e.Source != ""
	}
	if i, ok := slices.BinarySearchFunc(e.Labels, name, cmpPairName); ok {
		return e.Labels[i].Value, true
	}
	return "", false
}

// setLabel sets a label within Loki's limits: the value is made valid
// UTF-8 and cut to labels.MaxLabelValueBytes; an empty value sets nothing
// (Loki treats it as no label); a new label past
// labels.MaxLabelsPerStream is refused. Cuts and refusals are counted.
// Names were checked when the configuration was parsed.
func (e *Entry) setLabel(name, value string) {
	if value == "" {
		return
	}
	value, cut := boundLabelValue(value)
	if cut {
		e.cuts++
	}
	if name == labels.LabelSource {
		e.Source = value
		return
	}
	i, found := slices.BinarySearchFunc(e.Labels, name, cmpPairName)
	if found {
		if e.Labels[i].Value == value {
			return
		}
		e.ownLabelsCopy(0)
		e.Labels[i].Value = value
		return
	}
	n := len(e.Labels) + 1
	if e.Source != "" {
		n++
	}
	if n > labels.MaxLabelsPerStream {
		e.cuts++
		return
	}
	e.ownLabelsCopy(1)
	e.Labels = slices.Insert(e.Labels, i, labels.Pair{Name: name, Value: value})
}

// deleteLabel removes a label (source included) if present.
func (e *Entry) deleteLabel(name string) {
	if name == labels.LabelSource {
		e.Source = ""
		return
	}
	i, found := slices.BinarySearchFunc(e.Labels, name, cmpPairName)
	if !found {
		return
	}
	e.ownLabelsCopy(0)
	e.Labels = slices.Delete(e.Labels, i, i+1)
}

// keepLabels keeps only the labels keep reports true for.
func (e *Entry) keepLabels(keep func(string) bool) {
	if e.Source != "" && !keep(labels.LabelSource) {
		e.Source = ""
	}
	if !slices.ContainsFunc(e.Labels, func(p labels.Pair) bool { return !keep(p.Name) }) {
		return
	}
	e.ownLabelsCopy(0)
	e.Labels = slices.DeleteFunc(e.Labels, func(p labels.Pair) bool { return !keep(p.Name) })
}

func (e *Entry) ownLabelsCopy(extra int) {
	if e.ownLabels {
		return
	}
	if cap(e.labelBuf) < len(e.Labels)+extra+1 {
		e.labelBuf = make([]labels.Pair, 0, len(e.Labels)+4)
	}
	e.labelBuf = append(e.labelBuf[:0], e.Labels...)
	e.Labels, e.ownLabels = e.labelBuf, true
}

// setMetadata sets a structured-metadata field within Loki's default
// limits (count and total size); what does not fit is refused and counted.
func (e *Entry) setMetadata(name, value string) {
	if value == "" {
		return
	}
	if !utf8.ValidString(value) {
		value = strings.ToValidUTF8(value, "\uFFFD")
	}
	i, found := slices.BinarySearchFunc(e.StructuredMetadata, name, cmpPairName)
	size := len(name) + len(value)
	for _, p := range e.StructuredMetadata {
		size += len(p.Name) + len(p.Value)
	}
	if found {
		size -= len(name) + len(e.StructuredMetadata[i].Value)
	}
	if size > MaxStructuredMetadataBytes || (!found && len(e.StructuredMetadata) >= MaxStructuredMetadata) {
		e.cuts++
		return
	}
	if !e.ownMetadata {
		if cap(e.metaBuf) < len(e.StructuredMetadata)+2 {
			e.metaBuf = make([]labels.Pair, 0, len(e.StructuredMetadata)+4)
		}
		e.metaBuf = append(e.metaBuf[:0], e.StructuredMetadata...)
		e.StructuredMetadata, e.ownMetadata = e.metaBuf, true
	}
	if found {
		e.StructuredMetadata[i].Value = value
		return
	}
	e.StructuredMetadata = slices.Insert(e.StructuredMetadata, i, labels.Pair{Name: name, Value: value})
}

// boundLabelValue makes v a label value Loki takes: valid UTF-8, at most
// labels.MaxLabelValueBytes, cut before a rune that would straddle the
// limit. It reports whether it changed v.
func boundLabelValue(v string) (string, bool) {
	if len(v) <= labels.MaxLabelValueBytes && utf8.ValidString(v) {
		return v, false
	}
	v = strings.ToValidUTF8(v, "\uFFFD")
	return cutRunes(v, labels.MaxLabelValueBytes), true
}

// cutRunes returns the longest prefix of s of at most n bytes that does not
// end inside a UTF-8 sequence.
func cutRunes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	// Back up at most UTFMax-1 bytes to the start of the rune at n.
	for j := 0; j < utf8.UTFMax && i > 0 && !utf8.RuneStart(s[i]); j++ {
		i--
	}
	if !utf8.RuneStart(s[i]) {
		// Invalid bytes: any byte boundary will do.
		return s[:n]
	}
	return s[:i]
}

// stringOf converts an extracted value to the string stages use: strings as
// they are, numbers in the shortest decimal form without exponent, booleans
// as true/false. It reports false for nil and other types.
func stringOf(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), true
	case bool:
		return strconv.FormatBool(v), true
	case int:
		return strconv.Itoa(v), true
	case int64:
		return strconv.FormatInt(v, 10), true
	}
	return "", false
}
