package lokitest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Loki's HTTP API paths.
const (
	PushPath       = "/loki/api/v1/push"
	QueryRangePath = "/loki/api/v1/query_range"
	ReadyPath      = "/ready"
)

// MaxEntriesPerQuery is max_entries_limit_per_query in
// scripts/loki-config.yaml: Loki rejects a larger limit.
const MaxEntriesPerQuery = 100000

// DefaultPageSize is how many entries QueryAll asks for per request.
const DefaultPageSize = 5000

// pollInterval is how often WaitForCount queries, at most.
const pollInterval = 100 * time.Millisecond

// Query directions.
const (
	Forward  = "forward"
	Backward = "backward"
)

// Entry is one log entry as Loki returns it.
type Entry struct {
	Timestamp          int64             // nanoseconds since the Unix epoch, exactly as stored
	Line               string            //
	StructuredMetadata map[string]string // nil if the entry has none
}

// Stream is the entries of one label set.
type Stream struct {
	Labels  map[string]string
	Entries []Entry
}

// Count returns the number of entries in streams.
func Count(streams []Stream) int {
	n := 0
	for _, s := range streams {
		n += len(s.Entries)
	}
	return n
}

// LabelString returns labels in LogQL form with sorted names, e.g.
// {a="1", b="2"}: the key Loki identifies a stream by.
func LabelString(labels map[string]string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, name := range slices.Sorted(maps.Keys(labels)) {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(name)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(labels[name]))
	}
	b.WriteByte('}')
	return b.String()
}

// HTTPError is a response from Loki with a status other than the one
// expected.
type HTTPError struct {
	Method     string
	Path       string
	StatusCode int
	Body       string // the start of the response body
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("loki %s %s: HTTP %d: %s", e.Method, e.Path, e.StatusCode, e.Body)
}

// Client queries and pushes to one Loki over its HTTP API. Server embeds one;
// NewClient makes one for any URL, e.g. an httptest server.
type Client struct {
	baseURL string
	hc      *http.Client
	// PageSize is how many entries QueryAll asks for per request; 0 means
	// DefaultPageSize.
	PageSize int
	// maxPageSize replaces MaxEntriesPerQuery in tests, when positive.
	maxPageSize int
}

// NewClient returns a client for the Loki at baseURL (scheme, host, port).
func NewClient(baseURL string) *Client {
	return &Client{
		baseURL: strings.TrimSuffix(baseURL, "/"),
		hc:      &http.Client{Timeout: 2 * time.Minute},
	}
}

// URL returns Loki's base URL, e.g. http://127.0.0.1:34567.
func (c *Client) URL() string { return c.baseURL }

// PushURL returns the URL of Loki's push endpoint.
func (c *Client) PushURL() string { return c.baseURL + PushPath }

type queryResponse struct {
	Status string `json:"status"`
	Data   struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Stream map[string]string   `json:"stream"`
			Values [][]json.RawMessage `json:"values"`
		} `json:"result"`
	} `json:"data"`
}

// entryExtras is the third element of a value with categorize-labels.
type entryExtras struct {
	StructuredMetadata map[string]string `json:"structuredMetadata"`
	Parsed             map[string]string `json:"parsed"`
}

// QueryRange runs a log query over [start, end) and returns at most limit
// entries, the first ones in direction (Forward or Backward). It asks Loki
// to categorize labels, so a stream's labels are only its indexed labels and
// each entry carries its own structured metadata. Streams are sorted by
// LabelString; entries are in the order Loki returned them.
func (c *Client) QueryRange(ctx context.Context, query string, start, end time.Time, limit int, direction string) ([]Stream, error) {
	if direction != Forward && direction != Backward {
		return nil, fmt.Errorf("lokitest: direction %q: want %q or %q", direction, Forward, Backward)
	}
	params := url.Values{
		"query":     {query},
		"start":     {strconv.FormatInt(start.UnixNano(), 10)},
		"end":       {strconv.FormatInt(end.UnixNano(), 10)},
		"limit":     {strconv.Itoa(limit)},
		"direction": {direction},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.baseURL+QueryRangePath+"?"+params.Encode(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("X-Loki-Response-Encoding-Flags", "categorize-labels")
	body, err := c.do(req, http.StatusOK)
	if err != nil {
		return nil, err
	}
	return decodeStreams(body)
}

func decodeStreams(body []byte) ([]Stream, error) {
	var resp queryResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("lokitest: decoding query response: %w", err)
	}
	if resp.Status != "success" {
		return nil, fmt.Errorf("lokitest: query status %q", resp.Status)
	}
	if resp.Data.ResultType != "streams" {
		return nil, fmt.Errorf("lokitest: query result type %q, want streams (a log query, not a metric query)", resp.Data.ResultType)
	}
	streams := make([]Stream, 0, len(resp.Data.Result))
	for _, r := range resp.Data.Result {
		st, err := decodeStream(r.Stream, r.Values)
		if err != nil {
			return nil, fmt.Errorf("lokitest: %w", err)
		}
		streams = append(streams, st)
	}
	slices.SortFunc(streams, func(a, b Stream) int {
		return strings.Compare(LabelString(a.Labels), LabelString(b.Labels))
	})
	return streams, nil
}

// decodeStream decodes one stream of a query answer or a tail message.
func decodeStream(labels map[string]string, values [][]json.RawMessage) (Stream, error) {
	s := Stream{Labels: labels, Entries: make([]Entry, 0, len(values))}
	if s.Labels == nil {
		s.Labels = map[string]string{}
	}
	for _, v := range values {
		e, err := decodeEntry(v)
		if err != nil {
			return Stream{}, fmt.Errorf("stream %s: %w", LabelString(s.Labels), err)
		}
		s.Entries = append(s.Entries, e)
	}
	return s, nil
}

// decodeEntry decodes ["<ns>", "<line>"] or, with categorize-labels,
// ["<ns>", "<line>", {"structuredMetadata": {...}, "parsed": {...}}].
func decodeEntry(v []json.RawMessage) (Entry, error) {
	var e Entry
	if len(v) != 2 && len(v) != 3 {
		return e, fmt.Errorf("entry has %d elements, want 2 or 3", len(v))
	}
	var ts string
	if err := json.Unmarshal(v[0], &ts); err != nil {
		return e, fmt.Errorf("entry timestamp: %w", err)
	}
	ns, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return e, fmt.Errorf("entry timestamp: %w", err)
	}
	e.Timestamp = ns
	if err := json.Unmarshal(v[1], &e.Line); err != nil {
		return e, fmt.Errorf("entry line: %w", err)
	}
	if len(v) == 3 {
		var extras entryExtras
		if err := json.Unmarshal(v[2], &extras); err != nil {
			return e, fmt.Errorf("entry labels: %w", err)
		}
		if len(extras.StructuredMetadata) > 0 {
			e.StructuredMetadata = extras.StructuredMetadata
		}
	}
	return e, nil
}

// ErrTooManyAtOneTimestamp is returned by QueryAll when more entries share
// one timestamp than a query may return, so paging cannot get past it.
var ErrTooManyAtOneTimestamp = errors.New("lokitest: more entries at one timestamp than one query may return")

// QueryAll returns every entry of a log query over [start, end), oldest
// first, however many there are, by paging forward in time.
//
// Loki returns the first PageSize entries by time. When a page is full, the
// entries at its last timestamp may continue in the next page, so QueryAll
// keeps the entries before that timestamp and asks again from it (start is
// inclusive): no entry is missed or counted twice, even when many entries
// share a timestamp. For a full page of one timestamp it asks for that
// nanosecond alone with Loki's largest limit, and fails with
// ErrTooManyAtOneTimestamp if even that is full.
func (c *Client) QueryAll(ctx context.Context, query string, start, end time.Time) ([]Stream, error) {
	pageSize := c.PageSize
	if pageSize <= 0 {
		pageSize = DefaultPageSize
	}
	maxPageSize := MaxEntriesPerQuery
	if c.maxPageSize > 0 {
		maxPageSize = c.maxPageSize
	}
	pageSize = min(pageSize, maxPageSize)

	merged := map[string]*Stream{}
	add := func(s Stream, before int64) {
		key := LabelString(s.Labels)
		m, ok := merged[key]
		for _, e := range s.Entries {
			if e.Timestamp >= before {
				continue
			}
			if !ok {
				m = &Stream{Labels: s.Labels}
				merged[key] = m
				ok = true
			}
			m.Entries = append(m.Entries, e)
		}
	}

	from := start
	for {
		page, err := c.QueryRange(ctx, query, from, end, pageSize, Forward)
		if err != nil {
			return nil, err
		}
		n := Count(page)
		if n < pageSize {
			for _, s := range page {
				add(s, end.UnixNano())
			}
			break
		}
		first, last := timeRange(page)
		if first == last {
			// The page cannot say how many entries share this timestamp:
			// ask for that nanosecond alone, as many as Loki allows.
			at, err := c.QueryRange(ctx, query, time.Unix(0, last), time.Unix(0, last+1), maxPageSize, Forward)
			if err != nil {
				return nil, err
			}
			if n := Count(at); n >= maxPageSize {
				return nil, fmt.Errorf("%w: %d or more at %d (%s)", ErrTooManyAtOneTimestamp, n, last, time.Unix(0, last).UTC().Format(time.RFC3339Nano))
			}
			for _, s := range at {
				add(s, last+1)
			}
			from = time.Unix(0, last+1)
			continue
		}
		for _, s := range page {
			add(s, last)
		}
		from = time.Unix(0, last)
	}

	out := make([]Stream, 0, len(merged))
	for _, s := range merged {
		// Pages are in time order; within a page Loki orders each stream's
		// entries forward, but equal timestamps may come in any order, so a
		// stable sort by time is all that is needed.
		slices.SortStableFunc(s.Entries, func(a, b Entry) int { return cmpInt64(a.Timestamp, b.Timestamp) })
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b Stream) int {
		return strings.Compare(LabelString(a.Labels), LabelString(b.Labels))
	})
	return out, nil
}

func timeRange(streams []Stream) (first, last int64) {
	started := false
	for _, s := range streams {
		for _, e := range s.Entries {
			if !started {
				first, last, started = e.Timestamp, e.Timestamp, true
				continue
			}
			first = min(first, e.Timestamp)
			last = max(last, e.Timestamp)
		}
	}
	return first, last
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// WaitForCount runs QueryAll until at least n entries match, and returns
// them. It polls every 100 ms, or, when one QueryAll takes longer than that
// (many entries), waits as long as the query took, so Loki is not kept busy.
// When ctx is done first it returns what the last query found and an error
// saying how many of n arrived; give ctx a deadline.
func (c *Client) WaitForCount(ctx context.Context, query string, start, end time.Time, n int) ([]Stream, error) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	var (
		streams []Stream
		lastErr error
	)
	for {
		began := time.Now()
		got, err := c.QueryAll(ctx, query, start, end)
		switch {
		case err == nil:
			streams, lastErr = got, nil
			if Count(streams) >= n {
				return streams, nil
			}
		case ctx.Err() == nil:
			lastErr = err
		}
		timer.Reset(max(pollInterval, time.Since(began)))
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return streams, fmt.Errorf("lokitest: waiting for %d entries of %s: have %d: %w (last query failed: %v)", n, query, Count(streams), ctx.Err(), lastErr)
			}
			return streams, fmt.Errorf("lokitest: waiting for %d entries of %s: have %d: %w", n, query, Count(streams), ctx.Err())
		case <-timer.C:
		}
	}
}

type pushStream struct {
	Stream map[string]string `json:"stream"`
	Values [][]any           `json:"values"`
}

// Push sends streams with Loki's JSON push format, structured metadata
// included, and expects 204 No Content. It is for tests of this package and
// for seeding Loki; logferry itself pushes protobuf.
func (c *Client) Push(ctx context.Context, streams []Stream) error {
	var req struct {
		Streams []pushStream `json:"streams"`
	}
	for _, s := range streams {
		ps := pushStream{Stream: s.Labels, Values: make([][]any, 0, len(s.Entries))}
		for _, e := range s.Entries {
			v := []any{strconv.FormatInt(e.Timestamp, 10), e.Line}
			if len(e.StructuredMetadata) > 0 {
				v = append(v, e.StructuredMetadata)
			}
			ps.Values = append(ps.Values, v)
		}
		req.Streams = append(req.Streams, ps)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.PushURL(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	hreq.Header.Set("Content-Type", "application/json")
	_, err = c.do(hreq, http.StatusNoContent)
	return err
}

// do sends req and returns the body if the status is want.
func (c *Client) do(req *http.Request, want int) ([]byte, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("lokitest: %s %s: %w", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("lokitest: %s %s: reading response: %w", req.Method, req.URL.Path, err)
	}
	if resp.StatusCode != want {
		const maxBody = 1 << 10
		msg := strings.TrimSpace(string(body))
		if len(msg) > maxBody {
			msg = msg[:maxBody] + "..."
		}
		return nil, &HTTPError{Method: req.Method, Path: req.URL.Path, StatusCode: resp.StatusCode, Body: msg}
	}
	return body, nil
}
