package promtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/prometheus/common/model"
)

// What the client reports.
var (
	ErrAPI       = errors.New("prometheus API error")
	ErrNotMatrix = errors.New("not a matrix")
)

// Client asks a Prometheus' HTTP API (/api/v1). The Go client of
// client_golang would need a module this repository does not carry; these
// few calls do not.
type Client struct {
	URL  string // http://host:port
	http *http.Client
}

// NewClient returns a client of the Prometheus at base. It keeps no idle
// connection, so none outlives a test.
func NewClient(base string) *Client {
	return &Client{URL: base, http: &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true}}}
}

// response is the envelope of every /api/v1 answer.
type response struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Warnings  []string        `json:"warnings"`
}

// get asks path with params and decodes the answer's data into data.
// Prometheus' warnings are errors: a query that draws one is not right.
func (c *Client) get(ctx context.Context, path string, params url.Values, data any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+path+"?"+params.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var r response
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("%s: HTTP %d: %w", path, resp.StatusCode, err)
	}
	if r.Status != "success" {
		return fmt.Errorf("%s: %w: %s: %s", path, ErrAPI, r.ErrorType, r.Error)
	}
	if len(r.Warnings) > 0 {
		return fmt.Errorf("%s: %w: warnings %v", path, ErrAPI, r.Warnings)
	}
	return json.Unmarshal(r.Data, data)
}

func unix(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixNano())/1e9, 'f', 3, 64)
}

// QueryRange evaluates expr over [start, end] every step.
func (c *Client) QueryRange(ctx context.Context, expr string, start, end time.Time, step time.Duration) (model.Matrix, error) {
	var data struct {
		ResultType string       `json:"resultType"`
		Result     model.Matrix `json:"result"`
	}
	err := c.get(ctx, "/api/v1/query_range", url.Values{"query": {expr}, "start": {unix(start)}, "end": {unix(end)},
		"step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)}}, &data)
	if err != nil {
		return nil, err
	}
	if data.ResultType != "matrix" {
		return nil, fmt.Errorf("%w: %s", ErrNotMatrix, data.ResultType)
	}
	return data.Result, nil
}

// Query evaluates expr at ts; the result must be an instant vector.
func (c *Client) Query(ctx context.Context, expr string, ts time.Time) (model.Vector, error) {
	var data struct {
		ResultType string       `json:"resultType"`
		Result     model.Vector `json:"result"`
	}
	if err := c.get(ctx, "/api/v1/query", url.Values{"query": {expr}, "time": {unix(ts)}}, &data); err != nil {
		return nil, err
	}
	if data.ResultType != "vector" {
		return nil, fmt.Errorf("%w: %s, want a vector", ErrAPI, data.ResultType)
	}
	return data.Result, nil
}

// Series returns the label sets of the series matching match in [start,
// end].
func (c *Client) Series(ctx context.Context, match string, start, end time.Time) ([]model.LabelSet, error) {
	var data []model.LabelSet
	err := c.get(ctx, "/api/v1/series", url.Values{"match[]": {match}, "start": {unix(start)}, "end": {unix(end)}}, &data)
	return data, err
}

// Rule is one rule as /api/v1/rules shows it.
type Rule struct {
	Name           string    `json:"name"`
	Query          string    `json:"query"`
	Type           string    `json:"type"` // alerting or recording
	Health         string    `json:"health"`
	LastError      string    `json:"lastError"`
	State          string    `json:"state"` // alerting: inactive, pending or firing
	LastEvaluation time.Time `json:"lastEvaluation"`
	Alerts         []Alert   `json:"alerts"`
}

// Alert is one active (pending or firing) alert of a rule.
type Alert struct {
	Labels   model.LabelSet `json:"labels"`
	State    string         `json:"state"`
	ActiveAt time.Time      `json:"activeAt"`
	Value    string         `json:"value"`
}

// Rules returns every rule of every group.
func (c *Client) Rules(ctx context.Context) ([]Rule, error) {
	var data struct {
		Groups []struct {
			Rules []Rule `json:"rules"`
		} `json:"groups"`
	}
	if err := c.get(ctx, "/api/v1/rules", url.Values{}, &data); err != nil {
		return nil, err
	}
	var rules []Rule
	for _, g := range data.Groups {
		rules = append(rules, g.Rules...)
	}
	return rules, nil
}
