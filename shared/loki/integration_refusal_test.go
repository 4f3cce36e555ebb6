package loki_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/logferry/logferry/internal/lokitest"
	"github.com/logferry/logferry/shared/loki"
)

// lokiMaxLineSize is Loki's default limits_config.max_line_size, "256KB",
// in bytes: Loki's flagext.ByteSize parses it with c2h5oh/datasize, where
// KB is 1024. scripts/loki-config.yaml keeps that default.
const lokiMaxLineSize = 256 << 10

// TestIntegrationPartialRefusal establishes against a real Loki what a 400
// means, and that the dispatcher acts on it rightly:
//
//   - Loki answers 400 to a push with one line over max_line_size, and yet
//     stores the push's other lines (so sending the push again would store
//     them twice); a line of exactly max_line_size is stored.
//   - Loki refuses a whole push, storing nothing, when one stream's labels
//     do not parse; a push of a stream without entries stores nothing.
//   - Through a Dispatcher, one batch holding both: every valid line is in
//     Loki exactly once (count_over_time, which counts duplicates), the
//     over-long line is counted as line_too_long, the unparsable stream's
//     entries as invalid_labels, and the producer is acknowledged.
func TestIntegrationPartialRefusal(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real Loki")
	}
	srv := lokitest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	run := fmt.Sprintf("r%d", time.Now().UnixNano())
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Second).UnixNano()
	from, to := time.Unix(0, base-1), time.Now().Add(time.Minute)

	// The fact, with Loki's own JSON push: 400, and the valid lines kept.
	fact := map[string]string{"run": run, "part": "fact"}
	err := srv.Push(ctx, factPush(fact, base))
	var herr *lokitest.HTTPError
	if !errors.As(err, &herr) || herr.StatusCode != http.StatusBadRequest {
		t.Fatalf("push with an over-long line: %v, want HTTP 400", err)
	}
	if want := fmt.Sprintf("max entry size '%d' bytes exceeded", lokiMaxLineSize); !strings.Contains(herr.Body, want) {
		t.Fatalf("Loki's 400 says %q, want it to contain %q", herr.Body, want)
	}
	t.Logf("Loki's answer: %s", herr.Body)
	got, err := srv.WaitForCount(ctx, lokitest.LabelString(fact), from, to, 2)
	if err != nil {
		t.Fatal(err)
	}
	if n := lokitest.Count(got); n != 2 {
		t.Fatalf("Loki kept %d lines of the refused push, want the 2 valid ones", n)
	}
	// Sending that push again, as a client retrying the 400 would, stores
	// the valid lines a second time once Loki's ingester has cut the head
	// block that held them (every 256 KiB of a stream; a 1 MiB batch cuts
	// several): a log query hides the copies, count_over_time counts them.
	filler := make([]lokitest.Entry, 3)
	for i := range filler {
		filler[i] = lokitest.Entry{Timestamp: base + 10 + int64(i), Line: strings.Repeat(strconv.Itoa(i), 100_000)}
	}
	if err := srv.Push(ctx, []lokitest.Stream{{Labels: fact, Entries: filler}}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Push(ctx, factPush(fact, base)); !errors.As(err, &herr) || herr.StatusCode != http.StatusBadRequest {
		t.Fatalf("the same push again: %v, want HTTP 400", err)
	}
	factSel := lokitest.LabelString(fact)
	waitUntil(t, "the resent lines to be counted twice", func() bool { return countOverTime(ctx, t, srv.URL(), factSel) == 2*2+3 })
	if got, err := srv.QueryAll(ctx, factSel, from, to); err != nil || lokitest.Count(got) != 2+3 {
		t.Fatalf("log query after the resend: %d lines, %v; want 5 (copies hidden)", lokitest.Count(got), err)
	}

	// Through the dispatcher: one batch, two streams, one of them with
	// labels Loki cannot parse, and one over-long line.
	reg := prometheus.NewRegistry()
	cfg := loki.DefaultConfig()
	cfg.URL = srv.PushURL()
	cfg.BatchWait = 2 * time.Second // everything below in one batch
	d, err := loki.New(cfg, loki.NewMetrics(reg), nil)
	if err != nil {
		t.Fatal(err)
	}
	good := fmt.Sprintf(`{part="dispatcher", run=%q}`, run)
	bad := fmt.Sprintf(`{part="unparsable", run=%q`, run)
	var want []string
	const n = 12
	ack := &lastAcked{want: n - 1, done: make(chan struct{})}
	for i := 0; i < n; i++ {
		e := loki.Entry{Stream: good, TimeNano: base + 100 + int64(i), Line: fmt.Sprintf("valid %d", i), Acker: ack, Offset: int64(i)}
		switch i {
		case 3:
			e.Line = strings.Repeat("a", lokiMaxLineSize) // at the limit: kept
		case 6:
			e.Line = strings.Repeat("b", lokiMaxLineSize+1) // over it: refused
		case 8, 10:
			e.Stream = bad
		}
		if e.Stream == good && i != 6 {
			want = append(want, e.Line)
		}
		if err := d.Handle(e); err != nil {
			t.Fatal(err)
		}
	}
	ack.wait(ctx, t)
	if err := d.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	d.Release()

	if got := counterValue(t, reg, "logferry_loki_batches_sent_total"); got != 1 {
		t.Errorf("batches sent %v, want 1 (one batch, acknowledged once)", got)
	}
	if got := counterValue(t, reg, "logferry_loki_entries_sent_total"); got != float64(len(want)) {
		t.Errorf("entries sent %v, want %d", got, len(want))
	}
	for reason, wantN := range map[string]float64{"line_too_long": 1, "invalid_labels": 2} {
		if got := counterWith(t, reg, "logferry_loki_entries_dropped_total", "reason", reason); got != wantN {
			t.Errorf("dropped{reason=%q} %v, want %v", reason, got, wantN)
		}
	}
	if !ack.allDelivered() {
		t.Error("the producer was told some entries were not delivered")
	}

	sel := fmt.Sprintf(`{part="dispatcher", run=%q}`, run)
	streams, err := srv.WaitForCount(ctx, sel, from, to, len(want))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, s := range streams {
		for _, e := range s.Entries {
			lines = append(lines, e.Line)
		}
	}
	if fmt.Sprint(lines) != fmt.Sprint(want) {
		t.Errorf("Loki holds %d lines, want the %d valid ones in order", len(lines), len(want))
	}
	// A log query hides exact duplicates; count_over_time does not.
	if c := countOverTime(ctx, t, srv.URL(), sel); c != len(want) {
		t.Errorf("count_over_time %d, want %d: lines were stored more than once", c, len(want))
	}
}

// factPush is a push of two valid lines around one over max_line_size.
func factPush(labels map[string]string, base int64) []lokitest.Stream {
	return []lokitest.Stream{{Labels: labels, Entries: []lokitest.Entry{
		{Timestamp: base + 1, Line: "valid before"},
		{Timestamp: base + 2, Line: strings.Repeat("x", lokiMaxLineSize+1)},
		{Timestamp: base + 3, Line: "valid after"},
	}}}
}

// lastAcked records acknowledgements of one producer.
type lastAcked struct {
	want         int64 // done is closed once it is acknowledged
	mu           sync.Mutex
	last         int64
	notDelivered bool
	done         chan struct{}
	closed       bool
}

func (a *lastAcked) Ack(off int64, delivered bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.last = off
	a.notDelivered = a.notDelivered || !delivered
	if !a.closed && off >= a.want {
		a.closed = true
		close(a.done)
	}
}

func (a *lastAcked) wait(ctx context.Context, t *testing.T) {
	t.Helper()
	select {
	case <-a.done:
	case <-ctx.Done():
		a.mu.Lock()
		defer a.mu.Unlock()
		t.Fatalf("acknowledged up to %d, want %d", a.last, a.want)
	}
}

func (a *lastAcked) allDelivered() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return !a.notDelivered
}

// counterWith returns the sum of name's series whose label has value.
func counterWith(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

// countOverTime asks Loki how many entries sel has in the last hour,
// duplicates included.
func countOverTime(ctx context.Context, t *testing.T, base, sel string) int {
	t.Helper()
	q := url.Values{"query": {fmt.Sprintf("sum(count_over_time(%s[1h]))", sel)}, "time": {strconv.FormatInt(time.Now().UnixNano(), 10)}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/loki/api/v1/query?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Data struct {
			Result []struct {
				Value []json.RawMessage `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("count_over_time: HTTP %d: %v", resp.StatusCode, err)
	}
	if len(out.Data.Result) != 1 || len(out.Data.Result[0].Value) != 2 {
		t.Fatalf("count_over_time: unexpected result %+v", out)
	}
	var s string
	if err := json.Unmarshal(out.Data.Result[0].Value[1], &s); err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
