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

// The drain sweeps: after each Loki outage the soak queries the outage's
// own span for the sampled lines of a few long-lived containers per
// capture style (the witnesses) every drainSweepEvery, until every
// witness's lines are there or drainSweepFor has passed.
//
// Why witnesses and not every line: the live tail does not deliver a
// backlog (old timestamps are not promised, and under load Loki drops what
// does not fit a tail's buffer: 1,897 of 2,062 backlog samples went unseen
// in a 30-minute run), and sweeping every stream kept Loki's queriers busy
// enough to slow its pushes. A witness is an ordinary long-lived container
// whose lines wait in the same queue as everyone's: the shippers send a
// backlog in the order it arrived, across streams, so the witnesses' last
// outage lines are out when the backlog is. A sweep reads a few streams
// over about a minute: milliseconds of Loki's time.
const (
	drainWitnesses  = 3 // per capture style
	drainSweepEvery = 500 * time.Millisecond
	drainSweepFor   = 3 * time.Minute
	// drainMargin: a witness's lines from this long before the outage are
	// swept too; one of them and one written after the outage bracket its
	// outage lines.
	drainMargin = 5 * time.Second
)

// drainer runs the sweeps; the disturber hands it each Loki outage once
// Loki is back.
type drainer struct {
	e     *env
	queue chan Window

	mu     sync.Mutex
	drains []*drainWatch
}

// drainWatch is one outage's sweeps.
type drainWatch struct {
	Window    Window
	Witnesses map[string][]*container // style -> witnesses
	Sweeps    int
	Errors    int
	Complete  bool // every witness's outage lines were found
	// seen: "id/seq" -> the sampled line as first found: written at Write,
	// not in the sweep sent at Lower, in the answer received at Upper.
	seen map[string]Latency
}

func newDrainer(e *env) *drainer {
	return &drainer{e: e, queue: make(chan Window, 16)}
}

// outage hands the drainer a Loki outage that has ended. It never blocks
// the disturber: an outage the queue cannot take is not swept, and its
// drain is unknown.
func (d *drainer) outage(w Window) {
	select {
	case d.queue <- w:
	default:
		d.e.logf("drain sweeps: queue full, outage at %s not swept", w.Start.Format("15:04:05"))
	}
}

func (d *drainer) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case w := <-d.queue:
			d.sweep(ctx, w)
		}
	}
}

func (d *drainer) watches() []*drainWatch {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]*drainWatch(nil), d.drains...)
}

// witnesses picks up to n long-lived containers per capture style that
// were running from before w and still are (the sweeps start as Loki comes
// back), in the order they were started. A container's started is set
// before running, so reading it after running is safe while its runner
// goroutine lives.
func witnesses(cs []*container, w Window, n int) map[string][]*container {
	out := map[string][]*container{}
	for _, c := range cs {
		if !c.longLive || !c.running.Load() || len(out[c.style]) >= n {
			continue
		}
		if c.started.After(w.Start.Add(-drainMargin)) {
			continue
		}
		out[c.style] = append(out[c.style], c)
	}
	return out
}

// sweep follows one outage's witnesses until their lines are all in Loki.
func (d *drainer) sweep(ctx context.Context, w Window) {
	dw := &drainWatch{Window: w, Witnesses: witnesses(d.e.work.containers(), w, drainWitnesses), seen: map[string]Latency{}}
	d.mu.Lock()
	d.drains = append(d.drains, dw)
	d.mu.Unlock()
	var names []string
	for _, style := range styles {
		for _, c := range dw.Witnesses[style] {
			names = append(names, c.name)
		}
	}
	if len(names) == 0 {
		d.e.logf("drain sweeps: no witness ran through the outage at %s", w.Start.Format("15:04:05"))
		return
	}
	query := fmt.Sprintf(`{container_name=~"%s"} |= %q | line_format "{{ trunc 100 __line__ }}"`,
		strings.Join(names, "|"), probeFilter)
	from := w.Start.Add(-drainMargin)
	deadline := w.End.Add(drainSweepFor)
	var prev time.Time // the previous sweep's send time
	tick := time.NewTicker(drainSweepEvery)
	defer tick.Stop()
	for {
		sent := time.Now()
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		streams, err := d.e.loki.QueryRange(qctx, query, from, sent.Add(time.Second), probeLimit, lokitest.Forward)
		cancel()
		got := time.Now()
		d.mu.Lock()
		dw.Sweeps++
		if err != nil {
			dw.Errors++
		} else {
			lower := prev // the sweep before, which did not have what this one found
			if lower.IsZero() {
				lower = w.End
			}
			for _, s := range streams {
				for _, en := range s.Entries {
					id, seq, ok := probeFields(en.Line)
					if !ok {
						continue
					}
					key := sampleKey(id, seq)
					if _, dup := dw.seen[key]; dup {
						continue
					}
					dw.seen[key] = Latency{ID: id, Seq: seq, Write: time.Unix(0, en.Timestamp), Lower: lower, Upper: got}
				}
			}
			dw.Complete = drainComplete(dw)
		}
		done := dw.Complete
		d.mu.Unlock()
		prev = sent
		if done || got.After(deadline) {
			d.e.logf("drain sweeps of the outage at %s: %s", w.Start.Format("15:04:05"), d.summary(dw))
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// drainComplete reports whether every witness's sampled lines of the
// outage have been found: for each, a found line written before the
// outage, one written after it, and every sampled sequence number between
// the latest of the former and the earliest of the latter (a container's
// sequence numbers follow its write times), in whatever order they came.
func drainComplete(dw *drainWatch) bool {
	for _, cs := range dw.Witnesses {
		for _, c := range cs {
			if !bracketed(dw.seen, c.gen.ID, dw.Window) {
				return false
			}
		}
	}
	return true
}

// bracketed reports whether seen holds id's sampled lines written before
// w and after it and every one between.
func bracketed(seen map[string]Latency, id string, w Window) bool {
	var before, after uint64
	var haveBefore, haveAfter bool
	have := map[uint64]bool{}
	for _, l := range seen {
		if l.ID != id {
			continue
		}
		have[l.Seq] = true
		if l.Write.Before(w.Start) && (!haveBefore || l.Seq > before) {
			before, haveBefore = l.Seq, true
		}
		if l.Write.After(w.End) && (!haveAfter || l.Seq < after) {
			after, haveAfter = l.Seq, true
		}
	}
	if !haveBefore || !haveAfter || after < before {
		return false
	}
	for s := before; s <= after; s += 100 {
		if !have[s] {
			return false
		}
	}
	return true
}

// drained is how long after the outage's end the witnesses of style had
// every sampled line written during the outage queryable: the latest
// Upper among them; zero with ok false when none was found.
func (dw *drainWatch) drained(style string) (d time.Duration, n int, ok bool) {
	ids := map[string]bool{}
	for _, c := range dw.Witnesses[style] {
		ids[c.gen.ID] = true
	}
	var last time.Time
	for _, l := range dw.seen {
		if !ids[l.ID] || l.Write.Before(dw.Window.Start) || l.Write.After(dw.Window.End) {
			continue
		}
		n++
		if l.Upper.After(last) {
			last = l.Upper
		}
	}
	if n == 0 {
		return 0, 0, false
	}
	return last.Sub(dw.Window.End), n, true
}

func (d *drainer) summary(dw *drainWatch) string {
	var parts []string
	for _, style := range styles {
		if len(dw.Witnesses[style]) == 0 {
			continue
		}
		if dr, n, ok := dw.drained(style); ok {
			parts = append(parts, fmt.Sprintf("%s %v (%d lines of %d witnesses)", style, ms(dr), n, len(dw.Witnesses[style])))
		} else {
			parts = append(parts, style+" none found")
		}
	}
	state := "complete"
	if !dw.Complete {
		state = "INCOMPLETE"
	}
	return fmt.Sprintf("%s after %d sweeps (%d failed): %s", state, dw.Sweeps, dw.Errors, strings.Join(parts, ", "))
}

// sampleKey names a sampled line in the probe's and the sweeps' maps.
func sampleKey(id string, seq uint64) string { return id + "/" + strconv.FormatUint(seq, 10) }
