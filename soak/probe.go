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

// run polls every ProbeEvery until ctx ends, over the last 5 s; beside it,
// while a disturbance is under way or ended less than sweepGrace ago, it
// sweeps, every sweepEvery, from 5 s before the disturbance's start to now
// (all pages): a backlog sent after an outage carries old timestamps. The
// two run apart: a sweep over minutes of lines takes seconds on a busy
// machine, and polls that waited for it would read every line's latency
// at the sweep's resolution.
func (p *prober) run(ctx context.Context) {
	query := fmt.Sprintf(`{container_name=~"soak-%s-.+"} |= %q | line_format "{{ trunc 100 __line__ }}"`, p.e.runID, probeFilter)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.sweep(ctx, query)
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
		streams, err := p.e.loki.QueryRange(qctx, query, sent.Add(-5*time.Second), sent.Add(time.Second), probeLimit, lokitest.Backward)
		cancel()
		if err != nil {
			continue // Loki down or slow: the next poll's lower bound stays the last answered one's
		}
		p.record(streams, answer{sent: sent, got: time.Now(), limited: true})
	}
}

func (p *prober) sweep(ctx context.Context, query string) {
	tick := time.NewTicker(sweepEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		sent := time.Now()
		d, ok := p.e.dist.recentStart(sent, sweepGrace)
		if !ok {
			continue
		}
		from := d.Add(-5 * time.Second)
		qctx, cancel := context.WithTimeout(ctx, time.Minute)
		streams, err := p.e.loki.QueryAll(qctx, query, from, sent.Add(time.Second))
		cancel()
		if err != nil {
			continue
		}
		p.record(streams, answer{sent: sent, got: time.Now(), sweepFrom: from})
	}
}

// Sweeps after a disturbance.
const (
	sweepGrace = 3 * time.Minute
	sweepEvery = 2 * time.Second
)

const probeLimit = 5000

// polls are the send times of the latest answered queries before the one
// being recorded: a normal poll covers [sent-5s, sent], a sweep everything
// from sweepFrom on (zero sweep: none yet).
type polls struct{ normal, sweep, sweepFrom time.Time }

// answer is one query's answer to record: sent and got are when it was sent
// and answered; a sweep's starts at sweepFrom (zero: a normal poll), a
// normal poll's is limited to probeLimit entries.
type answer struct {
	sent, got time.Time
	sweepFrom time.Time
	limited   bool
}

// lower is the latest moment a line written at w was known not to be
// queryable: the send time of the latest query that covered w and did not
// return it, and never before w itself.
func (q polls) lower(w time.Time) time.Time {
	l := w
	if q.sweep.After(l) && !w.Before(q.sweepFrom) {
		l = q.sweep
	}
	if q.normal.After(w) {
		// The last normal poll whose window held w was sent at most 5 s
		// after w.
		n := q.normal
		if lim := w.Add(5 * time.Second); n.After(lim) {
			n = lim
		}
		if n.After(l) {
			l = n
		}
	}
	return l
}

// next is q after a answered.
func (q polls) next(a answer) polls {
	if a.sweepFrom.IsZero() {
		if a.sent.After(q.normal) {
			q.normal = a.sent
		}
		return q
	}
	if a.sent.After(q.sweep) {
		q.sweep, q.sweepFrom = a.sent, a.sweepFrom
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
	if !a.sweepFrom.IsZero() {
		p.sweepTook = append(p.sweepTook, a.got.Sub(a.sent))
	}
	if a.limited && lokitest.Count(streams) >= probeLimit {
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
