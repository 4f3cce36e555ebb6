package loki

import (
	"fmt"

	"github.com/golang/snappy"
)

// Entry is one log line for Loki. The dispatcher keeps the Entry until Loki
// has answered, so Line must not alias a buffer the caller reuses; the
// metadata slices are only read and may be shared between entries.
type Entry struct {
	Stream   string // Loki stream selector, e.g. {container_name="web", source="stdout"}
	TimeNano int64
	Line     string
	// The entry's structured metadata is SharedMetadata then Metadata:
	// SharedMetadata is a slice many entries hold (the container's pairs),
	// Metadata the entry's own, so an entry with fields of its own does not
	// copy the container's. Names must not repeat across the two.
	SharedMetadata []LabelPairAdapter
	Metadata       []LabelPairAdapter

	// Acker, when set, is told when this entry and every earlier entry of
	// the same Acker are resolved; Offset is what it is told. Offsets of one
	// Acker must not decrease.
	Acker  Acker
	Offset int64
}

// Acker follows how far a producer's entries have been resolved: accepted by
// Loki, or dropped and counted. Entries of one Acker are resolved in the
// order they were handed over, so Ack receives increasing offsets. Ack is
// called from the dispatcher's goroutine and must not block.
type Acker interface {
	Ack(offset int64, delivered bool)
}

// size is what an entry counts against batch and queue limits: its line and
// metadata bytes, as Loki counts them, plus a fixed overhead so that empty
// lines still count.
func (e *Entry) size() int {
	n := len(e.Line) + 16
	for _, m := range e.SharedMetadata {
		n += len(m.Name) + len(m.Value)
	}
	for _, m := range e.Metadata {
		n += len(m.Name) + len(m.Value)
	}
	return n
}

// AllMetadata returns the entry's structured metadata in one slice:
// SharedMetadata then Metadata, appended to dst when both have pairs.
func (e *Entry) AllMetadata(dst []LabelPairAdapter) []LabelPairAdapter {
	switch {
	case len(e.SharedMetadata) == 0:
		return e.Metadata
	case len(e.Metadata) == 0:
		return e.SharedMetadata
	}
	dst = append(dst, e.SharedMetadata...)
	return append(dst, e.Metadata...)
}

// batch groups entries by stream into one PushRequest. It is reused between
// pushes so that steady-state batching allocates little.
type batch struct {
	entries []Entry
	bytes   int
	req     PushRequest
	index   map[string]int
	raw     []byte
	body    []byte
	// meta holds, for one encode, the metadata of entries with both
	// shared and own pairs, joined (see Entry.AllMetadata).
	meta []LabelPairAdapter
	acks map[Acker]int64
	// excluded are streams whose labels Loki could not parse: left out of
	// the pushes, their entries are counted as dropped when the batch is.
	excluded map[string]bool
	// peakRaw and peakEntries are decaying maxima of what recent batches
	// used (encoded bytes: len(raw) after an encode; entries); see shrink.
	peakRaw, peakEntries float64
}

// A batch keeps its buffers between pushes so that steady batching does
// not allocate; after a backlog they have the size of a full batch (1-2 MB
// at the default batch size), which steady pushes at a few hundred KB never
// use again: soak run q found them the largest part of each binary's heap
// growth across two Loki outages. reset drops a buffer whose capacity is
// over shrinkFactor times the decaying peak of recent use (and over
// shrinkFloor bytes); the next batch allocates what it needs. A batch of
// the same size as the last ones never reallocates: the peak is at least
// the last batch's use.
const (
	peakDecay    = 0.95 // per batch: a full batch's peak halves in 14 batches
	shrinkFactor = 2
	shrinkFloor  = 256 << 10
	// shrinkFloorEntries is shrinkFloor for the entries slice, in entries
	// (an Entry is about 150 bytes).
	shrinkFloorEntries = 2048
)

func newBatch() *batch {
	return &batch{index: make(map[string]int), acks: make(map[Acker]int64), excluded: make(map[string]bool)}
}

func (b *batch) reset() {
	clear(b.entries) // let the strings go
	b.shrink()
	b.entries = b.entries[:0]
	b.raw = b.raw[:0]
	b.bytes = 0
	b.clearRequest()
	clear(b.acks)
	clear(b.excluded)
}

// shrink updates the peaks with the batch being reset (before reset cuts
// its lengths) and drops the buffers far larger than recent batches needed
// (see shrinkFactor).
func (b *batch) shrink() {
	b.peakRaw = max(float64(len(b.raw)), b.peakRaw*peakDecay)
	b.peakEntries = max(float64(len(b.entries)), b.peakEntries*peakDecay)
	if c := cap(b.raw); c > shrinkFloor && float64(c) > shrinkFactor*b.peakRaw {
		// The per-stream entry slices and the joined metadata grew with
		// the same batches; reset's clearRequest clears the index.
		b.raw, b.body, b.req.Streams, b.meta = nil, nil, nil, nil
	}
	if c := cap(b.entries); c > shrinkFloorEntries && float64(c) > shrinkFactor*b.peakEntries {
		b.entries = nil
	}
}

func (b *batch) clearRequest() {
	for i := range b.req.Streams {
		s := &b.req.Streams[i]
		clear(s.Entries)
		s.Entries = s.Entries[:0]
	}
	b.req.Streams = b.req.Streams[:0]
	clear(b.index)
	clear(b.meta)
	b.meta = b.meta[:0]
}

// pushed reports whether e goes into the batch's pushes.
func (b *batch) pushed(e *Entry) bool { return len(b.excluded) == 0 || !b.excluded[e.Stream] }

// streams returns the batch's streams that are pushed, in order of first
// entry.
func (b *batch) streams() []string {
	var out []string
	seen := map[string]bool{}
	for i := range b.entries {
		s := b.entries[i].Stream
		if !seen[s] && !b.excluded[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func (b *batch) add(e Entry) {
	b.entries = append(b.entries, e)
	b.bytes += e.size()
}

// encode builds the snappy-compressed protobuf body of the batch's pushed
// entries. It may be called again after streams were excluded.
func (b *batch) encode() ([]byte, error) {
	b.clearRequest()
	for i := range b.entries {
		e := &b.entries[i]
		if !b.pushed(e) {
			continue
		}
		idx, ok := b.index[e.Stream]
		if !ok {
			idx = len(b.req.Streams)
			b.index[e.Stream] = idx
			if idx < cap(b.req.Streams) {
				b.req.Streams = b.req.Streams[:idx+1]
				b.req.Streams[idx].Labels = e.Stream
			} else {
				b.req.Streams = append(b.req.Streams, StreamAdapter{Labels: e.Stream})
			}
		}
		s := &b.req.Streams[idx]
		meta := e.Metadata
		switch {
		case len(e.SharedMetadata) == 0:
		case len(e.Metadata) == 0:
			meta = e.SharedMetadata
		default:
			// b.meta may move as it grows: the entries before keep their
			// part of the old array, which is not written again.
			at := len(b.meta)
			b.meta = e.AllMetadata(b.meta)
			meta = b.meta[at:len(b.meta):len(b.meta)]
		}
		s.Entries = append(s.Entries, EntryAdapter{
			Timestamp:          Timestamp{Seconds: floorDiv(e.TimeNano, 1e9), Nanos: int32(floorMod(e.TimeNano, 1e9))},
			Line:               e.Line,
			StructuredMetadata: meta,
		})
	}
	size := b.req.Size()
	if cap(b.raw) < size {
		b.raw = make([]byte, size)
	}
	b.raw = b.raw[:size]
	if _, err := b.req.MarshalToSizedBuffer(b.raw); err != nil {
		return nil, fmt.Errorf("encoding push request: %w", err)
	}
	n := snappy.MaxEncodedLen(size)
	if cap(b.body) < n {
		b.body = make([]byte, n)
	}
	b.body = snappy.Encode(b.body[:n], b.raw)
	return b.body, nil
}

// resolve tells every Acker of the batch how far it got.
func (b *batch) resolve(delivered bool) {
	for i := range b.entries {
		e := &b.entries[i]
		if e.Acker != nil {
			b.acks[e.Acker] = e.Offset
		}
	}
	for a, off := range b.acks {
		a.Ack(off, delivered)
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func floorMod(a, b int64) int64 { return a - floorDiv(a, b)*b }
