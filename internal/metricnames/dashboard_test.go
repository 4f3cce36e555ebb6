package metricnames

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

const testDashboard = `{
  "panels": [
    {"type": "row", "title": "Ingest", "gridPos": {"x": 0, "y": 0, "w": 24, "h": 1}},
    {"type": "timeseries", "title": "Lines/s", "gridPos": {"x": 0, "y": 1, "w": 12, "h": 8},
     "fieldConfig": {"defaults": {"unit": "short"}},
     "targets": [
       {"refId": "A", "expr": "sum by (job) (rate(logferry_loki_entries_sent_total{job=~\"$job\"}[$__rate_interval]))", "legendFormat": "{{job}}"},
       {"refId": "B", "expr": "go_goroutines / ignoring (x) go_goroutines", "legendFormat": ""}
     ]},
    {"type": "row", "title": "Collapsed", "collapsed": true, "gridPos": {"x": 0, "y": 9, "w": 24, "h": 1}, "panels": [
      {"type": "heatmap", "title": "Latency", "gridPos": {"x": 0, "y": 10, "w": 12, "h": 8},
       "targets": [{"refId": "A", "expr": "sum by (le) (increase(logferry_loki_push_duration_seconds_bucket[1m]))", "format": "heatmap"}]}
    ]}
  ],
  "templating": {"list": [
    {"name": "datasource", "type": "datasource", "query": "prometheus"},
    {"name": "job", "type": "query", "query": "label_values(logferry_build_info, job)"}
  ]}
}`

func TestReadDashboard(t *testing.T) {
	d, err := ReadDashboard([]byte(testDashboard))
	if err != nil {
		t.Fatal(err)
	}
	var titles []string
	for _, p := range d.Panels {
		titles = append(titles, p.Type+":"+p.Title)
	}
	if want := []string{"row:Ingest", "timeseries:Lines/s", "row:Collapsed", "heatmap:Latency"}; !slices.Equal(titles, want) {
		t.Fatalf("panels %v, want %v", titles, want)
	}
	if p := d.Panels[1]; p.Unit != "short" || p.GridPos != (GridPos{X: 0, Y: 1, W: 12, H: 8}) || len(p.Targets) != 2 {
		t.Fatalf("Lines/s: %+v", p)
	}
	if !d.Panels[3].Targets[0].Heatmap {
		t.Fatal("the heatmap's target is not marked heatmap")
	}
	var where []string
	for _, q := range d.Queries() {
		where = append(where, q.Where)
	}
	want := []string{`panel "Lines/s", query A`, `panel "Lines/s", query B`, `panel "Latency", query A`, "variable job"}
	if !slices.Equal(where, want) {
		t.Fatalf("queries %v, want %v", where, want)
	}
	if v := d.Variables[0]; v != (Variable{Name: "job", Selector: "logferry_build_info", Label: "job"}) {
		t.Fatalf("variable %+v", v)
	}
}

func TestReadDashboardErrors(t *testing.T) {
	tests := []struct {
		name, json string
		want       error
	}{
		{"panel without targets", `{"panels": [{"type": "timeseries", "title": "x"}]}`, ErrNoQuery},
		{"empty expression", `{"panels": [{"type": "timeseries", "title": "x", "targets": [{"refId": "A", "expr": " "}]}]}`, ErrNoQuery},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ReadDashboard([]byte(tt.json)); !errors.Is(err, tt.want) {
				t.Fatalf("want %v, got %v", tt.want, err)
			}
		})
	}
	_, err := ReadDashboard([]byte(`{"templating": {"list": [{"name": "v", "type": "query", "query": "up"}]}}`))
	if err == nil {
		t.Fatal("a query variable that is not label_values: no error")
	}
}

func TestInterpolate(t *testing.T) {
	vars := func(name string) string { return fmt.Sprintf("<%s>", name) }
	tests := []struct{ in, want string }{
		{`rate(x{job=~"$job"}[$__rate_interval])`, `rate(x{job=~"<job>"}[<__rate_interval>])`},
		{`x{instance=~"${instance}"}`, `x{instance=~"<instance>"}`},
		{`x{instance=~"${instance:regex}"}`, `x{instance=~"<instance>"}`},
		{`no variables`, `no variables`},
	}
	for _, tt := range tests {
		if got := Interpolate(tt.in, vars); got != tt.want {
			t.Errorf("Interpolate(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSeriesNames(t *testing.T) {
	got, err := SeriesNames(`topk(10, rate(a_total[5m]) or rate(b_total[5m])) / on (job) a_total + {__name__="c"}`)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a_total", "b_total"}; !slices.Equal(got, want) {
		t.Fatalf("names %v, want %v", got, want)
	}
	if _, err := SeriesNames(`rate(`); !errors.Is(err, ErrParse) {
		t.Fatalf("want ErrParse, got %v", err)
	}
}
