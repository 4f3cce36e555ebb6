// Package prometheus_test keeps logferry-alerts.yaml honest: every metric
// its expressions use is one the binaries register, with the labels they
// give it; every alert has its annotations, a runbook section and promtool
// test cases; the assumed settings match the code's defaults.
package prometheus_test

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"

	"github.com/logferry/logferry/plugin"
	"github.com/logferry/logferry/shared/buildinfo"
	"github.com/logferry/logferry/shared/loki"
	"github.com/logferry/logferry/shared/pipeline"
	"github.com/logferry/logferry/shared/spool"
	"github.com/logferry/logferry/sidecar"
	"github.com/logferry/logferry/sidecar/tail"
)

const (
	rulesFile   = "logferry-alerts.yaml"
	testsFile   = "logferry-alerts.test.yaml"
	runbookFile = "../../docs/RUNBOOK.md"
	runbookURL  = "https://github.com/logferry/logferry/blob/main/docs/RUNBOOK.md#"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// ruleFile is the part of a Prometheus rule file the tests read; unknown
// keys are errors, as they are for Prometheus.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Record      string            `yaml:"record"`
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func readRules(t *testing.T) []rule {
	t.Helper()
	f, err := os.Open(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	var rf ruleFile
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	var rules []rule
	for _, g := range rf.Groups {
		if g.Name != "logferry" {
			t.Errorf("%s: group %q: want the group named logferry", rulesFile, g.Name)
		}
		rules = append(rules, g.Rules...)
	}
	if len(rules) == 0 {
		t.Fatalf("%s: no rules", rulesFile)
	}
	return rules
}

// kind is what a registered metric is, for the suffixes its series have.
type kind int

const (
	plain kind = iota
	histogram
	summary
)

// metric is one registered metric family.
type metric struct {
	kind   kind
	labels []string // variable labels
}

// recorder is a Registerer that writes down what is registered with it and
// passes it on to a real registry, which still refuses duplicates.
type recorder struct {
	reg     *prometheus.Registry
	metrics map[string]metric
}

var _ prometheus.Registerer = (*recorder)(nil)

var descRE = regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)

func (r *recorder) Register(c prometheus.Collector) error {
	if err := r.reg.Register(c); err != nil {
		return err
	}
	k := plain
	switch c.(type) {
	case prometheus.Histogram, *prometheus.HistogramVec:
		k = histogram
	case prometheus.Summary, *prometheus.SummaryVec:
		k = summary
	}
	ch := make(chan *prometheus.Desc)
	go func() {
		defer close(ch)
		c.Describe(ch)
	}()
	for d := range ch {
		m := descRE.FindStringSubmatch(d.String())
		if m == nil {
			return fmt.Errorf("cannot read the descriptor %s", d)
		}
		var labels []string
		for l := range strings.SplitSeq(m[2], ",") {
			if l = strings.TrimSuffix(strings.TrimPrefix(l, "c("), ")"); l != "" {
				labels = append(labels, l)
			}
		}
		r.metrics[m[1]] = metric{kind: k, labels: labels}
	}
	return nil
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *recorder) Unregister(c prometheus.Collector) bool { return r.reg.Unregister(c) }

// registered returns the metrics of both binaries, registered as
// cmd/logferry-plugin and cmd/logferry-sidecar register them (with the
// spool policy, which adds the spool series), each binary in a registry of
// its own.
func registered(t *testing.T) map[string]metric {
	t.Helper()
	all := map[string]metric{}
	common := func(reg prometheus.Registerer) {
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		buildinfo.Read().Register(reg)
		loki.NewMetrics(reg)
		spool.NewMetrics(reg)
		loki.NewSpoolMetrics(reg)
		pipeline.NewGuards(pipeline.GuardConfig{}, reg, nil)
	}
	binaries := map[string]func(prometheus.Registerer){
		"plugin": func(reg prometheus.Registerer) { plugin.NewMetrics(reg) },
		"sidecar": func(reg prometheus.Registerer) {
			sidecar.NewMetrics(reg)
			tail.NewMetrics(reg)
		},
	}
	for name, own := range binaries {
		r := &recorder{reg: prometheus.NewRegistry(), metrics: map[string]metric{}}
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("registering the %s's metrics: %v", name, p)
				}
			}()
			common(r)
			own(r)
		}()
		for n, m := range r.metrics {
			all[n] = m
		}
	}
	return all
}

var (
	stringRE   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	nameRE     = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	selectorRE = regexp.MustCompile(`\b(logferry_[a-zA-Z0-9_]+)\s*\{([^}]*)\}`)
	matcherRE  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
)

// targetLabels are added by Prometheus to every scraped series.
var targetLabels = []string{"job", "instance"}

// What checkExpr finds.
var (
	errUnknownMetric = errors.New("not a metric the binaries register")
	errUnknownLabel  = errors.New("not a label of that metric")
	errNotRecorded   = errors.New("not recorded by a rule in " + rulesFile)
)

// checkExpr checks that every logferry_* name in expr is a registered
// metric (a histogram's also with _bucket, _sum or _count) and that every
// label its selectors match on is one the metric has, and that every
// logferry:* name is one of recorded.
func checkExpr(expr string, metrics map[string]metric, recorded []string) error {
	var errs []error
	bare := stringRE.ReplaceAllString(expr, `""`) // label values are no names
	for _, name := range nameRE.FindAllString(bare, -1) {
		switch {
		case strings.HasPrefix(name, "logferry:"):
			if !slices.Contains(recorded, name) {
				errs = append(errs, fmt.Errorf("%s: %w", name, errNotRecorded))
			}
		case strings.HasPrefix(name, "logferry_"):
			if _, _, ok := lookup(name, metrics); !ok {
				errs = append(errs, fmt.Errorf("%s: %w", name, errUnknownMetric))
			}
		}
	}
	for _, sel := range selectorRE.FindAllStringSubmatch(bare, -1) {
		m, suffix, ok := lookup(sel[1], metrics)
		if !ok {
			continue // reported above
		}
		known := append(slices.Clone(targetLabels), m.labels...)
		if suffix == "_bucket" {
			known = append(known, "le")
		}
		if m.kind == summary && suffix == "" {
			known = append(known, "quantile")
		}
		for _, mt := range matcherRE.FindAllStringSubmatch(sel[2], -1) {
			if !slices.Contains(known, mt[1]) {
				errs = append(errs, fmt.Errorf("%s{%s}: %w (it has %v)", sel[1], mt[1], errUnknownLabel, known))
			}
		}
	}
	return errors.Join(errs...)
}

// lookup finds the metric a series name belongs to, and the suffix the
// series adds to the metric's name.
func lookup(name string, metrics map[string]metric) (metric, string, bool) {
	if m, ok := metrics[name]; ok {
		return m, "", true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		m, ok := metrics[base]
		if ok && (m.kind == histogram || m.kind == summary && suffix != "_bucket") {
			return m, suffix, true
		}
	}
	return metric{}, "", false
}

func recordedNames(rules []rule) []string {
	var names []string
	for _, r := range rules {
		if r.Record != "" {
			names = append(names, r.Record)
		}
	}
	return names
}

func TestRulesUseRegisteredMetrics(t *testing.T) {
	rules := readRules(t)
	metrics := registered(t)
	recorded := recordedNames(rules)
	for _, r := range rules {
		name := r.Alert + r.Record
		if err := checkExpr(r.Expr, metrics, recorded); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestCheckExprCatchesDrift shows that a misspelled metric, a suffix the
// metric does not have and a label it does not have are reported.
func TestCheckExprCatchesDrift(t *testing.T) {
	metrics := registered(t)
	recorded := []string{"logferry:spool_max_bytes:assumed"}
	tests := []struct {
		name, expr string
		want       error
	}{
		{"registered counter", `increase(logferry_loki_entries_dropped_total{reason="queue_full"}[5m]) > 0`, nil},
		{"histogram bucket", `histogram_quantile(0.99, sum by (le) (rate(logferry_loki_push_duration_seconds_bucket{status=~"2.."}[5m])))`, nil},
		{"histogram count", `rate(logferry_plugin_stop_logging_seconds_count[5m])`, nil},
		{"recorded", `logferry_spool_bytes > 0.8 * scalar(logferry:spool_max_bytes:assumed)`, nil},
		{"label value looks like a name", `up{job=~"logferry_nothing.*"} == 0`, nil},
		{"go collector", `go_goroutines > 0`, nil},
		{"misspelled", `increase(logferry_loki_entries_droped_total[5m]) > 0`, errUnknownMetric},
		{"old name", `logferry_spool_size_bytes > 0`, errUnknownMetric},
		{"bucket of a counter", `logferry_loki_entries_sent_total_bucket`, errUnknownMetric},
		{"unknown label", `logferry_spool_bytes{endpoint="x"}`, errUnknownLabel},
		{"container label on a host-wide counter", `logferry_plugin_frames_read_total{container_name="web"}`, errUnknownLabel},
		{"not recorded", `logferry:loki_queue_limit_bytes:assumed`, errNotRecorded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkExpr(tt.expr, metrics, recorded)
			switch {
			case tt.want == nil && err != nil:
				t.Fatalf("want no error, got %v", err)
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Fatalf("want %v, got %v", tt.want, err)
			}
		})
	}
}

// TestAssumedSettingsMatchDefaults: the rules stand in for settings the
// binaries do not export with recorded constants, which must be the code's
// defaults (an operator who changes the setting changes the rule).
func TestAssumedSettingsMatchDefaults(t *testing.T) {
	want := map[string]float64{
		"logferry:spool_max_bytes:assumed":         float64(spool.DefaultMaxBytes),
		"logferry:loki_batch_wait_seconds:assumed": loki.DefaultBatchWait.Seconds(),
	}
	vectorRE := regexp.MustCompile(`^\s*vector\(\s*([0-9.e+]+)\s*\)\s*$`)
	for _, r := range readRules(t) {
		w, ok := want[r.Record]
		if !ok {
			continue
		}
		delete(want, r.Record)
		m := vectorRE.FindStringSubmatch(r.Expr)
		if m == nil {
			t.Errorf("%s: want vector(<number>), got %q", r.Record, r.Expr)
			continue
		}
		if got, err := strconv.ParseFloat(m[1], 64); err != nil || got != w {
			t.Errorf("%s: got %s, the code's default is %v", r.Record, m[1], w)
		}
	}
	for name := range want {
		t.Errorf("%s: not recorded", name)
	}
}

// TestAlertsAnnotatedAndInRunbook: every alert has a severity, summary,
// description and a runbook_url whose anchor is a heading of the runbook.
func TestAlertsAnnotatedAndInRunbook(t *testing.T) {
	runbook, err := os.ReadFile(runbookFile)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for line := range strings.SplitSeq(string(runbook), "\n") {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			anchors[anchor(h)] = true
		}
	}
	for _, r := range readRules(t) {
		if r.Alert == "" {
			continue
		}
		if s := r.Labels["severity"]; s != "warning" && s != "critical" {
			t.Errorf("%s: severity %q, want warning or critical", r.Alert, s)
		}
		for _, a := range []string{"summary", "description", "runbook_url"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("%s: no %s annotation", r.Alert, a)
			}
		}
		url := r.Annotations["runbook_url"]
		a, ok := strings.CutPrefix(url, runbookURL)
		if !ok {
			t.Errorf("%s: runbook_url %q does not start with %s", r.Alert, url, runbookURL)
			continue
		}
		if a != anchor(r.Alert) {
			t.Errorf("%s: runbook_url anchor %q, want %q (the alert's name)", r.Alert, a, anchor(r.Alert))
		}
		if !anchors[a] {
			t.Errorf("%s: %s has no heading \"## %s\"", r.Alert, runbookFile, r.Alert)
		}
	}
}

// anchor is the id GitHub gives a Markdown heading.
func anchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		}
	}
	return b.String()
}

// TestEveryAlertHasPromtoolCases: the promtool tests look at every alert at
// a time it must fire and at a time it must not.
func TestEveryAlertHasPromtoolCases(t *testing.T) {
	data, err := os.ReadFile(testsFile)
	if err != nil {
		t.Fatal(err)
	}
	var tf struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(data, &tf); err != nil {
		t.Fatalf("%s: %v", testsFile, err)
	}
	if !slices.Contains(tf.RuleFiles, rulesFile) {
		t.Errorf("%s: rule_files %v does not name %s", testsFile, tf.RuleFiles, rulesFile)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tf.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	for _, r := range readRules(t) {
		if r.Alert == "" {
			continue
		}
		if !fires[r.Alert] {
			t.Errorf("%s: no promtool case where it fires", r.Alert)
		}
		if !quiet[r.Alert] {
			t.Errorf("%s: no promtool case where it does not fire", r.Alert)
		}
	}
}
