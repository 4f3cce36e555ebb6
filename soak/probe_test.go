package soak

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/logferry/logferry/internal/lokitest"
)

// TestProberFollowsTail: the prober records each sampled line the tail
// delivers, once, received at Upper and, no poll having answered, not known
// absent after its write; it ignores foreign lines, counts what Loki
// dropped, and reconnects after the tail ended (a gap between). Polls get
// 400 here.
func TestProberFollowsTail(t *testing.T) {
	written := time.Now().Add(-time.Second).UnixNano()
	var mu sync.Mutex
	conns := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != lokitest.TailPath || !strings.Contains(r.URL.Query().Get("query"), `soak-r1-.+`) {
			http.Error(w, "unexpected "+r.URL.String(), http.StatusBadRequest)
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		mu.Lock()
		conns++
		n := conns
		mu.Unlock()
		seq := 100 * n
		msg := fmt.Sprintf(`{"streams":[{"stream":{"container_name":"soak-r1-pl0001"},"values":[["%d","loggen id=r1-pl0001 seq=%d stream=stdout x"],["%d","loggen id=r1-pl0001 seq=%d stream=stdout x"],["%d","foreign line"]]}],"dropped_entries":[{"labels":{},"timestamp":"1"}]}`,
			written+int64(n), seq, written+int64(n), seq, written)
		if err := c.Write(r.Context(), websocket.MessageText, []byte(msg)); err != nil {
			return
		}
		if n == 1 {
			c.Close(websocket.StatusNormalClosure, "") // as Loki going away
			return
		}
		for { // until the prober closes its end
			if _, _, err := c.Read(context.Background()); err != nil {
				return
			}
		}
	}))
	defer srv.Close()

	e := &env{runID: "r1", cfg: Config{ProbeEvery: 10 * time.Millisecond}, loki: &lokitest.Server{Client: lokitest.NewClient(srv.URL)}}
	e.work = &workload{e: e, byID: map[string]*container{"r1-pl0001": {name: "soak-r1-pl0001", style: stylePlugin}}}
	e.probe = newProber(e)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.probe.run(ctx)
	}()
	deadline := time.After(30 * time.Second)
	for len(e.probe.latencies()) < 2 {
		select {
		case <-deadline:
			t.Fatalf("recorded %d lines", len(e.probe.latencies()))
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	<-done
	ls := e.probe.latencies()
	if len(ls) != 2 {
		t.Fatalf("recorded %+v", ls)
	}
	for i, l := range ls {
		if l.ID != "r1-pl0001" || l.Seq != uint64(100*(i+1)) || l.Style != stylePlugin || l.Write.UnixNano() != written+int64(i+1) || !l.Lower.Equal(l.Write) || l.Value() <= 0 {
			t.Errorf("line %d: %+v", i, l)
		}
	}
	e.probe.mu.Lock()
	defer e.probe.mu.Unlock()
	if e.probe.connects != 2 || len(e.probe.gaps) != 1 || e.probe.dropped != 2 || len(e.probe.tailErrs) != 1 {
		t.Fatalf("connects %d, gaps %v, dropped %d, errors %q", e.probe.connects, e.probe.gaps, e.probe.dropped, e.probe.tailErrs)
	}
}

// TestLowerBound: a line is known absent until the latest answered poll
// that covered it: the latest poll, or for an older line the one sent
// pollSpan after it.
func TestLowerBound(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	for _, tt := range []struct {
		name              string
		poll, write, want float64
	}{
		{"written before the last poll", 10, 9.5, 10},
		{"written after the last poll", 10, 10.1, 10.1},
		{"old line: the last poll that still covered it", 60, 20, 23},
	} {
		if got := lowerBound(at(tt.poll), at(tt.write)); !got.Equal(at(tt.want)) {
			t.Errorf("%s: %v, want %v", tt.name, got.Sub(t0), at(tt.want).Sub(t0))
		}
	}
	if got := lowerBound(time.Time{}, at(3)); !got.Equal(at(3)) {
		t.Errorf("no poll yet: %v", got.Sub(t0))
	}
}

// TestPollFrom: a poll looks pollSpan back, or pollSpan before the
// previous poll when that was sent longer ago, never past pollSpanMax.
func TestPollFrom(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	for _, tt := range []struct{ prev, sent, want float64 }{
		{-1, 10, 7},     // the first poll
		{9.8, 10, 6.8},  // polls 200 ms apart: pollSpan before the previous one
		{4, 10, 1},      // a slow answer: 6 s since the previous poll
		{-100, 10, -20}, // Loki down for long: at most pollSpanMax back
	} {
		prev := at(tt.prev)
		if tt.prev == -1 {
			prev = time.Time{}
		}
		if got := pollFrom(prev, at(tt.sent)); !got.Equal(at(tt.want)) {
			t.Errorf("prev %v, sent %v: from %v, want %v", tt.prev, tt.sent, got.Sub(t0), at(tt.want).Sub(t0))
		}
	}
}

// TestQuantileWithUnseen: unseen lines count as slower than any seen.
func TestQuantileWithUnseen(t *testing.T) {
	ds := make([]time.Duration, 0, 200)
	for i := range 200 {
		ds = append(ds, time.Duration(200-i)*time.Millisecond)
	}
	if d, inf := quantileWithUnseen(ds, 0, 0.99); inf || d != 198*time.Millisecond {
		t.Errorf("no unseen: %v %v", d, inf)
	}
	if d, inf := quantileWithUnseen(ds, 1, 0.99); inf || d != 199*time.Millisecond {
		t.Errorf("1 unseen: %v %v", d, inf)
	}
	if _, inf := quantileWithUnseen(ds, 3, 0.99); !inf {
		t.Error("3 unseen of 203: the p99 is among them")
	}
	if d, inf := quantileWithUnseen(nil, 0, 0.99); inf || d != 0 {
		t.Errorf("empty: %v %v", d, inf)
	}
}

// TestRecoveryLimit: 10 s for a 20 s outage, in proportion for a longer
// one, never less than 10 s.
func TestRecoveryLimit(t *testing.T) {
	cfg := Config{RecoveryLimit: 10 * time.Second, LokiDown: 20 * time.Second}
	for _, tt := range []struct{ outage, want time.Duration }{
		{5 * time.Second, 10 * time.Second},
		{20 * time.Second, 10 * time.Second},
		{41 * time.Second, 20500 * time.Millisecond},
		{74 * time.Second, 37 * time.Second},
	} {
		if got := recoveryLimit(cfg, tt.outage); got != tt.want {
			t.Errorf("outage %v: limit %v, want %v", tt.outage, got, tt.want)
		}
	}
}

// TestStoppedWhileDisabled: only a plugin window counts, from its start to
// a second after its end.
func TestStoppedWhileDisabled(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	ws := []Window{
		{Kind: kindLoki, Start: at(0), End: at(40)},
		{Kind: kindPlugin, Start: at(100), End: at(102)},
	}
	for _, tt := range []struct {
		exit float64
		want bool
	}{{20, false}, {99.5, false}, {100, true}, {102.9, true}, {103.5, false}} {
		if got := stoppedWhileDisabled(ws, at(tt.exit)); got != tt.want {
			t.Errorf("exit at %v s: %v, want %v", tt.exit, got, tt.want)
		}
	}
	if got := lostValue(DeliveryTotals{Lost: 20, LostDisabled: 14, DisabledContainers: 1, LostRemoved: 6, RemovedContainers: 1, Written: 1000, Containers: 5}); got !=
		"0 of 1000 written (5 containers); besides, 14 lost by 1 of the plugin's containers that stopped while it was disabled (the documented limit)"+
			"; besides, 6 lost by 1 of the sidecar's containers removed while it was down after a SIGKILL (the documented limit)" {
		t.Errorf("lostValue: %s", got)
	}
}

// TestRemovedWhileSidecarDown: a sidecar container counts when it exited
// from unackedSpan before the kill and was removed before the sidecar was
// back; one removed after that, or never, does not.
func TestRemovedWhileSidecarDown(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	ws := []Window{{Kind: kindPlugin, Start: at(0), End: at(2)}, {Kind: kindSidecar, Start: at(100), End: at(106)}}
	for _, tt := range []struct {
		exited, removed float64
		want            bool
	}{
		{98, 99, true},    // its last lines unacknowledged at the kill, removed before it
		{102, 103, true},  // exited and removed while the sidecar was down
		{102, 107, false}, // removed after the sidecar was back: it read the rest
		{90, 91, false},   // long before the kill
		{0.5, 1, false},   // a plugin window
	} {
		if got := removedWhileSidecarDown(ws, at(tt.exited), at(tt.removed)); got != tt.want {
			t.Errorf("exited %v, removed %v: %v, want %v", tt.exited, tt.removed, got, tt.want)
		}
	}
	if removedWhileSidecarDown(ws, at(102), time.Time{}) {
		t.Error("a container not removed counts")
	}
}
