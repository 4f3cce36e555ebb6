package soak

import (
	"strings"
	"testing"
	"time"
)

// The stretches are cut at each disturbance and restart, leave out the
// warm-up, the windows and the minute after each, and carry each part's
// medians: a step at the first outage shows, and a second one that does
// not repeat it.
func TestStretches(t *testing.T) {
	start := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	r := &Result{Config: Config{Duration: 30 * time.Minute, Warmup: 5 * time.Minute}, Start: start}
	outage := func(at time.Duration) Window {
		return Window{Kind: kindLoki, Start: start.Add(at), End: start.Add(at + 20*time.Second), Settled: start.Add(at + 30*time.Second)}
	}
	r.Windows = []Window{outage(10 * time.Minute), outage(20 * time.Minute)}
	for i := range 360 {
		at := start.Add(time.Duration(i) * 5 * time.Second)
		rss := 50.0
		if at.After(start.Add(10 * time.Minute)) {
			rss = 54 // the first outage's high-water mark, kept
		}
		pid := 1
		if at.After(start.Add(25 * time.Minute)) {
			pid = 2 // restarted: from 45 MiB, past its warm-up only at the end
			rss = 45
		}
		r.Samples = append(r.Samples, Sample{At: at, Proc: procSidecar, PID: pid, RSS: rss * (1 << 20), RSSAnon: -1, Heap: -1, HeapGoal: -1, Metadata: -1,
			HeapKept: 1 << 20, Stacks: 1 << 20, Threads: 9})
	}
	sts := stretches(r)
	want := []struct {
		from, to string
		n        int
		rss      float64
	}{
		{"5:00", "9:55", 60, 50},    // warm-up to the first window's start (2 s margin)
		{"11:35", "19:55", 101, 54}, // past a minute after it settled (10:30) to the second
		{"21:35", "25:00", 42, 54},
	}
	if len(sts) != len(want) {
		t.Fatalf("%d stretches, want %d: %+v", len(sts), len(want), sts)
	}
	for i, w := range want {
		st := sts[i]
		if minSec(st.From) != w.from || minSec(st.To) != w.to || st.N != w.n || st.RSS != w.rss*(1<<20) || st.PID != 1 || st.Proc != procSidecar {
			t.Errorf("stretch %d: %s-%s, %d samples, RSS %.0f MiB, pid %d; want %s-%s, %d, %.0f MiB, pid 1",
				i, minSec(st.From), minSec(st.To), st.N, st.RSS/(1<<20), st.PID, w.from, w.to, w.n, w.rss)
		}
		if st.Heap != -1 || st.GoHeld != -1 {
			t.Errorf("stretch %d: heap %v, Go holds %v from samples that read no heap, want -1", i, st.Heap, st.GoHeld)
		}
		if st.Threads != 9 {
			t.Errorf("stretch %d: %v threads, want 9", i, st.Threads)
		}
	}
	md := stretchesMarkdown(sts)
	if !strings.Contains(md, "| sidecar | 1 | 11:35 | 19:55 | 101 | 54.0 | n/a |") || !strings.Contains(md, "| n/a | 9 |") {
		t.Errorf("markdown lacks the second stretch's row:\n%s", md)
	}
}

func TestGoHeld(t *testing.T) {
	s := Sample{Heap: 10, HeapKept: 3, Stacks: 1, Metadata: 2}
	if got := goHeld(s); got != 16 {
		t.Errorf("goHeld %v, want 16", got)
	}
	s.Stacks = -1
	if got := goHeld(s); got != -1 {
		t.Errorf("goHeld with stacks unread %v, want -1", got)
	}
}
