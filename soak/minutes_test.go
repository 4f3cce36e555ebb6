package soak

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMinutes(t *testing.T) {
	start := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return start.Add(d) }
	r := &Result{Config: Config{Duration: 3 * time.Minute, Warmup: time.Minute, SampleEvery: 5 * time.Second, P99Limit: 1250 * time.Millisecond}, Start: start}
	// A Loki outage from 2:05 to 2:20, settled at 2:25: its window begins
	// 2 s before, in minute 2.
	r.Windows = []Window{{Kind: kindLoki, Start: at(2*time.Minute + 5*time.Second), End: at(2*time.Minute + 20*time.Second), Settled: at(2*time.Minute + 25*time.Second)}}
	// Minute 1: 100 plugin lines at 0.5 s, two at 3 s (the p99 of 102 by
	// nearest rank); a line in minute 2's window is not steady.
	for i := range 100 {
		w := at(time.Minute + time.Duration(i)*100*time.Millisecond)
		r.Latencies = append(r.Latencies, Latency{Style: stylePlugin, Write: w, Lower: w.Add(400 * time.Millisecond), Upper: w.Add(600 * time.Millisecond)})
	}
	w := at(time.Minute + 30*time.Second)
	r.Latencies = append(r.Latencies,
		Latency{Style: stylePlugin, Write: w, Lower: w.Add(3 * time.Second), Upper: w.Add(3 * time.Second)},
		Latency{Style: stylePlugin, Write: w, Lower: w.Add(3 * time.Second), Upper: w.Add(3 * time.Second)},
		Latency{Style: styleFile, Write: at(2*time.Minute + 6*time.Second), Lower: at(2*time.Minute + 40*time.Second), Upper: at(2*time.Minute + 40*time.Second)})
	// The plugin's counters: 10 pushes in minute 0, 20 (2 slow, 30 s) in
	// minute 1; then a new pid, whose first sample is not a delta.
	r.Samples = []Sample{
		{At: at(0), Proc: procPlugin, PID: 1, Pushes: 0, SlowPushes: 0, PushSeconds: 0, MachineBusy: -1, MachineSteal: -1},
		{At: at(50 * time.Second), Proc: procPlugin, PID: 1, Pushes: 10, SlowPushes: 0, PushSeconds: 1, MachineBusy: 80, MachineSteal: 2},
		{At: at(70 * time.Second), Proc: procPlugin, PID: 1, Pushes: 30, SlowPushes: 2, PushSeconds: 31, MachineBusy: 120, MachineSteal: 4},
		{At: at(130 * time.Second), Proc: procPlugin, PID: 2, Pushes: 5, SlowPushes: 0, PushSeconds: 1, MachineBusy: -1, MachineSteal: -1},
		{At: at(135 * time.Second), Proc: procPlugin, PID: 2, Pushes: 6, SlowPushes: 1, PushSeconds: 3, MachineBusy: -1, MachineSteal: -1},
		// The same round as the plugin's sample at 70 s: its machine CPU
		// counts once.
		{At: at(70 * time.Second), Proc: procLoki, PID: 9, Pushes: -1, SlowPushes: -1, PushSeconds: -1, MachineBusy: 120, MachineSteal: 4},
		{At: at(80 * time.Second), Proc: procLoki, PID: 9, Pushes: -1, SlowPushes: -1, PushSeconds: -1, MachineBusy: 60, MachineSteal: 1},
	}
	evs := []LokiEvent{{At: at(90 * time.Second), What: "WAL checkpoint began"}}
	ms := minutes(r, evs)
	if len(ms) != 3 {
		t.Fatalf("%d minutes, want 3", len(ms))
	}
	if p := ms[1].P99[stylePlugin]; p.N != 102 || p.P99 != 3*time.Second {
		t.Errorf("minute 1 plugin: %+v", p)
	}
	if _, ok := ms[2].P99[styleFile]; ok {
		t.Errorf("minute 2: a line of the outage's window counted as steady")
	}
	if got := ms[0].Push[procPlugin]; got.N != 10 || got.Slow != 0 || got.Seconds != 1 {
		t.Errorf("minute 0 pushes %+v", got)
	}
	if got := ms[1].Push[procPlugin]; got.N != 20 || got.Slow != 2 || got.Seconds != 30 {
		t.Errorf("minute 1 pushes %+v", got)
	}
	if got := ms[2].Push[procPlugin]; got.N != 1 || got.Slow != 1 || got.Seconds != 2 {
		t.Errorf("minute 2 pushes %+v (a new pid starts its own deltas)", got)
	}
	if _, ok := ms[1].Push[procLoki]; ok {
		t.Errorf("Loki without counters has pushes")
	}
	if ms[0].Disturbed || ms[1].Disturbed || !ms[2].Disturbed {
		t.Errorf("disturbed: %v %v %v, want false false true", ms[0].Disturbed, ms[1].Disturbed, ms[2].Disturbed)
	}
	if len(ms[1].Loki) != 1 || !strings.Contains(ms[1].Loki[0], "WAL checkpoint began") {
		t.Errorf("minute 1 Loki events %q", ms[1].Loki)
	}
	if ms[0].Busy != 80 || ms[0].Steal != 2 || ms[1].Busy != 90 || ms[1].Steal != 2.5 || ms[2].Busy != -1 {
		t.Errorf("machine CPU by minute: %v (%v), %v (%v), %v; want 80 (2), 90 (2.5), -1", ms[0].Busy, ms[0].Steal, ms[1].Busy, ms[1].Steal, ms[2].Busy)
	}
	md := minutesMarkdown(r, ms)
	for _, want := range []string{"| 1 |", "**3s (102)**", "20 (2, 1.5s)", "| 0 *w* |", "| 2 *d* |", "| 90 (2.5) |"} {
		if !strings.Contains(md, want) {
			t.Errorf("table lacks %q:\n%s", want, md)
		}
	}
}

func TestReadLokiEvents(t *testing.T) {
	// Lines as Loki 3.7 writes them.
	log := `level=info ts=2026-12-07T05:24:13.804662283Z caller=main.go:146 msg="Starting Loki" version="(version=3.7.8, branch=, revision=unknown)"
level=info ts=2026-12-07T05:24:13.84928078Z caller=recovery.go:45 component=ingester msg="no checkpoint found, treating as no-op"
level=info ts=2026-12-07T05:29:13.852783878Z caller=checkpoint.go:712 msg="starting checkpoint"
level=info ts=2026-12-07T05:33:43.86866869Z caller=checkpoint.go:599 msg="atomic checkpoint finished" old=/tmp/x new=/tmp/y
level=info ts=2026-12-07T05:33:44.409657881Z caller=checkpoint.go:670 msg="checkpoint done" time=4m30.544720557s
level=debug ts=2026-12-07T05:33:45Z caller=x.go:1 msg="query" query="{x=\"starting checkpoint\"}"
`
	path := filepath.Join(t.TempDir(), "loki.log")
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	evs, err := readLokiEvents(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Loki started", "WAL checkpoint began", "WAL checkpoint done (took 4m31s)"}
	if len(evs) != len(want) {
		t.Fatalf("events %+v, want %q", evs, want)
	}
	for i, w := range want {
		if evs[i].What != w {
			t.Errorf("event %d: %q, want %q", i, evs[i].What, w)
		}
	}
	if got := evs[0].At.Format(time.RFC3339Nano); got != "2026-12-07T05:24:13.804662283Z" {
		t.Errorf("first event at %s", got)
	}
	if evs, err := readLokiEvents(filepath.Join(t.TempDir(), "absent.log")); err != nil || evs != nil {
		t.Errorf("absent log: %v, %v", evs, err)
	}
}

// TestLokiCalmLatency: lines written in a minute in which Loki answered a
// push in over a second, or in the minute before it, are left out; others
// count, unseen ones as the slowest.
func TestLokiCalmLatency(t *testing.T) {
	start := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return start.Add(d) }
	r := &Result{Start: start, Minutes: []Minute{
		{Index: 0, Push: map[string]PushesMinute{procLoki: {N: 60}}},
		{Index: 1, Push: map[string]PushesMinute{procLoki: {N: 60}}},
		{Index: 2, Push: map[string]PushesMinute{procLoki: {N: 60, Slow: 1}}},
		{Index: 3, Push: map[string]PushesMinute{procLoki: {N: 60}}},
	}}
	add := func(d, lat time.Duration) {
		w := at(d)
		r.Latencies = append(r.Latencies, Latency{Style: stylePlugin, Write: w, Lower: w.Add(lat), Upper: w.Add(lat)})
	}
	for i := range 200 {
		add(time.Duration(i)*300*time.Millisecond, 500*time.Millisecond) // minutes 0-0:59
		add(3*time.Minute+time.Duration(i)*300*time.Millisecond, 600*time.Millisecond)
	}
	add(90*time.Second, 5*time.Second)  // minute 1: before the slow one, left out
	add(150*time.Second, 9*time.Second) // minute 2: left out
	got := lokiCalmLatency(r, map[string][]time.Time{stylePlugin: {at(170 * time.Second)}})
	c := got[stylePlugin]
	if c.N != 400 || c.Unseen != 0 || c.SlowMinutes != 2 || c.P99 != 600*time.Millisecond || c.Infinite {
		t.Errorf("calm: %+v; want 400 lines, 0 unseen, 2 minutes out, p99 600ms", c)
	}
	// Five unseen lines in calm minutes: the p99 of 405 falls among them.
	var unseen []time.Time
	for i := range 5 {
		unseen = append(unseen, at(10*time.Second+time.Duration(i)*time.Second))
	}
	if c := lokiCalmLatency(r, map[string][]time.Time{stylePlugin: unseen})[stylePlugin]; c.Unseen != 5 || !c.Infinite {
		t.Errorf("calm with unseen: %+v; want 5 unseen and the p99 among them", c)
	}
	r.Minutes = []Minute{{Index: 0, Push: map[string]PushesMinute{}}}
	if got := lokiCalmLatency(r, nil); got != nil {
		t.Errorf("without Loki's counters: %v, want nil", got)
	}
}

func TestParseMachineCPU(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice
	m, ok := parseMachineCPU([]byte("cpu  100 5 50 1000 30 2 3 7 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"))
	if !ok || m.busy != 100+5+50+2+3+7 || m.steal != 7 {
		t.Errorf("busy %d steal %d ok %v, want 167 7 true", m.busy, m.steal, ok)
	}
	if _, ok := parseMachineCPU([]byte("intr 1 2 3\n")); ok {
		t.Errorf("a first line that is not cpu's was read")
	}
	if _, ok := parseMachineCPU([]byte("cpu 1 2 3\n")); ok {
		t.Errorf("a short cpu line was read")
	}
}
