package lokitest

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// fakeLoki answers query_range like Loki does for a log query: the first
// limit entries in time order of [start, end), grouped by stream, with
// categorize-labels values. The order among entries of one timestamp changes
// from request to request, as it may in Loki.
type fakeLoki struct {
	t *testing.T

	mu       sync.Mutex
	entries  []fakeEntry
	requests int
	limits   []int
}

type fakeEntry struct {
	labels map[string]string
	Entry
}

func (f *fakeLoki) add(labels map[string]string, entries ...Entry) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range entries {
		f.entries = append(f.entries, fakeEntry{labels: labels, Entry: e})
	}
}

func (f *fakeLoki) requestCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests
}

func (f *fakeLoki) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != QueryRangePath {
		http.NotFound(w, r)
		return
	}
	if got := r.Header.Get("X-Loki-Response-Encoding-Flags"); got != "categorize-labels" {
		f.t.Errorf("X-Loki-Response-Encoding-Flags = %q, want categorize-labels", got)
	}
	q := r.URL.Query()
	start, err1 := strconv.ParseInt(q.Get("start"), 10, 64)
	end, err2 := strconv.ParseInt(q.Get("end"), 10, 64)
	limit, err3 := strconv.Atoi(q.Get("limit"))
	if err := errors.Join(err1, err2, err3); err != nil || q.Get("direction") != Forward {
		http.Error(w, fmt.Sprintf("bad request: %v, direction %q", err, q.Get("direction")), http.StatusBadRequest)
		return
	}
	if limit > MaxEntriesPerQuery {
		http.Error(w, "max entries limit per query exceeded", http.StatusBadRequest)
		return
	}

	f.mu.Lock()
	f.requests++
	f.limits = append(f.limits, limit)
	seed := uint64(f.requests)
	var match []fakeEntry
	for _, e := range f.entries {
		if e.Timestamp >= start && e.Timestamp < end {
			match = append(match, e)
		}
	}
	f.mu.Unlock()

	// Time order; ties in an order that differs per request.
	rand.New(rand.NewPCG(seed, seed)).Shuffle(len(match), func(i, j int) { match[i], match[j] = match[j], match[i] })
	slices.SortStableFunc(match, func(a, b fakeEntry) int { return cmp.Compare(a.Timestamp, b.Timestamp) })
	match = match[:min(limit, len(match))]

	type result struct {
		Stream map[string]string `json:"stream"`
		Values [][]any           `json:"values"`
	}
	byStream := map[string]*result{}
	var results []*result
	for _, e := range match {
		key := LabelString(e.labels)
		res, ok := byStream[key]
		if !ok {
			res = &result{Stream: e.labels}
			byStream[key] = res
			results = append(results, res)
		}
		extras := map[string]any{}
		if e.StructuredMetadata != nil {
			extras["structuredMetadata"] = e.StructuredMetadata
		}
		res.Values = append(res.Values, []any{strconv.FormatInt(e.Timestamp, 10), e.Line, extras})
	}
	resp := map[string]any{
		"status": "success",
		"data": map[string]any{
			"resultType":    "streams",
			"encodingFlags": []string{"categorize-labels"},
			"result":        results,
			"stats":         map[string]any{},
		},
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

func newFake(t *testing.T) (*fakeLoki, *Client) {
	f := &fakeLoki{t: t}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, NewClient(srv.URL)
}

// flatten returns every entry with its stream's labels, sorted, for
// comparing results regardless of order among equal timestamps.
func flatten(streams []Stream) []string {
	var out []string
	for _, s := range streams {
		for _, e := range s.Entries {
			out = append(out, fmt.Sprintf("%s %d %q %v", LabelString(s.Labels), e.Timestamp, e.Line, e.StructuredMetadata))
		}
	}
	slices.Sort(out)
	return out
}

func flattenFake(f *fakeLoki, start, end int64) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, e := range f.entries {
		if e.Timestamp >= start && e.Timestamp < end {
			out = append(out, fmt.Sprintf("%s %d %q %v", LabelString(e.labels), e.Timestamp, e.Line, e.StructuredMetadata))
		}
	}
	slices.Sort(out)
	return out
}

var (
	streamA = map[string]string{"job": "a"}
	streamB = map[string]string{"job": "b", "host": "h1"}
	streamC = map[string]string{"job": "c"}
)

func TestQueryAllPaging(t *testing.T) {
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()
	tests := []struct {
		name     string
		pageSize int
		fill     func(f *fakeLoki)
		wantReqs int // 0: don't check
	}{
		{
			name:     "distinct timestamps over several pages",
			pageSize: 5,
			fill: func(f *fakeLoki) {
				for i := range 23 {
					labels := []map[string]string{streamA, streamB, streamC}[i%3]
					f.add(labels, Entry{Timestamp: base + int64(i)*7, Line: fmt.Sprintf("line %d", i)})
				}
			},
			// Pages end on a timestamp that is asked again: 5 new entries
			// per page but the last, 4 + 4 + 4 + 4 + 4 + 3.
			wantReqs: 6,
		},
		{
			name:     "equal timestamps across a page boundary",
			pageSize: 4,
			fill: func(f *fakeLoki) {
				f.add(streamA, Entry{Timestamp: base, Line: "a0"}, Entry{Timestamp: base + 1, Line: "a1"})
				for i := range 5 {
					f.add(streamB, Entry{Timestamp: base + 2, Line: fmt.Sprintf("b%d", i)})
				}
				f.add(streamC, Entry{Timestamp: base + 2, Line: "c"}, Entry{Timestamp: base + 3, Line: "c3"})
			},
		},
		{
			name:     "a full page of one timestamp",
			pageSize: 2,
			fill: func(f *fakeLoki) {
				for i := range 9 {
					f.add(streamA, Entry{Timestamp: base, Line: fmt.Sprintf("same %d", i), StructuredMetadata: map[string]string{"i": strconv.Itoa(i)}})
				}
				f.add(streamA, Entry{Timestamp: base + 1, Line: "after"})
			},
		},
		{
			name:     "identical lines in different streams",
			pageSize: 1,
			fill: func(f *fakeLoki) {
				for _, l := range []map[string]string{streamA, streamB, streamC} {
					f.add(l, Entry{Timestamp: base, Line: "same"})
				}
			},
		},
		{
			name:     "empty",
			pageSize: 3,
			fill:     func(*fakeLoki) {},
			wantReqs: 1,
		},
		{
			name:     "exactly one page",
			pageSize: 3,
			fill: func(f *fakeLoki) {
				f.add(streamA, Entry{Timestamp: base, Line: "1"}, Entry{Timestamp: base + 1, Line: "2"}, Entry{Timestamp: base + 2, Line: "3"})
			},
			wantReqs: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, c := newFake(t)
			c.PageSize = tt.pageSize
			tt.fill(f)
			start, end := time.Unix(0, base), time.Unix(0, base+1000)
			got, err := c.QueryAll(context.Background(), `{job=~".+"}`, start, end)
			if err != nil {
				t.Fatal(err)
			}
			want := flattenFake(f, start.UnixNano(), end.UnixNano())
			if g := flatten(got); !slices.Equal(g, want) {
				t.Fatalf("QueryAll returned\n%q\nwant\n%q", g, want)
			}
			checkSortedStreams(t, got)
			if reqs := f.requestCount(); tt.wantReqs > 0 && reqs != tt.wantReqs {
				t.Errorf("%d requests, want %d", reqs, tt.wantReqs)
			}
		})
	}
}

func checkSortedStreams(t *testing.T, streams []Stream) {
	t.Helper()
	for i, s := range streams {
		if i > 0 && LabelString(streams[i-1].Labels) >= LabelString(s.Labels) {
			t.Errorf("streams not sorted by labels, or a stream twice: %s before %s", LabelString(streams[i-1].Labels), LabelString(s.Labels))
		}
		if len(s.Entries) == 0 {
			t.Errorf("stream %s has no entries", LabelString(s.Labels))
		}
		if !slices.IsSortedFunc(s.Entries, func(a, b Entry) int { return cmp.Compare(a.Timestamp, b.Timestamp) }) {
			t.Errorf("stream %s: entries not in time order", LabelString(s.Labels))
		}
	}
}

func TestQueryAllRandomized(t *testing.T) {
	for seed := range uint64(50) {
		rng := rand.New(rand.NewPCG(seed, 1))
		f, c := newFake(t)
		c.PageSize = 1 + rng.IntN(8)
		n := rng.IntN(120)
		for i := range n {
			labels := []map[string]string{streamA, streamB, streamC}[rng.IntN(3)]
			// Few distinct timestamps, so many collide.
			f.add(labels, Entry{Timestamp: int64(rng.IntN(30)), Line: fmt.Sprintf("l%d", i)})
		}
		start, end := time.Unix(0, int64(rng.IntN(5))), time.Unix(0, 25+int64(rng.IntN(10)))
		got, err := c.QueryAll(context.Background(), "{}", start, end)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if g, want := flatten(got), flattenFake(f, start.UnixNano(), end.UnixNano()); !slices.Equal(g, want) {
			t.Fatalf("seed %d, page size %d: got %d entries, want %d\n%q\n%q", seed, c.PageSize, len(g), len(want), g, want)
		}
		checkSortedStreams(t, got)
	}
}

func TestQueryAllTooManyAtOneTimestamp(t *testing.T) {
	f, c := newFake(t)
	c.PageSize = 3
	c.maxPageSize = 10
	for i := range 10 {
		f.add(streamA, Entry{Timestamp: 1000, Line: strconv.Itoa(i)})
	}
	f.add(streamA, Entry{Timestamp: 1001, Line: "after"})
	_, err := c.QueryAll(context.Background(), "{}", time.Unix(0, 0), time.Unix(0, 2000))
	if !errors.Is(err, ErrTooManyAtOneTimestamp) {
		t.Fatalf("QueryAll error = %v, want ErrTooManyAtOneTimestamp", err)
	}
	f.mu.Lock()
	limits := f.limits
	f.mu.Unlock()
	if !slices.Equal(limits, []int{3, 10}) {
		t.Errorf("limits asked = %v, want the page size, then the maximum", limits)
	}

	// One fewer fits in the largest page.
	f, c = newFake(t)
	c.PageSize = 3
	c.maxPageSize = 10
	for i := range 9 {
		f.add(streamA, Entry{Timestamp: 1000, Line: strconv.Itoa(i)})
	}
	f.add(streamA, Entry{Timestamp: 1001, Line: "after"})
	got, err := c.QueryAll(context.Background(), "{}", time.Unix(0, 0), time.Unix(0, 2000))
	if err != nil || Count(got) != 10 {
		t.Fatalf("QueryAll = %d entries, %v; want 10", Count(got), err)
	}
}

// lokiCategorizedResponse is the response of Loki's own marshalling test
// (pkg/util/marshal/marshal_test.go, v3.7.8) for categorize-labels.
const lokiCategorizedResponse = `{
	"status": "success",
	"warnings": ["this is a warning"],
	"data": {
		"resultType": "streams",
		"encodingFlags": ["categorize-labels"],
		"result": [
			{
				"stream": {"test": "test"},
				"values":[
					[ "123456789012345", "super line", {}],
					[ "123456789012346", "super line with labels", {
						"structuredMetadata": {"foo": "a", "bar": "b"}
					}],
					[ "123456789012347", "super line with labels msg=text", {
						"structuredMetadata": {"foo": "a", "bar": "b"},
						"parsed": {"msg": "text"}
					}]
				]
			},
			{
				"stream": {"a": "\u003chtml\u003e"},
				"values": [["1", "no flags \u0026 html \u003cescaped\u003e"]]
			}
		],
		"stats": {}
	}
}`

func TestDecodeStreams(t *testing.T) {
	got, err := decodeStreams([]byte(lokiCategorizedResponse))
	if err != nil {
		t.Fatal(err)
	}
	want := []Stream{
		{Labels: map[string]string{"a": "<html>"}, Entries: []Entry{{Timestamp: 1, Line: "no flags & html <escaped>"}}},
		{Labels: map[string]string{"test": "test"}, Entries: []Entry{
			{Timestamp: 123456789012345, Line: "super line"},
			{Timestamp: 123456789012346, Line: "super line with labels", StructuredMetadata: map[string]string{"foo": "a", "bar": "b"}},
			{Timestamp: 123456789012347, Line: "super line with labels msg=text", StructuredMetadata: map[string]string{"foo": "a", "bar": "b"}},
		}},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("decodeStreams =\n%v\nwant\n%v", got, want)
	}
}

func TestDecodeStreamsErrors(t *testing.T) {
	for name, body := range map[string]string{
		"not json":        `<html>`,
		"error status":    `{"status":"error","data":{"resultType":"streams","result":[]}}`,
		"metric query":    `{"status":"success","data":{"resultType":"matrix","result":[]}}`,
		"bad timestamp":   `{"status":"success","data":{"resultType":"streams","result":[{"stream":{},"values":[["12x","l"]]}]}}`,
		"numeric ts":      `{"status":"success","data":{"resultType":"streams","result":[{"stream":{},"values":[[12,"l"]]}]}}`,
		"one element":     `{"status":"success","data":{"resultType":"streams","result":[{"stream":{},"values":[["12"]]}]}}`,
		"bad metadata":    `{"status":"success","data":{"resultType":"streams","result":[{"stream":{},"values":[["12","l",{"structuredMetadata":[1]}]]}]}}`,
		"four elements":   `{"status":"success","data":{"resultType":"streams","result":[{"stream":{},"values":[["12","l",{},{}]]}]}}`,
		"non-string line": `{"status":"success","data":{"resultType":"streams","result":[{"stream":{},"values":[["12",5]]}]}}`,
	} {
		if _, err := decodeStreams([]byte(body)); err == nil {
			t.Errorf("%s: decodeStreams accepted %s", name, body)
		}
	}
}

func TestQueryRangeHTTPError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "parse error at line 1", http.StatusBadRequest)
	}))
	defer srv.Close()
	_, err := NewClient(srv.URL).QueryRange(context.Background(), "{", time.Unix(0, 0), time.Unix(1, 0), 10, Forward)
	var httpErr *HTTPError
	if !errors.As(err, &httpErr) || httpErr.StatusCode != http.StatusBadRequest || httpErr.Body != "parse error at line 1" {
		t.Fatalf("QueryRange error = %#v, want an HTTPError 400 with the body", err)
	}
	if _, err := NewClient(srv.URL).QueryRange(context.Background(), "{}", time.Unix(0, 0), time.Unix(1, 0), 10, "sideways"); err == nil {
		t.Error("QueryRange accepted direction sideways")
	}
}

func TestWaitForCount(t *testing.T) {
	f := &fakeLoki{t: t}
	// The entries appear on the third query.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		if f.requests == 2 {
			for i := range 3 {
				f.entries = append(f.entries, fakeEntry{labels: streamA, Entry: Entry{Timestamp: int64(10 + i), Line: "x"}})
			}
		}
		f.mu.Unlock()
		f.ServeHTTP(w, r)
	}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := NewClient(srv.URL).WaitForCount(ctx, "{}", time.Unix(0, 0), time.Unix(0, 100), 3)
	if err != nil {
		t.Fatal(err)
	}
	if n, reqs := Count(got), f.requestCount(); n != 3 || reqs != 3 {
		t.Errorf("WaitForCount returned %d entries after %d queries, want 3 after 3", n, reqs)
	}
}

func TestWaitForCountTimesOut(t *testing.T) {
	f, c := newFake(t)
	f.add(streamA, Entry{Timestamp: 10, Line: "only one"})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	got, err := c.WaitForCount(ctx, "{}", time.Unix(0, 0), time.Unix(0, 100), 2)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitForCount error = %v, want DeadlineExceeded", err)
	}
	if Count(got) != 1 {
		t.Errorf("WaitForCount returned %d entries, want the 1 it found", Count(got))
	}
}

func TestPushBody(t *testing.T) {
	var got map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != PushPath || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("push to %s with Content-Type %q", r.URL.Path, r.Header.Get("Content-Type"))
		}
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			t.Error(err)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	err := NewClient(srv.URL).Push(context.Background(), []Stream{{
		Labels: map[string]string{"job": "x"},
		Entries: []Entry{
			{Timestamp: 1700000000123456789, Line: "plain"},
			{Timestamp: 1700000000123456790, Line: "meta", StructuredMetadata: map[string]string{"k": "v"}},
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"streams":[{"stream":{"job":"x"},"values":[["1700000000123456789","plain"],["1700000000123456790","meta",{"k":"v"}]]}]}`
	if b, _ := json.Marshal(got); string(b) != want {
		t.Errorf("push body = %s, want %s", b, want)
	}
}

func TestLabelString(t *testing.T) {
	got := LabelString(map[string]string{"b": `say "hi"`, "a": "1"})
	if want := `{a="1", b="say \"hi\""}`; got != want {
		t.Errorf("LabelString = %s, want %s", got, want)
	}
	if got := LabelString(nil); got != "{}" {
		t.Errorf("LabelString(nil) = %s", got)
	}
}

func TestTailBuffer(t *testing.T) {
	b := newTailBuffer(3)
	fmt.Fprint(b, "one\ntwo\nthr")
	fmt.Fprint(b, "ee\nfour\nfive\nsix")
	if got, want := b.String(), "three\nfour\nfive\nsix"; got != want {
		t.Errorf("tail = %q, want %q", got, want)
	}
	b.Reset()
	if b.String() != "" {
		t.Errorf("tail after Reset = %q", b.String())
	}
}
