package lokitest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// These tests run the real Loki: see BinaryPath for how it is found or built.

func TestServerRoundTrip(t *testing.T) {
	srv := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Timestamps with every nanosecond digit set, two entries of one stream
	// at the same nanosecond, a line with non-ASCII text and JSON-escaped
	// characters, structured metadata on some entries.
	base := time.Now().Add(-time.Minute).Truncate(time.Second).UnixNano()
	pushed := []Stream{
		{
			Labels: map[string]string{"test": "roundtrip", "container_name": "web"},
			Entries: []Entry{
				{Timestamp: base + 123456789, Line: "first line", StructuredMetadata: map[string]string{"container_id": "0123456789ab", "stream": "stdout"}},
				{Timestamp: base + 123456790, Line: `unicode é日本😀 and "quotes" \ <html> & tabs	too`},
				{Timestamp: base + 223456789, Line: "same nanosecond A"},
				{Timestamp: base + 223456789, Line: "same nanosecond B", StructuredMetadata: map[string]string{"stream": "stderr"}},
			},
		},
		{
			Labels: map[string]string{"test": "roundtrip", "container_name": "db"},
			Entries: []Entry{
				{Timestamp: base + 1, Line: "db line", StructuredMetadata: map[string]string{"image_id": "sha256:abc"}},
			},
		},
	}
	if err := srv.Push(ctx, pushed); err != nil {
		t.Fatal(err)
	}

	start, end := time.Unix(0, base), time.Unix(0, base+int64(time.Second))
	got, err := srv.WaitForCount(ctx, `{test="roundtrip"}`, start, end, 5)
	if err != nil {
		t.Fatal(err)
	}
	want := sortedStreams(pushed)
	if !equalStreams(sortedStreams(got), want) {
		t.Fatalf("Loki returned\n%s\nwant\n%s", dump(got), dump(want))
	}

	// query_range's end is exclusive and its start inclusive.
	got, err = srv.QueryRange(ctx, `{test="roundtrip"}`, time.Unix(0, base+1), time.Unix(0, base+223456789), 100, Backward)
	if err != nil {
		t.Fatal(err)
	}
	if n := Count(got); n != 3 {
		t.Errorf("[base+1, base+223456789) holds %d entries, want 3:\n%s", n, dump(got))
	}
}

func TestServerQueryAllPagesRealLoki(t *testing.T) {
	srv := Start(t)
	srv.PageSize = 7
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	base := time.Now().Add(-time.Minute).Truncate(time.Second).UnixNano()
	var pushed []Stream
	for s := range 3 {
		st := Stream{Labels: map[string]string{"test": "paging", "n": fmt.Sprint(s)}}
		for i := range 40 {
			// 10 distinct timestamps: each shared by 4 entries of this
			// stream and by the other streams.
			st.Entries = append(st.Entries, Entry{Timestamp: base + int64(i/4), Line: fmt.Sprintf("s%d e%d", s, i)})
		}
		pushed = append(pushed, st)
	}
	if err := srv.Push(ctx, pushed); err != nil {
		t.Fatal(err)
	}
	got, err := srv.WaitForCount(ctx, `{test="paging"}`, time.Unix(0, base), time.Unix(0, base+100), 120)
	if err != nil {
		t.Fatal(err)
	}
	if !equalStreams(sortedStreams(got), sortedStreams(pushed)) {
		t.Fatalf("QueryAll returned\n%s\nwant\n%s", dump(got), dump(pushed))
	}
}

func TestServerWithArgsAndRestart(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "loki.log")
	srv := Start(t, WithArgs("-distributor.max-line-size=100"), WithLogFile(logFile))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	now := time.Now().UnixNano()
	labels := map[string]string{"test": "args"}
	err := srv.Push(ctx, []Stream{{Labels: labels, Entries: []Entry{{Timestamp: now, Line: strings.Repeat("x", 101)}}}})
	var httpErr *HTTPError
	if !errors.As(err, &httpErr) || httpErr.StatusCode != http.StatusBadRequest {
		t.Fatalf("pushing a line over -distributor.max-line-size: error %v, want HTTP 400", err)
	}
	if err := srv.Push(ctx, []Stream{{Labels: labels, Entries: []Entry{{Timestamp: now, Line: "short"}}}}); err != nil {
		t.Fatal(err)
	}

	// What Loki acknowledged survives a restart (its write-ahead log).
	url := srv.URL()
	srv.Restart()
	if srv.URL() != url {
		t.Errorf("URL changed across Restart: %s, then %s", url, srv.URL())
	}
	got, err := srv.WaitForCount(ctx, `{test="args"}`, time.Unix(0, now), time.Unix(0, now+1), 1)
	if err != nil {
		t.Fatal(err)
	}
	if Count(got) != 1 || got[0].Entries[0].Line != "short" {
		t.Errorf("after restart Loki has\n%s\nwant the one short line", dump(got))
	}

	srv.Stop()
	srv.Stop()
	if _, err := http.Get(srv.URL() + ReadyPath); err == nil {
		t.Error("Loki still answers after Stop")
	}
	// The log file holds both runs' logs.
	log, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(log), "Loki started"); n != 2 {
		t.Errorf("the log file has %d \"Loki started\" lines, want 2 (the start and the restart):\n%s", n, log)
	}
}

func sortedStreams(streams []Stream) []Stream {
	out := slices.Clone(streams)
	for i := range out {
		out[i].Entries = slices.Clone(out[i].Entries)
		slices.SortFunc(out[i].Entries, func(a, b Entry) int {
			if a.Timestamp != b.Timestamp {
				return cmpInt64(a.Timestamp, b.Timestamp)
			}
			return strings.Compare(a.Line, b.Line)
		})
	}
	slices.SortFunc(out, func(a, b Stream) int { return strings.Compare(LabelString(a.Labels), LabelString(b.Labels)) })
	return out
}

func equalStreams(a, b []Stream) bool {
	return slices.EqualFunc(a, b, func(x, y Stream) bool {
		return LabelString(x.Labels) == LabelString(y.Labels) && slices.EqualFunc(x.Entries, y.Entries, func(e, f Entry) bool {
			return e.Timestamp == f.Timestamp && e.Line == f.Line && LabelString(e.StructuredMetadata) == LabelString(f.StructuredMetadata)
		})
	})
}

func dump(streams []Stream) string {
	var b strings.Builder
	for _, s := range streams {
		fmt.Fprintf(&b, "%s\n", LabelString(s.Labels))
		for _, e := range s.Entries {
			fmt.Fprintf(&b, "  %d %q %s\n", e.Timestamp, e.Line, LabelString(e.StructuredMetadata))
		}
	}
	return b.String()
}
