// Package prometheus_test keeps logferry-alerts.yaml honest: every metric
// its expressions use is one the binaries register, with the labels they
// give it (internal/metricnames); every alert has its annotations, a
// runbook section and promtool test cases.
package prometheus_test

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"

	"github.com/logferry/logferry/internal/metricnames"
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
	families, err := metricnames.Registered()
	if err != nil {
		t.Fatal(err)
	}
	recorded := recordedNames(rules)
	for _, r := range rules {
		if err := families.Check(r.Expr, recorded); err != nil {
			t.Errorf("%s: %v", r.Alert+r.Record, err)
		}
	}
}

// TestRulesCheckCatchesDrift: the check TestRulesUseRegisteredMetrics
// relies on reports a rule that names an unknown metric or label, or a
// recording rule the file does not have (internal/metricnames tests the
// rest of what it catches).
func TestRulesCheckCatchesDrift(t *testing.T) {
	families, err := metricnames.Registered()
	if err != nil {
		t.Fatal(err)
	}
	recorded := recordedNames(readRules(t))
	tests := []struct {
		name, expr string
		want       error
	}{
		{"spool bound", `logferry_spool_bytes / on (job, instance, dir) logferry_spool_max_bytes > 0.8`, nil},
		{"queue bound", `logferry_loki_queue_bytes / on (job, instance, endpoint, tenant) logferry_loki_queue_limit_bytes > 0.9`, nil},
		{"misspelled", `increase(logferry_loki_entries_droped_total[5m]) > 0`, metricnames.ErrUnknownMetric},
		{"old name", `logferry_spool_size_bytes > 0`, metricnames.ErrUnknownMetric},
		{"unknown label", `logferry_spool_max_bytes{endpoint="x"}`, metricnames.ErrUnknownLabel},
		{"matching on a label one side lacks", `logferry_spool_bytes / on (job, instance, endpoint) logferry_spool_max_bytes`, metricnames.ErrUnknownLabel},
		{"grouping by a label it lacks", `sum by (job, dir) (logferry_loki_queue_bytes)`, metricnames.ErrUnknownLabel},
		{"the dropped assumed constant", `logferry_spool_bytes > 0.8 * scalar(logferry:spool_max_bytes:assumed)`, metricnames.ErrNotRecorded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := families.Check(tt.expr, recorded)
			switch {
			case tt.want == nil && err != nil:
				t.Fatalf("want no error, got %v", err)
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Fatalf("want %v, got %v", tt.want, err)
			}
		})
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
