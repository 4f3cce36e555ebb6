package grafana_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/logferry/logferry/deploy/grafana"
	"github.com/logferry/logferry/internal/metricnames"
)

const dashboardFile = "logferry.json"

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestDashboardIsGenerated: logferry.json is what Dashboard builds, byte
// for byte, and building is deterministic.
func TestDashboardIsGenerated(t *testing.T) {
	want, err := grafana.Dashboard()
	if err != nil {
		t.Fatal(err)
	}
	again, err := grafana.Dashboard()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, again) {
		t.Fatal("two builds of the dashboard differ")
	}
	got, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		i := 0
		for i < len(gl) && i < len(wl) && gl[i] == wl[i] {
			i++
		}
		line := func(ls []string) string {
			if i < len(ls) {
				return ls[i]
			}
			return "(end of file)"
		}
		t.Fatalf("%s is not what Dashboard builds: run go generate ./deploy/grafana\nline %d: file has %q, Dashboard builds %q",
			dashboardFile, i+1, line(gl), line(wl))
	}
}

var legendRE = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)

// queries returns every PromQL expression of the dashboard
// (metricnames.ReadDashboard), and what is wrong with the dashboard's
// panels and variables.
func queries(data []byte) ([]metricnames.Query, error) {
	d, err := metricnames.ReadDashboard(data)
	return d.Queries(), err
}

// promQL puts values in place of Grafana's variables: a duration for the
// interval ones, a plain string for the rest (they stand in label values
// only).
func promQL(expr string) string {
	return metricnames.Interpolate(expr, func(name string) string {
		switch name {
		case "__rate_interval", "__interval", "__range":
			return "5m"
		}
		return "x"
	})
}

// check checks every query of the dashboard against the registered
// families: its names and matched labels, and the labels its legend
// template uses.
func check(data []byte, families metricnames.Families) error {
	qs, err := queries(data)
	errs := []error{err}
	for _, q := range qs {
		expr := promQL(q.Expr)
		if err := families.Check(expr, nil); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", q.Where, err))
			continue
		}
		has, known, err := families.Labels(expr)
		if err != nil || !known {
			continue
		}
		for _, m := range legendRE.FindAllStringSubmatch(q.Legend, -1) {
			if !slices.Contains(has, m[1]) {
				errs = append(errs, fmt.Errorf("%s: legend {{%s}}: %w (the result has %v)", q.Where, m[1], metricnames.ErrUnknownLabel, has))
			}
		}
	}
	return errors.Join(errs...)
}

func registered(t *testing.T) metricnames.Families {
	t.Helper()
	fs, err := metricnames.Registered()
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

// TestDashboardUsesRegisteredMetrics: every query of logferry.json names
// only series and labels the binaries register, and the dashboard shows
// what the operator needs (each of want appears in some query).
func TestDashboardUsesRegisteredMetrics(t *testing.T) {
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := check(data, registered(t)); err != nil {
		t.Error(err)
	}
	qs, err := queries(data)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"logferry_build_info",
		"logferry_loki_entries_received_total", "logferry_loki_bytes_received_total",
		"logferry_loki_batches_sent_total", "logferry_loki_retries_total",
		"logferry_loki_entries_dropped_total", "logferry_loki_push_failures_total",
		"logferry_loki_push_duration_seconds_bucket",
		"logferry_spool_bytes", "logferry_spool_max_bytes", "logferry_spool_unacked_bytes",
		"logferry_loki_queue_bytes", "logferry_loki_queue_limit_bytes",
		"logferry_plugin_streams_active", "logferry_sidecar_containers",
		"logferry_plugin_bytes_read_total", "logferry_sidecar_bytes_read_total",
		"go_goroutines", "process_open_fds", "process_resident_memory_bytes", "process_cpu_seconds_total",
	}
	for _, name := range want {
		re := regexp.MustCompile(`\b` + name + `\b`)
		if !slices.ContainsFunc(qs, func(q metricnames.Query) bool { return re.MatchString(q.Expr) }) {
			t.Errorf("no query uses %s", name)
		}
	}
}

// TestCheckCatchesDrift: check reports a panel whose query names a series,
// a matched label or a legend label that does not exist, a variable that
// asks for a label its series lacks, and a panel without a query.
func TestCheckCatchesDrift(t *testing.T) {
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	families := registered(t)
	tests := []struct {
		name, old, new string
		want           error
	}{
		{"renamed metric", `logferry_loki_batches_sent_total`, `logferry_loki_batches_total`, metricnames.ErrUnknownMetric},
		{"misspelled go metric", `go_goroutines`, `go_goroutine`, metricnames.ErrUnknownMetric},
		{"matched label", `logferry_spool_unacked_bytes{`, `logferry_spool_unacked_bytes{endpoint=\"x\", `, metricnames.ErrUnknownLabel},
		{"grouping label", `sum by (job, instance, dir) (logferry_spool_bytes{`, `sum by (job, instance, endpoint) (logferry_spool_bytes{`, metricnames.ErrUnknownLabel},
		{"legend label", `"{{container_name}} ({{job}} {{instance}})"`, `"{{container}} ({{job}} {{instance}})"`, metricnames.ErrUnknownLabel},
		{"variable label", `job=~\"$job\"}, instance)`, `job=~\"$job\"}, container_name)`, metricnames.ErrUnknownLabel},
		{"empty query", `"expr": "go_goroutines{`, `"expr": "", "x": "{`, metricnames.ErrNoQuery},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !bytes.Contains(data, []byte(tt.old)) {
				t.Fatalf("%s does not contain %s", dashboardFile, tt.old)
			}
			changed := bytes.Replace(data, []byte(tt.old), []byte(tt.new), 1)
			if err := check(changed, families); !errors.Is(err, tt.want) {
				t.Fatalf("want %v, got %v", tt.want, err)
			}
		})
	}
	if err := check(data, families); err != nil {
		t.Fatalf("the unchanged dashboard: %v", err)
	}
}
