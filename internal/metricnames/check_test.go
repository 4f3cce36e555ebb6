package metricnames

import (
	"errors"
	"slices"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func registered(t *testing.T) Families {
	t.Helper()
	fs, err := Registered()
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

func TestRegistered(t *testing.T) {
	fs := registered(t)
	tests := []struct {
		name   string
		kind   Kind
		labels []string
	}{
		{"logferry_build_info", Plain, []string{"version", "revision", "goversion"}},
		{"logferry_loki_push_duration_seconds", Histogram, []string{"endpoint", "tenant", "status"}},
		{"logferry_spool_max_bytes", Plain, []string{"dir"}},
		{"logferry_plugin_bytes_read_total", Plain, []string{"container_name", "source"}},
		{"logferry_sidecar_bytes_read_total", Plain, []string{"container_name", "source"}},
		{"go_gc_duration_seconds", Summary, nil},
		{"process_open_fds", Plain, nil},
	}
	for _, tt := range tests {
		f, ok := fs[tt.name]
		if !ok {
			t.Errorf("%s: not registered", tt.name)
			continue
		}
		if f.Kind != tt.kind || !slices.Equal(f.Labels, tt.labels) {
			t.Errorf("%s: got %+v, want kind %d, labels %v", tt.name, f, tt.kind, tt.labels)
		}
	}
}

// TestCheck: what an alert rule or a panel may say, and the drift Check
// reports.
func TestCheck(t *testing.T) {
	fs := registered(t)
	recorded := []string{"logferry:spool_fill:ratio"}
	tests := []struct {
		name, expr string
		want       error
	}{
		{"registered counter", `increase(logferry_loki_entries_dropped_total{reason="queue_full"}[5m]) > 0`, nil},
		{"histogram bucket", `histogram_quantile(0.99, sum by (le) (rate(logferry_loki_push_duration_seconds_bucket{status=~"2.."}[5m])))`, nil},
		{"histogram count", `rate(logferry_plugin_stop_logging_seconds_count[5m])`, nil},
		{"summary quantile", `go_gc_duration_seconds{quantile="0.5"}`, nil},
		{"recorded", `logferry:spool_fill:ratio > 0.8`, nil},
		{"label value looks like a name", `up{job=~"logferry_nothing.*"} == 0`, nil},
		{"go and process collectors", `go_goroutines > 0 and process_open_fds > 0`, nil},
		{"ratio on the shared labels", `logferry_spool_bytes / on (job, instance, dir) logferry_spool_max_bytes > 0.8`, nil},
		{"quantile against a gauge", `histogram_quantile(0.99, sum by (job, instance, endpoint, tenant, le) (rate(logferry_loki_push_duration_seconds_bucket[5m]))) > on (job, instance, endpoint, tenant) (logferry_loki_batch_wait_seconds + 1)`, nil},
		{"topk by container", `topk(10, sum by (job, container_name) (rate(logferry_plugin_bytes_read_total[5m])))`, nil},
		{"label_replace adds a label", `sum by (binary) (label_replace(go_goroutines, "binary", "$1", "job", "logferry-(.*)"))`, nil},
		{"another exporter", `sum by (device) (node_network_receive_bytes_total)`, nil},

		{"not PromQL", `rate(logferry_spool_bytes[5m]`, ErrParse},
		{"misspelled", `increase(logferry_loki_entries_droped_total[5m]) > 0`, ErrUnknownMetric},
		{"old name", `logferry_spool_size_bytes > 0`, ErrUnknownMetric},
		{"bucket of a counter", `logferry_loki_entries_sent_total_bucket`, ErrUnknownMetric},
		{"bucket of a summary", `go_gc_duration_seconds_bucket`, ErrUnknownMetric},
		{"misspelled go metric", `go_goroutine`, ErrUnknownMetric},
		{"unknown label", `logferry_spool_bytes{endpoint="x"}`, ErrUnknownLabel},
		{"container label on a host-wide counter", `logferry_plugin_frames_read_total{container_name="web"}`, ErrUnknownLabel},
		{"le without _bucket", `logferry_loki_push_duration_seconds_count{le="1"}`, ErrUnknownLabel},
		{"by a label it does not have", `sum by (container_name) (rate(logferry_loki_entries_sent_total[5m]))`, ErrUnknownLabel},
		{"by a label the inner sum dropped", `sum by (tenant) (sum by (endpoint) (logferry_loki_queue_bytes))`, ErrUnknownLabel},
		{"on a label one side lacks", `logferry_spool_bytes / on (endpoint) logferry_loki_queue_bytes`, ErrUnknownLabel},
		{"group_left a label the one side lacks", `logferry_loki_queue_bytes * on (job, instance) group_left (goversion, dir) logferry_build_info`, ErrUnknownLabel},
		{"not recorded", `logferry:loki_queue_limit_bytes:assumed`, ErrNotRecorded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := fs.Check(tt.expr, recorded)
			switch {
			case tt.want == nil && err != nil:
				t.Fatalf("want no error, got %v", err)
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Fatalf("want %v, got %v", tt.want, err)
			}
		})
	}
}

func TestLabels(t *testing.T) {
	fs := registered(t)
	tests := []struct {
		expr  string
		want  []string
		known bool
	}{
		{`sum by (job, container_name) (rate(logferry_sidecar_bytes_read_total[5m]))`, []string{"container_name", "job"}, true},
		{`histogram_quantile(0.5, sum by (job, le) (rate(logferry_loki_push_duration_seconds_bucket[5m])))`, []string{"job"}, true},
		{`logferry_loki_queue_bytes`, []string{"endpoint", "instance", "job", "tenant"}, true},
		{`sum without (instance) (process_open_fds)`, []string{"job"}, true},
		{`up`, nil, false},
	}
	for _, tt := range tests {
		got, known, err := fs.Labels(tt.expr)
		if err != nil {
			t.Errorf("%s: %v", tt.expr, err)
		}
		if known != tt.known || !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %v (known %v), want %v (known %v)", tt.expr, got, known, tt.want, tt.known)
		}
	}
}
