package soak

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/logferry/logferry/internal/lokitest"
)

// TestProberPollsWhileSweeping: a sweep that Loki takes long to answer does
// not hold up the polls of the last 5 s, so a line written after an outage
// is timed at the poll's resolution, not the sweep's. The sweep here never
// answers until the end of the test; before the prober polled apart from
// its sweeps, the line was never recorded.
func TestProberPollsWhileSweeping(t *testing.T) {
	written := time.Now().Add(-100 * time.Millisecond)
	sweepBlocked := make(chan struct{}, 1)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start, err := strconv.ParseInt(r.URL.Query().Get("start"), 10, 64)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if time.Since(time.Unix(0, start)) > 30*time.Second { // a sweep
			select {
			case sweepBlocked <- struct{}{}:
			default:
			}
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"streams","result":[{"stream":{"container_name":"soak-r1-pl0001"},"values":[["%d","loggen id=r1-pl0001 seq=100 stream=stdout x"]]}]}}`, written.UnixNano())
	}))
	defer srv.Close()
	defer close(release)

	e := &env{runID: "r1", cfg: Config{ProbeEvery: 20 * time.Millisecond}, loki: &lokitest.Server{Client: lokitest.NewClient(srv.URL)}}
	e.dist = &disturber{e: e, windows: []Window{{Kind: kindLoki, Start: time.Now().Add(-time.Minute)}}}
	e.work = &workload{e: e, byID: map[string]*container{"r1-pl0001": {name: "soak-r1-pl0001", style: stylePlugin}}}
	e.probe = newProber(e)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.probe.run(ctx)
	}()
	defer func() { cancel(); <-done }()

	select {
	case <-sweepBlocked:
	case <-time.After(30 * time.Second):
		t.Fatal("the prober sent no sweep during a disturbance")
	}
	deadline := time.After(30 * time.Second)
	for len(e.probe.latencies()) == 0 {
		select {
		case <-deadline:
			t.Fatal("no poll answered while a sweep was outstanding")
		case <-time.After(10 * time.Millisecond):
		}
	}
	l := e.probe.latencies()[0]
	if l.ID != "r1-pl0001" || l.Seq != 100 || l.Style != stylePlugin || !l.Write.Equal(time.Unix(0, written.UnixNano())) {
		t.Fatalf("recorded %+v", l)
	}
}

// TestPollsNext: each kind of answer moves its own bound; an answer sent
// before the latest of its kind moves nothing.
func TestPollsNext(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	poll := answer{kind: kindPoll, sent: at(10)}
	outage := answer{kind: kindOutage, sent: at(12), from: at(1), to: at(5)}
	late := answer{kind: kindLate, sent: at(11), from: at(-59), to: at(7)}
	q := polls{}.next(poll).next(outage).next(late)
	q = q.next(answer{kind: kindPoll, sent: at(9)})                            // answered late
	q = q.next(answer{kind: kindOutage, sent: at(11), from: at(3), to: at(6)}) // older than the latest sweep
	q = q.next(answer{kind: kindLate, sent: at(10.5)})
	if want := (polls{poll: poll, late: late, outage: outage}); q != want {
		t.Fatalf("polls %+v, want %+v", q, want)
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
