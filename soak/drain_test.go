package soak

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logferry/logferry/internal/dockertest"
	"github.com/logferry/logferry/internal/loggen"
	"github.com/logferry/logferry/internal/lokitest"
)

// TestBracketed: a witness's outage lines are complete only with a line
// before the outage, one after it and every sampled one between, in any
// order of arrival.
func TestBracketed(t *testing.T) {
	t0 := time.Unix(1000, 0)
	w := Window{Start: t0.Add(10 * time.Second), End: t0.Add(20 * time.Second)}
	// seq s written at t0 + s/100 seconds.
	line := func(id string, seq uint64) Latency {
		return Latency{ID: id, Seq: seq, Write: t0.Add(time.Duration(seq/100) * time.Second)}
	}
	set := func(id string, seqs ...uint64) map[string]Latency {
		m := map[string]Latency{}
		for _, s := range seqs {
			m[sampleKey(id, s)] = line(id, s)
		}
		return m
	}
	var all []uint64
	for s := uint64(800); s <= 2300; s += 100 {
		all = append(all, s)
	}
	for _, tc := range []struct {
		name string
		seen map[string]Latency
		want bool
	}{
		{"all", set("a", all...), true},
		{"only the outage and after", set("a", all[3:]...), false}, // 1100.. : nothing before 10 s
		{"no line after", set("a", all[:12]...), false},            // ..1900: the last is at 19 s
		{"a gap in the outage", set("a", append(append([]uint64(nil), all[:7]...), all[8:]...)...), false},
		{"a gap after the first line after it", set("a", append(append([]uint64(nil), all[:14]...), all[15:]...)...), true},
		{"another container's lines", set("b", all...), false},
	} {
		if got := bracketed(tc.seen, "a", w); got != tc.want {
			t.Errorf("%s: bracketed = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestWitnesses: long-lived containers running from before the outage
// and still running, at most n per capture style, in start order.
func TestWitnesses(t *testing.T) {
	t0 := time.Unix(1000, 0)
	w := Window{Start: t0.Add(time.Minute), End: t0.Add(2 * time.Minute)}
	mk := func(name, style string, long, running bool, started time.Time) *container {
		c := &container{name: name, style: style, longLive: long, started: started}
		c.ran.Store(!started.IsZero())
		c.running.Store(running)
		return c
	}
	cs := []*container{
		mk("p1", stylePlugin, true, true, t0),
		mk("churn", stylePlugin, false, true, t0),
		mk("late", stylePlugin, true, true, w.Start),
		mk("exited", styleFile, true, false, t0),
		mk("p2", stylePlugin, true, true, t0),
		mk("f1", styleFile, true, true, t0),
		mk("p3", stylePlugin, true, true, t0),
		mk("never", styleFile, true, false, time.Time{}),
	}
	got := witnesses(cs, w, 2)
	var names []string
	for _, style := range styles {
		for _, c := range got[style] {
			names = append(names, style+":"+c.name)
		}
	}
	if want := "plugin:p1 plugin:p2 sidecar-file:f1"; strings.Join(names, " ") != want {
		t.Errorf("witnesses = %v, want %s", names, want)
	}
}

// TestDrainerSweeps: against a Loki that has the witnesses' backlog in
// three steps, the drainer sweeps the outage's span for its witnesses
// only, calls the drain complete at the third answer and stops there; the
// drain is that answer's time after the outage's end. recovery then counts
// a witness line the check found and the sweeps did not as unseen.
func TestDrainerSweeps(t *testing.T) {
	now := time.Now()
	w := Window{Kind: kindLoki, Start: now.Add(-30 * time.Second), End: now.Add(-10 * time.Second)}
	// Witness wp1 writes sampled line k*100 at w.Start + (k-3) s: 300 is
	// at the outage's start, 2300 at its end.
	write := func(seq uint64) time.Time { return w.Start.Add(time.Duration(int64(seq/100)-3) * time.Second) }
	var mu sync.Mutex
	calls := 0
	var queries []string
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		n := calls
		queries = append(queries, r.URL.Query().Get("query"))
		mu.Unlock()
		last := map[int]uint64{1: 200, 2: 2000}[n] // before the outage; then part of the backlog
		if n >= 3 {
			last = 2600 // all, and lines after the outage
		}
		var vals []string
		for s := uint64(0); s <= last; s += 100 {
			vals = append(vals, fmt.Sprintf(`["%d","loggen id=r1-pl0001 seq=%d stream=stdout x"]`, write(s).UnixNano(), s))
		}
		fmt.Fprintf(rw, `{"status":"success","data":{"resultType":"streams","result":[{"stream":{"container_name":"soak-r1-pl0001"},"values":[%s]}]}}`,
			strings.Join(vals, ","))
	}))
	defer srv.Close()

	e := &env{runID: "r1", loki: &lokitest.Server{Client: lokitest.NewClient(srv.URL)}, cfg: Config{Log: &strings.Builder{}}, tb: newHarnessTB(nil, &strings.Builder{})}
	wp := &container{name: "soak-r1-pl0001", style: stylePlugin, longLive: true, started: w.Start.Add(-time.Minute), gen: loggen.Config{ID: "r1-pl0001"}}
	wp.ran.Store(true)
	wp.running.Store(true)
	churn := &container{name: "soak-r1-pc0002", style: stylePlugin, started: w.Start.Add(-time.Minute), gen: loggen.Config{ID: "r1-pc0002"}}
	churn.ran.Store(true)
	churn.running.Store(true)
	e.work = &workload{e: e, all: []*container{wp, churn}}
	d := newDrainer(e)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	began := time.Now()
	d.sweep(ctx, w)
	ended := time.Now()

	mu.Lock()
	defer mu.Unlock()
	if calls != 3 {
		t.Fatalf("%d sweeps, want 3 (complete at the third)", calls)
	}
	for _, q := range queries {
		if !strings.Contains(q, `container_name=~"soak-r1-pl0001"`) || strings.Contains(q, "pc0002") {
			t.Errorf("query %q: want the witness only", q)
		}
	}
	ws := d.watches()
	if len(ws) != 1 || !ws[0].Complete || ws[0].Sweeps != 3 {
		t.Fatalf("watches = %+v, want one complete after 3 sweeps", ws)
	}
	dr, n, ok := ws[0].drained(stylePlugin)
	if !ok || n != 21 { // 300..2300
		t.Errorf("drained: %d lines (ok %v), want 21", n, ok)
	}
	if lo, hi := began.Sub(w.End), ended.Sub(w.End); dr < lo || dr > hi {
		t.Errorf("drain %v, want the third answer's time after the end, within [%v, %v]", dr, lo, hi)
	}

	var sampled []SampledLine
	for s := uint64(0); s <= 2600; s += 100 {
		sampled = append(sampled, SampledLine{Seq: s, Write: write(s)})
	}
	rec := recovery(Config{RecoveryLimit: 10 * time.Second, LokiDown: 20 * time.Second}, w, ws, map[*container]Delivery{wp: {Sampled: sampled}})
	if rec.Unseen != 0 || rec.Samples != 21 || !rec.Complete || rec.Drain != dr || rec.Witnesses != 1 {
		t.Errorf("recovery = %+v, want 21 samples, 0 unseen, complete, drain %v", rec, dr)
	}
	delete(ws[0].seen, sampleKey("r1-pl0001", 1500))
	rec = recovery(Config{RecoveryLimit: 10 * time.Second, LokiDown: 20 * time.Second}, w, ws, map[*container]Delivery{wp: {Sampled: sampled}})
	if rec.Unseen != 1 {
		t.Errorf("recovery with a witness line unswept: %d unseen, want 1", rec.Unseen)
	}
	if v := recoveryValue(rec); !strings.HasPrefix(v, "unknown: ") {
		t.Errorf("recoveryValue = %q, want it unknown", v)
	}
}

// TestDockerdHungSavesStacks: against a real dockerd, dockerdHung has it
// write its goroutine stacks and copies them and its log into the report
// directory, once.
func TestDockerdHungSavesStacks(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs dockerd")
	}
	out := t.TempDir()
	var log strings.Builder
	e := &env{cfg: Config{OutDir: out, Log: &log}, tb: newHarnessTB(nil, &log)}
	e.d = dockertest.Start(t)
	e.dockerdHung("a test")
	e.dockerdHung("a test, again")
	stacks, _ := filepath.Glob(filepath.Join(out, "dockerd-goroutine-stacks-*"))
	if len(stacks) != 1 {
		t.Fatalf("stack dumps in the report directory: %v, want one (log: %s)", stacks, log.String())
	}
	raw, err := os.ReadFile(stacks[0])
	if err != nil || !strings.Contains(string(raw), "goroutine ") {
		t.Errorf("%s: %v, %.200q: want goroutine stacks", stacks[0], err, raw)
	}
	if _, err := os.Stat(filepath.Join(out, "dockerd.log")); err != nil {
		t.Errorf("dockerd's log not saved: %v", err)
	}
	if n := strings.Count(log.String(), "did not report an exit"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, log.String())
	}
}
