package bench

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/logferry/logferry/internal/loggen"
)

// latencyRange is the span of the sink's latency histogram, at one bucket
// per millisecond; later arrivals share the last bucket.
const latencyRange = 120 * time.Second

// lineTrack is what a sink with TrackLines keeps: which loggen lines it
// has seen (by id and sequence number), and, while MeasureLatency is on,
// every entry's delay from its timestamp (the time the container wrote
// the line, as the daemon stamps it) to its push reaching the sink.
type lineTrack struct {
	seen      map[string][]uint64 // id -> bitset of seq
	distinct  int64
	dups      int64
	unparsed  int64
	firstDup  string
	measuring bool
	hist      []int64 // per millisecond
	n         int64
	max       time.Duration
}

// Latency sums up the delays of the entries a sink counted while it was
// measuring them.
type Latency struct {
	N                  int64
	P50, P90, P99, Max time.Duration
}

func (l Latency) String() string {
	if l.N == 0 {
		return "no entries"
	}
	return fmt.Sprintf("p50 %s, p90 %s, p99 %s, max %s over %d entries", l.P50, l.P90, l.P99, l.Max.Round(time.Millisecond), l.N)
}

// TrackLines makes the sink check every line: each must be a loggen line
// (internal/loggen, the header and the content it promises) seen once.
// Call it before the first push.
func (s *Sink) TrackLines() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.track = &lineTrack{seen: map[string][]uint64{}, hist: make([]int64, latencyRange/time.Millisecond+1)}
}

// MeasureLatency starts (on) or stops recording the delay of each entry
// counted; starting forgets what an earlier stretch recorded. It needs
// TrackLines.
func (s *Sink) MeasureLatency(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.track == nil {
		return
	}
	if on {
		clear(s.track.hist)
		s.track.n, s.track.max = 0, 0
	}
	s.track.measuring = on
}

// Lines reports, for a sink with TrackLines, the distinct loggen lines
// seen, how many arrived again, and how many were not loggen lines (with
// the first such problem).
func (s *Sink) Lines() (distinct, dups, unparsed int64, first string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.track == nil {
		return 0, 0, 0, ""
	}
	return s.track.distinct, s.track.dups, s.track.unparsed, s.track.firstDup
}

// Latency returns the delays recorded while MeasureLatency was on.
func (s *Sink) Latency() Latency {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.track
	if t == nil || t.n == 0 {
		return Latency{}
	}
	at := func(q float64) time.Duration {
		want := int64(q*float64(t.n) + 0.5)
		want = max(want, 1)
		var sum int64
		for i, c := range t.hist {
			if sum += c; sum >= want {
				return time.Duration(i+1) * time.Millisecond // the bucket's upper bound
			}
		}
		return latencyRange
	}
	return Latency{N: t.n, P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: t.max}
}

// line records one entry of a push that arrived at now. Called with s.mu
// held.
func (t *lineTrack) line(ts time.Time, line []byte, now time.Time) {
	if t.measuring {
		d := max(now.Sub(ts), 0)
		t.hist[min(int(d/time.Millisecond), len(t.hist)-1)]++
		t.n++
		t.max = max(t.max, d)
	}
	// Promtail's docker stage ships json-file's "log" value as it is, with
	// the newline the daemon stored; logferry's capture strips it.
	line = bytes.TrimSuffix(line, []byte{'\n'})
	rec, err := loggen.Parse(string(line))
	if err != nil {
		if t.unparsed == 0 && t.firstDup == "" {
			t.firstDup = err.Error()
		}
		t.unparsed++
		return
	}
	bits := t.seen[rec.ID]
	word, bit := int(rec.Seq/64), uint64(1)<<(rec.Seq%64)
	if word >= len(bits) {
		bits = slices.Grow(bits, word+1-len(bits))[:word+1]
	}
	if bits[word]&bit != 0 {
		if t.dups == 0 && t.firstDup == "" {
			t.firstDup = fmt.Sprintf("%s seq %d arrived again", rec.ID, rec.Seq)
		}
		t.dups++
	} else {
		bits[word] |= bit
		t.distinct++
	}
	t.seen[rec.ID] = bits
}

// entryTime reads a google.protobuf.Timestamp (seconds = 1, nanos = 2).
func entryTime(p []byte) (time.Time, error) {
	var sec, nsec uint64
	for len(p) > 0 {
		key, n := binary.Uvarint(p)
		if n <= 0 || key&7 != 0 {
			return time.Time{}, errors.New("malformed timestamp")
		}
		p = p[n:]
		v, n := binary.Uvarint(p)
		if n <= 0 {
			return time.Time{}, errors.New("malformed timestamp")
		}
		p = p[n:]
		switch key >> 3 {
		case 1:
			sec = v
		case 2:
			nsec = v
		}
	}
	return time.Unix(int64(sec), int64(nsec)), nil
}
