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
// (A line first found by a sweep has sweepEvery's resolution.)
// Write is the entry's timestamp: the time dockerd gave the line when it
// read it from the container (json-file's "time", the plugin's frame
// time), within a millisecond of loggen's write. The line was first
// returned by a query answered at Upper and was not returned by the query
// sent at Lower (the previous one): Latency is the midpoint.
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

// prober polls Loki's query_range for the sampled lines of the soak's
// containers and records when each first appears.
type prober struct {
	e *env

	mu        sync.Mutex
	seen      map[string]*Latency // "id/seq"
	list      []*Latency
	full      int   // polls whose answer hit the limit (samples may be missed)
	last      polls // the latest answered queries, for the next lower bounds
	sweepTook []time.Duration
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

// run probes Loki until ctx ends, with three kinds of query, each in its
// own goroutine (a query over minutes of lines takes seconds on a busy
// machine: a poll that waited for it would time every line at its
// resolution):
//   - polls, every ProbeEvery, over the last 5 s: most lines;
//   - late sweeps over [now-lateSpan, now-lateGap], every lateEvery, or every
//     sweepEvery within sweepGrace of a disturbance: the lines that took
//     over 5 s, which no poll sees (their cost is bounded by lateSpan);
//   - outage sweeps, every sweepEvery while a disturbance is under way or
//     ended less than sweepGrace ago, over its own span from 5 s before it
//     began (all pages): a backlog sent after an outage carries old
//     timestamps. A sweep over the disturbance only, not up to now, so
//     that its cost does not grow for the minutes after it.
func (p *prober) run(ctx context.Context) {
	query := fmt.Sprintf(`{container_name=~"soak-%s-.+"} |= %q | line_format "{{ trunc 100 __line__ }}"`, p.e.runID, probeFilter)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		p.sweep(ctx, query, p.lateRange)
	}()
	go func() {
		defer wg.Done()
		p.sweep(ctx, query, p.outageRange)
	}()
	p.poll(ctx, query)
	wg.Wait()
}

func (p *prober) poll(ctx context.Context, query string) {
	tick := time.NewTicker(p.e.cfg.ProbeEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		sent := time.Now()
		qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		streams, err := p.e.loki.QueryRange(qctx, query, sent.Add(-pollSpan), sent.Add(time.Second), probeLimit, lokitest.Backward)
		cancel()
		if err != nil {
			continue // Loki down or slow: the next poll's lower bound stays the last answered one's
		}
		p.record(streams, answer{kind: kindPoll, sent: sent, got: time.Now()})
	}
}

// sweep runs the sweeps whose range (and whether one is due) span decides,
// every sweepEvery at most.
func (p *prober) sweep(ctx context.Context, query string, span func(now time.Time, last time.Time) (answer, bool)) {
	tick := time.NewTicker(sweepEvery)
	defer tick.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		sent := time.Now()
		a, ok := span(sent, last)
		if !ok {
			continue
		}
		last = sent
		qctx, cancel := context.WithTimeout(ctx, time.Minute)
		streams, err := p.e.loki.QueryAll(qctx, query, a.from, a.to.Add(time.Second))
		cancel()
		if err != nil {
			continue
		}
		a.sent, a.got = sent, time.Now()
		p.record(streams, a)
	}
}

// lateRange is the late sweep's: due lateEvery, or sweepEvery near a
// disturbance.
func (p *prober) lateRange(now, last time.Time) (answer, bool) {
	_, near := p.e.dist.recent(now, sweepGrace)
	if !near && now.Sub(last) < lateEvery {
		return answer{}, false
	}
	return answer{kind: kindLate, from: now.Add(-lateSpan), to: now.Add(-lateGap)}, true
}

// outageRange is the outage sweep's: the latest disturbance's span, while
// it is under way or ended less than sweepGrace ago.
func (p *prober) outageRange(now, _ time.Time) (answer, bool) {
	w, ok := p.e.dist.recent(now, sweepGrace)
	if !ok {
		return answer{}, false
	}
	to := w.End
	if to.IsZero() {
		to = now
	}
	return answer{kind: kindOutage, from: w.Start.Add(-5 * time.Second), to: to}, true
}

// The probe's spans and pace.
const (
	pollSpan   = 5 * time.Second
	sweepGrace = 3 * time.Minute
	sweepEvery = 2 * time.Second
	lateEvery  = 10 * time.Second
	lateSpan   = 70 * time.Second
	lateGap    = 4 * time.Second
)

const probeLimit = 5000

// The kinds of query.
const (
	kindPoll = iota
	kindLate
	kindOutage
)

// answer is one query's answer to record: sent and got are when it was sent
// and answered; a sweep's covers lines written in [from, to] (all pages), a
// poll's [sent-pollSpan, sent], at most probeLimit entries.
type answer struct {
	kind      int
	sent, got time.Time
	from, to  time.Time
}

// polls are the latest answered query of each kind before the one being
// recorded (a zero sent: none yet).
type polls struct{ poll, late, outage answer }

// lower is the latest moment a line written at w was known not to be
// queryable: the send time of the latest query that covered w and did not
// return it, and never before w itself. A poll or a late sweep sent after
// its window slid past w had a predecessor that covered w, sent at most its
// span after w.
func (q polls) lower(w time.Time) time.Time {
	l := w
	later := func(t time.Time) {
		if t.After(l) {
			l = t
		}
	}
	if q.poll.sent.After(w) {
		later(minTime(q.poll.sent, w.Add(pollSpan)))
	}
	if !q.late.sent.IsZero() && !q.late.to.Before(w) {
		later(minTime(q.late.sent, w.Add(lateSpan)))
	}
	if !q.outage.sent.IsZero() && !w.Before(q.outage.from) && !w.After(q.outage.to) {
		later(q.outage.sent)
	}
	return l
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// next is q after a was answered.
func (q polls) next(a answer) polls {
	last := map[int]*answer{kindPoll: &q.poll, kindLate: &q.late, kindOutage: &q.outage}[a.kind]
	if a.sent.After(last.sent) {
		*last = a
	}
	return q
}

// record notes the sampled lines of one answer not seen before: each was
// queryable by a.got and not when the latest earlier answered query that
// covered it was sent.
func (p *prober) record(streams []lokitest.Stream, a answer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	q, upper := p.last, a.got
	p.last = q.next(a)
	if a.kind == kindOutage {
		p.sweepTook = append(p.sweepTook, a.got.Sub(a.sent))
	}
	if a.kind == kindPoll && lokitest.Count(streams) >= probeLimit {
		p.full++
	}
	for _, s := range streams {
		for _, en := range s.Entries {
			id, seq, ok := probeFields(en.Line)
			if !ok {
				continue
			}
			key := id + "/" + strconv.FormatUint(seq, 10)
			if _, dup := p.seen[key]; dup {
				continue
			}
			c := p.e.work.lookup(id)
			if c == nil {
				continue
			}
			l := &Latency{Style: c.style, ID: id, Seq: seq, Long: c.longLine(seq),
				Write: time.Unix(0, en.Timestamp), Upper: upper}
			l.Lower = q.lower(l.Write)
			if l.Lower.After(upper) {
				l.Lower = upper // a timestamp ahead of this clock
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
