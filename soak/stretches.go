package soak

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Stretch is one calm part of a binary's run: the samples the leak fits
// take (after the warm-up, outside disturbance windows and the minute
// after each, one process incarnation) between two disturbances. Its
// medians say whether a binary's memory steps up at a disturbance and
// stays (a step per outage that does not grow is a high-water mark; steps
// that keep growing, a leak), which one slope over the whole run cannot
// tell apart.
type Stretch struct {
	Proc     string
	PID      int
	From, To time.Duration // since the run's start: the first and last sample
	N        int
	// Medians, in bytes (-1: not read).
	RSS, RSSAnon, Heap, HeapGoal, Metadata float64
	// GoHeld is what the Go runtime holds that can be resident: heap in
	// use, free heap not returned, stacks and metadata. RssAnon above it
	// is memory outside Go's accounting; below it, held but not touched
	// yet (a large buffer is resident only where written).
	GoHeld  float64
	Threads float64
}

// stretches cuts each binary's fitted samples at every disturbance window
// and restart.
func stretches(r *Result) []Stretch {
	var out []Stretch
	fitted := fittedFilter(r.Config, r.Start, r.Samples, r.Windows)
	for _, proc := range []string{procPlugin, procSidecar} {
		type key struct{ pid, passed int }
		var order []key
		groups := map[key][]Sample{}
		for _, s := range r.Samples {
			if s.Proc != proc || !fitted(s) {
				continue
			}
			k := key{pid: s.PID}
			for _, w := range r.Windows {
				if w.Start.Before(s.At) {
					k.passed++
				}
			}
			if _, ok := groups[k]; !ok {
				order = append(order, k)
			}
			groups[k] = append(groups[k], s)
		}
		for _, k := range order {
			ss := groups[k]
			out = append(out, Stretch{Proc: proc, PID: k.pid, N: len(ss),
				From: ss[0].At.Sub(r.Start), To: ss[len(ss)-1].At.Sub(r.Start),
				RSS:      medianOf(ss, func(s Sample) float64 { return s.RSS }),
				RSSAnon:  medianOf(ss, func(s Sample) float64 { return s.RSSAnon }),
				Heap:     medianOf(ss, func(s Sample) float64 { return s.Heap }),
				HeapGoal: medianOf(ss, func(s Sample) float64 { return s.HeapGoal }),
				Metadata: medianOf(ss, func(s Sample) float64 { return s.Metadata }),
				GoHeld:   medianOf(ss, goHeld),
				Threads:  medianOf(ss, func(s Sample) float64 { return s.Threads }),
			})
		}
	}
	return out
}

// goHeld is Stretch.GoHeld of one sample, -1 when a part was not read.
func goHeld(s Sample) float64 {
	if s.Heap < 0 || s.HeapKept < 0 || s.Stacks < 0 || s.Metadata < 0 {
		return -1
	}
	return s.Heap + s.HeapKept + s.Stacks + s.Metadata
}

// medianOf is the median of the values read (>= 0), or -1 for none.
func medianOf(ss []Sample, v func(Sample) float64) float64 {
	var vs []float64
	for _, s := range ss {
		if x := v(s); x >= 0 {
			vs = append(vs, x)
		}
	}
	if len(vs) == 0 {
		return -1
	}
	slices.Sort(vs)
	if n := len(vs); n%2 == 0 {
		return (vs[n/2-1] + vs[n/2]) / 2
	}
	return vs[len(vs)/2]
}

// stretchesMarkdown is the report's table of the stretches.
func stretchesMarkdown(sts []Stretch) string {
	if len(sts) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\n## Memory between disturbances\n\n" +
		"Each binary's samples that the leak fits take, cut at every disturbance and restart, with their medians: " +
		"a step at a disturbance that the next ones do not repeat is a high-water mark (once a backlog has made the heap that large, the runtime keeps free heap up to about a tenth over its heap goal; buffers kept for reuse; metadata for the largest heap so far); " +
		"steps that keep adding up are a leak. " +
		"Go holds: heap in use, free heap not returned, stacks and metadata, what the runtime could have resident (RssAnon below it: held, not all touched yet). MiB, and OS threads.\n\n")
	b.WriteString("| binary | pid | from | to | samples | VmRSS | RssAnon | Go heap in use | heap goal | runtime metadata | Go holds | threads |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, st := range sts {
		threads := ""
		if st.Threads >= 0 {
			threads = fmt.Sprintf("%.0f", st.Threads)
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s |\n", st.Proc, st.PID, minSec(st.From), minSec(st.To), st.N,
			numMiB(st.RSS), numMiB(st.RSSAnon), numMiB(st.Heap), numMiB(st.HeapGoal), numMiB(st.Metadata), numMiB(st.GoHeld), threads)
	}
	return b.String()
}

func minSec(d time.Duration) string {
	d = d.Round(time.Second)
	return fmt.Sprintf("%d:%02d", int(d.Minutes()), int(d.Seconds())%60)
}
