package soak

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/logferry/logferry/internal/lokitest"
)

// Latency is one sampled line's trip from its write to being queryable.
// Write is the entry's timestamp: the time dockerd gave the line when it
// read it from the container (json-file's "time", the plugin's frame
// time), within a millisecond of loggen's write. The line was in the first
// answer that held it, received at Upper, and not in the poll sent at
// Lower: Latency is the midpoint.
type Latency struct {
	Style        string
	ID           string
	Seq          uint64
	Long         bool
	Write        time.Time
	Lower, Upper time.Time
}

// Value is the latency estimate, the middle of [Lower, Upper] - Write.
func (l Latency) Value() time.Duration {
	return l.Lower.Sub(l.Write) + l.Upper.Sub(l.Lower)/2
}

// probeFilter selects the sampled lines: those whose sequence number ends
// in 00 (1 in 100, and every long line: LongEvery is a multiple of 100).
const probeFilter = `00 stream=`

// prober records when each sampled line of the soak's containers became
// queryable, two ways at once:
//   - polls of query_range over the last pollSpan every ProbeEvery time
//     most lines precisely (to the poll's interval);
//   - Loki's live tail catches what the polls cannot: a backlog sent after
//     an outage (old timestamps), a line slower than pollSpan. A tail costs
//     Loki next to nothing, but its querier looks for new entries every
//     500 ms when it has none, so its arrival times are late by up to that
//     much (an upper bound, not a measurement), and it is no catch-all:
//     under load Loki's ingester drops what does not fit a tail's small
//     buffer, and an old entry is not promised (TestTailRealLoki).
//
// A line's [Lower, Upper] is from the latest poll that covered it without
// returning it to the first answer that held it, poll or tail. The probe
// used to sweep the minutes since an outage every 2 s instead of the tail:
// those queries kept Loki's queriers busy enough to slow its pushes, and
// the instrument moved what it measured. While Loki is down the tail is
// too; the prober reconnects every ProbeEvery. Sampled lines never seen
// are counted at the end against the delivery check's (unseen).
type prober struct {
	e *env

	mu       sync.Mutex
	seen     map[string]*Latency // "id/seq"
	list     []*Latency
	lastPoll time.Time // send time of the latest answered poll
	full     int       // polls whose answer hit probeLimit (samples may be missed)
	dropped  int       // entries Loki dropped from the tail (too slow a reader)
	connects int       // tails opened
	gaps     []Window  // the tail was down: from its end to the next connect
	downAt   time.Time // the tail ended and has not reconnected (zero: up)
	tailErrs []string  // why tails ended, the first few
}

func newProber(e *env) *prober { return &prober{e: e, seen: map[string]*Latency{}} }

func (p *prober) latencies() []Latency {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Latency, len(p.list))
	for i, l := range p.list {
		out[i] = *l
	}
	return out
}

// run polls and follows the tail until ctx ends.
func (p *prober) run(ctx context.Context) {
	sel := fmt.Sprintf(`{container_name=~"soak-%s-.+"} |= %q`, p.e.runID, probeFilter)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.tail(ctx, sel)
	}()
	p.poll(ctx, sel+` | line_format "{{ trunc 100 __line__ }}"`)
	wg.Wait()
}

func (p *prober) poll(ctx context.Context, query string) {
	tick := time.NewTicker(p.e.cfg.ProbeEvery)
	defer tick.Stop()
	var prev time.Time // the previous poll's send time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		sent := time.Now()
		qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		streams, err := p.e.loki.QueryRange(qctx, query, pollFrom(prev, sent), sent.Add(time.Second), probeLimit, lokitest.Backward)
		cancel()
		prev = sent
		if err != nil {
			continue // Loki down or slow: the next answer's lower bound stays the last answered poll's
		}
		p.record(streams, time.Now(), sent)
	}
}

// tail follows the live tail until ctx ends, reconnecting every ProbeEvery
// while Loki does not take it.
func (p *prober) tail(ctx context.Context, query string) {
	p.mu.Lock()
	p.downAt = time.Now()
	p.mu.Unlock()
	for {
		err := p.e.loki.Tail(ctx, query, time.Now(), p.connected, p.receive)
		if ctx.Err() != nil {
			return
		}
		p.mu.Lock()
		if p.downAt.IsZero() {
			p.downAt = time.Now()
			if len(p.tailErrs) < 5 {
				p.tailErrs = append(p.tailErrs, err.Error())
			}
		}
		p.mu.Unlock()
		if !sleepCtx(ctx, p.e.cfg.ProbeEvery) {
			return
		}
	}
}

// The probe's poll window and answer size.
const (
	pollSpan    = 3 * time.Second
	pollSpanMax = 30 * time.Second
	probeLimit  = 5000
)

// pollFrom is where a poll sent at sent starts: pollSpan before the
// previous poll (pollSpan back for the first; at most pollSpanMax), so that
// the polls cover every write time between them even when Loki answers
// slowly and they fall seconds apart: a line queryable within pollSpan of
// its write is always found by one.
func pollFrom(prev, sent time.Time) time.Time {
	from := sent.Add(-pollSpan)
	if !prev.IsZero() {
		from = minTime(from, prev.Add(-pollSpan))
	}
	if lim := sent.Add(-pollSpanMax); from.Before(lim) {
		from = lim
	}
	return from
}

// lowerBound is the latest moment a line written at w was known not to be
// queryable, given the send time of the latest answered poll: the poll
// that last covered w (a poll covers [sent-pollSpan, sent]) was sent at
// most pollSpan after w; never before w itself.
func lowerBound(lastPoll, w time.Time) time.Time {
	if !lastPoll.After(w) {
		return w
	}
	return minTime(lastPoll, w.Add(pollSpan))
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func (p *prober) connected() {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if !p.downAt.IsZero() && p.connects > 0 {
		p.gaps = append(p.gaps, Window{Kind: "tail-down", Start: p.downAt, End: now})
	}
	p.downAt = time.Time{}
	p.connects++
}

func (p *prober) receive(m lokitest.TailMessage) error {
	p.record(m.Streams, time.Now(), time.Time{})
	p.mu.Lock()
	p.dropped += m.Dropped
	p.mu.Unlock()
	return nil
}

// record notes the sampled lines of streams not seen before: each was
// queryable by got and not when the latest answered poll that covered it
// was sent. pollSent is this answer's send time if it is a poll's (zero:
// the tail's).
func (p *prober) record(streams []lokitest.Stream, got, pollSent time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	last := p.lastPoll
	if !pollSent.IsZero() {
		if pollSent.After(p.lastPoll) {
			p.lastPoll = pollSent
		}
		if lokitest.Count(streams) >= probeLimit {
			p.full++
		}
	}
	for _, s := range streams {
		for _, en := range s.Entries {
			id, seq, ok := probeFields(en.Line)
			if !ok {
				continue
			}
			key := sampleKey(id, seq)
			if _, dup := p.seen[key]; dup {
				continue
			}
			c := p.e.work.lookup(id)
			if c == nil {
				continue
			}
			l := &Latency{Style: c.style, ID: id, Seq: seq, Long: c.longLine(seq),
				Write: time.Unix(0, en.Timestamp), Upper: got}
			l.Lower = lowerBound(last, l.Write)
			if l.Lower.After(got) {
				l.Lower = got // a timestamp ahead of this clock
			}
			p.seen[key] = l
			p.list = append(p.list, l)
		}
	}
}

// probeFields reads id and seq from the start of a loggen line.
func probeFields(line string) (id string, seq uint64, ok bool) {
	rest, ok := strings.CutPrefix(line, "loggen id=")
	if !ok {
		return "", 0, false
	}
	id, rest, ok = strings.Cut(rest, " seq=")
	if !ok {
		return "", 0, false
	}
	num, _, ok := strings.Cut(rest, " ")
	if !ok {
		return "", 0, false
	}
	seq, err := strconv.ParseUint(num, 10, 64)
	return id, seq, err == nil
}
