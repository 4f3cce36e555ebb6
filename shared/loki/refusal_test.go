package loki

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The tests of this file are what Loki's refusal of a push (a 400) means
// for a batch: part of the push client's trust boundaries (issue 14).

// lokiAnswer answers code with body, as Loki's http.Error does.
func lokiAnswer(code int, body string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) { http.Error(w, body, code) }
}

// TestPartialRefusalIsNotResent: Loki v3.7 answers 400 after it stored the
// valid entries of a push and names the ones it refused. The batch is not
// sent again (that would duplicate what Loki kept); the refused entries
// are counted by reason, the rest as sent.
func TestPartialRefusalIsNotResent(t *testing.T) {
	tooLong := `max entry size '262144' bytes exceeded for stream '{a="b"}' while adding an entry with length '262145' bytes`
	tooOld := `entry for stream '{a="b"}' has timestamp too old: 2020-01-01T00:00:00Z, oldest acceptable timestamp is: 2026-01-01T00:00:00Z`
	tests := []struct {
		name        string
		body        string
		wantSent    float64
		wantDropped map[string]float64
	}{
		{
			name:        "one line too long",
			body:        tooLong,
			wantSent:    4,
			wantDropped: map[string]float64{"line_too_long": 1},
		},
		{
			name:        "grouped distributor errors",
			body:        "2 errors like: " + tooOld + "; 1 errors like: " + tooLong,
			wantSent:    2,
			wantDropped: map[string]float64{"too_old": 2, "line_too_long": 1},
		},
		{
			name: "ingester: too far behind",
			body: "entry with timestamp 2026-01-01 00:00:00 +0000 UTC ignored, reason: 'entry too far behind, entry timestamp is: 2026-01-01T00:00:00Z, oldest acceptable timestamp is: 2026-01-01T01:00:00Z',\n" +
				"entry with timestamp 2026-01-01 00:00:01 +0000 UTC ignored, reason: 'entry too far behind, entry timestamp is: 2026-01-01T00:00:01Z, oldest acceptable timestamp is: 2026-01-01T01:00:00Z',\n" +
				`user 'fake', total ignored: 2 out of 5 for stream: {a="b"}`,
			wantSent:    3,
			wantDropped: map[string]float64{"too_far_behind": 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loki := newFakeLoki(t, lokiAnswer(400, tt.body))
			d, err := New(testConfig(loki.url()), NewMetrics(prometheus.NewRegistry()), nil)
			if err != nil {
				t.Fatal(err)
			}
			rec := newRecorder()
			handleN(t, d, rec, 5)
			rec.waitAck(t, 4)
			if err := d.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			d.Release()
			if got := loki.requests(); got != 1 {
				t.Fatalf("%d pushes, want 1: what Loki kept must not be sent again", got)
			}
			if !rec.lastDelivered() {
				t.Fatal("a batch Loki kept was not acknowledged as delivered")
			}
			if n := testutil.ToFloat64(d.m.entriesSent); n != tt.wantSent {
				t.Fatalf("entries sent %v, want %v", n, tt.wantSent)
			}
			for reason, want := range tt.wantDropped {
				if n := testutil.ToFloat64(d.m.dropped.WithLabelValues(reason)); n != want {
					t.Errorf("dropped{reason=%q} %v, want %v", reason, n, want)
				}
			}
		})
	}
}

// parsingLoki is a fake Loki that, like Loki's push parser, refuses a whole
// push with 400 "couldn't parse labels" when one stream's labels do not
// parse (here: not of the form {...="..."}) and stores nothing of it.
type parsingLoki struct {
	*peer
	mu     sync.Mutex
	stored map[string][]string
}

func newParsingLoki(t *testing.T) *parsingLoki {
	p := &parsingLoki{stored: map[string][]string{}}
	p.peer = newPeer(t, func(_ int, w http.ResponseWriter, _ *http.Request, body []byte) {
		raw, err := snappy.Decode(nil, body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		var req PushRequest
		if err := req.Unmarshal(raw); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		for _, s := range req.Streams {
			if !strings.HasPrefix(s.Labels, "{") || !strings.HasSuffix(s.Labels, `"}`) {
				http.Error(w, "couldn't parse labels: 1:5: parse error: unexpected end of input", 400)
				return
			}
		}
		p.mu.Lock()
		for _, s := range req.Streams {
			for _, e := range s.Entries {
				p.stored[s.Labels] = append(p.stored[s.Labels], e.Line)
			}
		}
		p.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	return p
}

// TestUnparsableStreamIsSplitOff: when Loki refuses a whole push because
// one stream's labels do not parse, the other streams are delivered exactly
// once and only the bad stream's entries are dropped, as invalid_labels.
func TestUnparsableStreamIsSplitOff(t *testing.T) {
	loki := newParsingLoki(t)
	d, err := New(testConfig(loki.srv.URL+"/loki/api/v1/push"), NewMetrics(prometheus.NewRegistry()), nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	streams := []string{`{a="b"}`, `{bad`, `{c="d"}`, `{a="b"}`, `{bad`, `{a="b"}`}
	for i, s := range streams {
		if err := d.Handle(Entry{Stream: s, TimeNano: int64(i + 1), Line: fmt.Sprint("line ", i), Acker: rec, Offset: int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	rec.waitAck(t, int64(len(streams)-1))
	if err := d.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	d.Release()
	loki.mu.Lock()
	got := fmt.Sprint(loki.stored)
	loki.mu.Unlock()
	if want := `map[{a="b"}:[line 0 line 3 line 5] {c="d"}:[line 2]]`; got != want {
		t.Fatalf("Loki stored %s, want %s", got, want)
	}
	if n := testutil.ToFloat64(d.m.dropped.WithLabelValues("invalid_labels")); n != 2 {
		t.Fatalf("dropped{invalid_labels} %v, want 2", n)
	}
	if n := testutil.ToFloat64(d.m.entriesSent); n != 4 {
		t.Fatalf("entries sent %v, want 4", n)
	}
}

// TestUnknownRefusalDropsTheBatch: a 400 that is not Loki's validation
// answer says nothing about what was kept: the batch is dropped and counted,
// not sent again.
func TestUnknownRefusalDropsTheBatch(t *testing.T) {
	loki := newFakeLoki(t, lokiAnswer(400, "<html>bad request</html>"))
	d, err := New(testConfig(loki.url()), NewMetrics(prometheus.NewRegistry()), nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	handleN(t, d, rec, 3)
	rec.waitAck(t, 2)
	if err := d.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	d.Release()
	if got := loki.requests(); got != 1 {
		t.Fatalf("%d pushes, want 1", got)
	}
	if n := testutil.ToFloat64(d.m.dropped.WithLabelValues("bad_request")); n != 3 {
		t.Fatalf("dropped{bad_request} %v, want 3", n)
	}
	if n := testutil.ToFloat64(d.m.entriesSent); n != 0 {
		t.Fatalf("entries sent %v, want 0", n)
	}
}

// TestParseRefusal reads 400 answers in the forms Loki v3.7.8 writes them.
func TestParseRefusal(t *testing.T) {
	const stream = `{container_name="web", source="stdout"}`
	tooLong := "max entry size '262144' bytes exceeded for stream '" + stream + "' while adding an entry with length '300000' bytes"
	tooOld := "entry for stream '" + stream + "' has timestamp too old: 2020-01-01T00:00:00Z, oldest acceptable timestamp is: 2026-01-01T00:00:00Z"
	tooNew := "entry for stream '" + stream + "' has timestamp too new: 2030-01-01T00:00:00Z"
	tests := []struct {
		name string
		body string
		kind refusalKind
		want []refusal
	}{
		{"one error, as http.Error writes it", tooLong + "\n", refusalPartial, []refusal{{reason: "line_too_long", count: 1}}},
		{"one error twice", "2 errors like: " + tooNew, refusalPartial, []refusal{{reason: "too_far_in_future", count: 2}}},
		{
			"grouped", "3 errors like: " + tooOld + "; 1 errors like: " + tooLong + "; 12 errors like: " + tooNew,
			refusalPartial,
			[]refusal{{reason: "too_old", count: 3}, {reason: "line_too_long", count: 1}, {reason: "too_far_in_future", count: 12}},
		},
		{
			"a label value holding the separator", "1 errors like: entry for stream '{a=\"x; 2 errors like\"}' has timestamp too new: 2030-01-01T00:00:00Z; 1 errors like: " + tooLong,
			refusalPartial,
			[]refusal{{reason: "too_far_in_future", count: 1}, {reason: "line_too_long", count: 1}},
		},
		{
			"structured metadata", "stream '" + stream + "' has structured metadata too large: '70000' bytes, limit: '65536' bytes. Please see `limits_config.max_structured_metadata_size` or contact your Loki administrator to increase it",
			refusalPartial, []refusal{{reason: "structured_metadata", count: 1}},
		},
		{
			"a stream's label value too long", "stream '" + stream + "' has label value too long: 'web'",
			refusalPartial, []refusal{{reason: "invalid_labels", count: 1, stream: stream}},
		},
		{
			"too many label names", "entry for stream '" + stream + "' has 16 label names; limit 15",
			refusalPartial, []refusal{{reason: "invalid_labels", count: 1, stream: stream}},
		},
		{
			"missing enforced labels", "missing required labels 'team' for user 'fake' for stream '" + stream + "' (policy: '')",
			refusalPartial, []refusal{{reason: "missing_enforced_labels", count: 1, stream: stream}},
		},
		{
			"ingester: out of order, more than it lists",
			"entry with timestamp 2026-01-01 00:00:00 +0000 UTC ignored, reason: 'entry out of order',\n" +
				"user 'fake', total ignored: 40 out of 50 for stream: " + stream,
			refusalPartial, []refusal{{reason: "out_of_order", count: 40}},
		},
		{"labels that do not parse", "couldn't parse labels: 1:5: parse error: unexpected end of input\n", refusalLabels, nil},
		{"not Loki's", "<html><body>400 Bad Request</body></html>", refusalUnknown, nil},
		{"empty", "", refusalUnknown, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kind, got := parseRefusal(tt.body)
			if kind != tt.kind || fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("got %v %v, want %v %v", kind, got, tt.kind, tt.want)
			}
		})
	}
}

// TestRefusedCounts: what Loki named is counted against the batch: a stream
// error as the stream's entries, never more than the batch holds.
func TestRefusedCounts(t *testing.T) {
	b := newBatch()
	for i := 0; i < 4; i++ {
		b.add(Entry{Stream: `{a="1"}`, Line: "x"})
	}
	for i := 0; i < 3; i++ {
		b.add(Entry{Stream: `{a="2"}`, Line: "x"})
	}
	b.add(Entry{Stream: `{bad`, Line: "x"})
	b.excluded[`{bad`] = true
	got := refusedCounts(b, []refusal{
		{reason: "invalid_labels", count: 1, stream: `{a="2"}`},          // the stream's 3 entries
		{reason: "missing_enforced_labels", count: 1, stream: `{a="2"}`}, // counted already
		{reason: "line_too_long", count: 2},
		{reason: "too_old", count: 100}, // capped: 2 left
	})
	want := `[{invalid_labels 4 } {line_too_long 2 } {too_old 2 }]`
	if fmt.Sprint(got) != want {
		t.Fatalf("got %v, want %s", got, want)
	}
}
