package soak

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/logferry/logferry/shared/pipeline"
)

// Minute is one minute of the run, for telling a slow line's cause: the
// steady lines' p99 per capture style beside the pushes each binary made
// and Loki answered in that minute, and what Loki logged.
type Minute struct {
	Index int                     // minutes since the start
	P99   map[string]Percentiles  // capture style -> its steady lines written in the minute
	Push  map[string]PushesMinute // process (plugin, sidecar, loki) -> its pushes
	Loki  []string                // Loki's own events (start, WAL checkpoint)
	// Disturbed: a disturbance window (as the latency sees it) overlaps
	// the minute.
	Disturbed bool
	// Busy and Steal: the machine's CPU in the minute, means of the
	// sampler's rounds in % of one core (-1: none read).
	Busy, Steal float64
}

// PushesMinute is the pushes a process made (the binaries) or answered
// (Loki) in one minute, from the sampler's counter deltas.
type PushesMinute struct {
	N, Slow float64 // pushes, and those that took longer than about 1 s
	Seconds float64 // time spent in them
}

// minutes builds the per-minute view of the run.
func minutes(r *Result, lokiEvents []LokiEvent) []Minute {
	n := int(r.Config.Duration / time.Minute)
	if n <= 0 {
		return nil
	}
	out := make([]Minute, n)
	for i := range out {
		out[i] = Minute{Index: i, P99: map[string]Percentiles{}, Push: map[string]PushesMinute{}}
		from := r.Start.Add(time.Duration(i) * time.Minute)
		to := from.Add(time.Minute)
		for _, w := range r.Windows {
			if w.Start.Add(-windowBefore).Before(to) && w.until(to).Add(latencyAfter).After(from) {
				out[i].Disturbed = true
			}
		}
	}
	index := func(t time.Time) int {
		d := t.Sub(r.Start)
		if d < 0 {
			return -1
		}
		i := int(d / time.Minute)
		if i >= n {
			return -1
		}
		return i
	}
	for _, style := range styles {
		per := make([][]time.Duration, n)
		for _, l := range r.Latencies {
			if l.Style != style || inWindows(r.Windows, l.Write, windowBefore, latencyAfter) {
				continue
			}
			if i := index(l.Write); i >= 0 {
				per[i] = append(per[i], l.Value())
			}
		}
		for i, ds := range per {
			if len(ds) > 0 {
				out[i].P99[style] = percentiles(ds)
			}
		}
	}
	// Counter deltas between consecutive samples of one process
	// incarnation, given to the minute the later sample is in.
	type mark struct {
		pid                int
		pushes, slow, secs float64
	}
	prev := map[string]mark{}
	for _, s := range r.Samples {
		if s.Pushes < 0 {
			continue
		}
		p, ok := prev[s.Proc]
		prev[s.Proc] = mark{s.PID, s.Pushes, s.SlowPushes, s.PushSeconds}
		if !ok || p.pid != s.PID || s.Pushes < p.pushes {
			// A new process (or a restarted Loki: the same PID is not
			// reused while the run lasts) counts from its own start.
			continue
		}
		i := index(s.At)
		if i < 0 {
			continue
		}
		pm := out[i].Push[s.Proc]
		pm.N += s.Pushes - p.pushes
		pm.Slow += s.SlowPushes - p.slow
		pm.Seconds += s.PushSeconds - p.secs
		out[i].Push[s.Proc] = pm
	}
	// The machine's CPU: every process of a round carries the same, so
	// one per round.
	type acc struct {
		n           int
		busy, steal float64
	}
	mach := make([]acc, n)
	var lastRound time.Time
	for _, s := range r.Samples {
		if s.MachineBusy < 0 || s.At.Equal(lastRound) {
			continue
		}
		lastRound = s.At
		if i := index(s.At); i >= 0 {
			mach[i].n++
			mach[i].busy += s.MachineBusy
			mach[i].steal += max(s.MachineSteal, 0)
		}
	}
	for i, a := range mach {
		out[i].Busy, out[i].Steal = -1, -1
		if a.n > 0 {
			out[i].Busy, out[i].Steal = a.busy/float64(a.n), a.steal/float64(a.n)
		}
	}
	for _, ev := range lokiEvents {
		if i := index(ev.At); i >= 0 {
			out[i].Loki = append(out[i].Loki, ev.At.Sub(r.Start).Truncate(time.Second).String()+" "+ev.What)
		}
	}
	return out
}

// CalmStat is a capture style's steady p99 without the lines written in a
// minute in which, or before one in which, Loki's own push route answered
// a push in over a second (a line waits up to a batch wait and a push, so
// a slow push in the next minute can hold it). Reported beside the judged
// p99, to tell the shippers' part from Loki's.
type CalmStat struct {
	N, Unseen   int
	P99         time.Duration
	Infinite    bool // the p99 falls among the unseen lines
	SlowMinutes int  // minutes left out
}

// lokiCalmLatency is CalmStat per capture style; nil when Loki's pushes
// were not counted.
func lokiCalmLatency(r *Result, unseenAt map[string][]time.Time) map[string]CalmStat {
	slow := make([]bool, len(r.Minutes))
	counted := false
	for i, m := range r.Minutes {
		p, ok := m.Push[procLoki]
		counted = counted || ok
		if ok && p.Slow > 0 {
			slow[i] = true
			if i > 0 {
				slow[i-1] = true
			}
		}
	}
	if !counted {
		return nil
	}
	calm := func(t time.Time) bool {
		i := int(t.Sub(r.Start) / time.Minute)
		return !t.Before(r.Start) && i < len(slow) && !slow[i]
	}
	out := map[string]CalmStat{}
	for _, style := range styles {
		var ds []time.Duration
		for _, l := range r.Latencies {
			if l.Style == style && !inWindows(r.Windows, l.Write, windowBefore, latencyAfter) && calm(l.Write) {
				ds = append(ds, l.Value())
			}
		}
		c := CalmStat{N: len(ds)}
		for _, t := range unseenAt[style] {
			if calm(t) {
				c.Unseen++
			}
		}
		for _, s := range slow {
			if s {
				c.SlowMinutes++
			}
		}
		c.P99, c.Infinite = quantileWithUnseen(ds, c.Unseen, 0.99)
		out[style] = c
	}
	return out
}

// LokiEvent is something the test's Loki logged that moves its answers:
// its start (WAL replay) and its WAL checkpoints.
type LokiEvent struct {
	At   time.Time
	What string
}

// lokiEventMsgs are the messages of Loki's log (v3) kept as events.
var lokiEventMsgs = map[string]string{
	"Starting Loki":       "Loki started",
	"starting checkpoint": "WAL checkpoint began",
	"checkpoint done":     "WAL checkpoint done",
}

// readLokiEvents reads the events from Loki's log file (logfmt lines with
// ts= and msg=). A missing file is no events.
func readLokiEvents(path string) ([]LokiEvent, error) {
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	defer f.Close()
	var out []LokiEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := map[string]string{}
		pipeline.ScanLogfmt(sc.Text(), func(k, v string) { fields[k] = v })
		msg := fields["msg"]
		what, ok := lokiEventMsgs[msg]
		if !ok {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, fields["ts"])
		if err != nil {
			continue
		}
		if took := fields["time"]; took != "" && msg == "checkpoint done" {
			if d, err := time.ParseDuration(took); err == nil {
				what += fmt.Sprintf(" (took %v)", d.Round(time.Second))
			}
		}
		out = append(out, LokiEvent{At: at, What: what})
	}
	if err := sc.Err(); err != nil && err != bufio.ErrTooLong {
		return out, err
	}
	return out, nil
}

// minutesMarkdown is the report's per-minute table.
func minutesMarkdown(r *Result, mins []Minute) string {
	if len(mins) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n## Latency by minute, and Loki's pushes\n\n"+
		"To tell the shippers' time from Loki's: for each minute, the p99 of the steady lines written in it (n in brackets; unseen lines left out), "+
		"beside the pushes each binary made and Loki's own push route answered in it (from the counters the sampler reads every %v: `logferry_loki_push_duration_seconds` and Loki's "+
		"`loki_request_duration_seconds{route=\"loki_api_v1_push\"}`), as pushes, those that took over a second, and their mean; the whole machine's CPU in %% of one core (%d cores: %d %% is all of it), busy and, in brackets, stolen by the hypervisor (`/proc/stat`); and what Loki logged (its starts and WAL checkpoints). "+
		"**bold**: a p99 above the bound (%v); *d*: a disturbance window overlaps the minute; *w*: warm-up.\n\n", r.Config.SampleEvery, runtime.NumCPU(), 100*runtime.NumCPU(), ms(r.Config.P99Limit))
	b.WriteString("| minute | plugin p99 | sidecar-file p99 | plugin pushes (> 1 s, mean) | sidecar pushes (> 1 s, mean) | Loki push requests (> 1 s, mean) | machine CPU % (steal) | Loki |\n|---|---|---|---|---|---|---|---|\n")
	for _, m := range mins {
		mark := ""
		if time.Duration(m.Index)*time.Minute < r.Config.Warmup {
			mark += " *w*"
		}
		if m.Disturbed {
			mark += " *d*"
		}
		cell := func(style string) string {
			p, ok := m.P99[style]
			if !ok {
				return ""
			}
			v := fmt.Sprintf("%s (%d)", ms(p.P99), p.N)
			if p.P99 > r.Config.P99Limit {
				v = "**" + v + "**"
			}
			return v
		}
		push := func(proc string) string {
			p, ok := m.Push[proc]
			if !ok || p.N <= 0 {
				return ""
			}
			return fmt.Sprintf("%.0f (%.0f, %s)", p.N, p.Slow, ms(time.Duration(p.Seconds/p.N*float64(time.Second))))
		}
		machine := ""
		if m.Busy >= 0 {
			machine = fmt.Sprintf("%.0f (%.1f)", m.Busy, m.Steal)
		}
		fmt.Fprintf(&b, "| %d%s | %s | %s | %s | %s | %s | %s | %s |\n", m.Index, mark, cell(stylePlugin), cell(styleFile),
			push(procPlugin), push(procSidecar), push(procLoki), machine, strings.Join(m.Loki, "; "))
	}
	return b.String()
}
