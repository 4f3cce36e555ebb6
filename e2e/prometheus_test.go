package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/logferry/logferry/internal/dockertest"
	"github.com/logferry/logferry/internal/loggen"
	"github.com/logferry/logferry/internal/lokitest"
	"github.com/logferry/logferry/internal/metricnames"
	"github.com/logferry/logferry/internal/panelchart"
	"github.com/logferry/logferry/internal/promtest"
)

const (
	dashboardJSON = "../deploy/grafana/logferry.json"
	alertRules    = "../deploy/prometheus/logferry-alerts.yaml"

	// envDashboardPNG names a directory (a relative one is taken from the
	// repository's root): TestPrometheusDashboardAndAlerts draws the
	// dashboard's panels from its run there, dashboard.png (the grid) and
	// panels/NN-title.png. docs/dashboard holds a committed run.
	envDashboardPNG = "LF_DASHBOARD_PNG_DIR"

	promStep = 2 * time.Second
	// rateInterval stands for $__rate_interval. Grafana's would be 4 s
	// (four 1 s scrapes); 10 s smooths the picture.
	rateInterval = "10s"
)

// dropStage drops about one line in ten on purpose, so that the pipeline's
// drop counter (a query of its own) has data in a healthy run.
const dropStage = `- drop:
    expression: ' seq=[0-9]*7 '
    drop_counter_reason: seq7
`

// noDataWhenHealthy are the dashboard's queries (panel title/refId) that by
// design return no data while Loki takes every push, and why. In the
// healthy phase they must evaluate without error; the fault phase (a Loki
// endpoint that refuses, one that fails and then recovers) makes every
// metric they name appear, and then each must have a series.
var noDataWhenHealthy = map[string]string{
	"Retries/s by status/A":            "a push is retried only after Loki failed it",
	"Loki push failures/s by reason/A": "counts pushes Loki did not acknowledge",
	"Lines dropped/s by reason/A":      "counts entries lost for good (refused by Loki, or no spool to take them)",
	"Lines dropped/s by reason/B":      "counts unsent spool records deleted at spool-max-size",
	"Spooling/B":                       "entries are spooled only while Loki cannot take them",
}

// notInThisRun are metrics no phase of this test makes appear, and why;
// their queries must still evaluate, and the names are checked against the
// registered families (internal/metricnames) instead.
var notInThisRun = map[string]string{
	"logferry_spool_records_dropped_total": "needs a spool filled to spool-max-size (at least 16 MiB, two segments) under drop-oldest",
}

// firedOnPurpose are the alerts the fault phase triggers; no other alert may
// fire in the run.
var firedOnPurpose = []string{"LogferryLinesDropped", "LogferryLokiRefusingBatches", "LogferryDown"}

// TestPrometheusDashboardAndAlerts is issue 19's "they cannot drift": a real
// Prometheus scrapes the plugin and the sidecar while containers log
// through both, evaluating deploy/prometheus/logferry-alerts.yaml. Every
// query of every panel and variable of deploy/grafana/logferry.json returns
// data (or, for those listed in noDataWhenHealthy, evaluates, and every
// metric it names exists once the fault phase has made it appear); every
// rule evaluates without error and none fires in the healthy phase; the
// fault phase makes LogferryLinesDropped and LogferryLokiRefusingBatches
// fire and LogferryDown go pending.
func TestPrometheusDashboardAndAlerts(t *testing.T) {
	if testing.Short() {
		t.Skip("-short skips the end-to-end tests")
	}
	if os.Getenv(lokitest.EnvLokiBin) == "" {
		t.Skip("LOKI_BIN is not set (make test sets it)")
	}
	promtest.BinaryPath(t) // skips, saying what to install, before anything starts
	rulesPath, err := filepath.Abs(alertRules)
	if err != nil {
		t.Fatal(err)
	}
	dashData, err := os.ReadFile(dashboardJSON)
	if err != nil {
		t.Fatal(err)
	}
	dash, err := metricnames.ReadDashboard(dashData)
	if err != nil {
		t.Fatal(err)
	}

	d := dockertest.Start(t)
	e := installPlugin(t, d, lokitest.Start(t), "prom-logferry")
	sc := startSidecar(t, d, e.loki.PushURL(), t.TempDir(), "--overflow", "spool", "--loki-pipeline-stages", dropStage)
	prom := promtest.Start(t, promtest.Config{
		ScrapeInterval: time.Second,
		Jobs:           map[string][]string{"logferry-plugin": {e.metrics}, "logferry-sidecar": {sc.metrics}},
		RuleFiles:      []string{rulesPath},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()

	// Healthy: two containers through the plugin, two read by the sidecar,
	// about 30 s each.
	id := runID("")
	var running []string
	for _, c := range []struct {
		name, driver string
		lines, rate  int
		extra        []string
	}{
		{"prom-plugin-a-" + id, e.driver, 3600, 120, []string{"--log-opt", "loki-pipeline-stages=" + dropStage}},
		{"prom-plugin-b-" + id, e.driver, 2400, 80, nil},
		{"prom-sidecar-a-" + id, "json-file", 3600, 120, nil},
		{"prom-sidecar-b-" + id, "json-file", 2400, 80, nil},
	} {
		gen := loggen.Config{ID: runID("p"), Lines: uint64(c.lines), Size: 180, StderrShare: 0.2}
		args := append(append([]string{"--name", c.name, "--log-driver", c.driver}, c.extra...), e.image)
		running = append(running, d.Run(t, append(args, genArgs(gen, "-rate", strconv.Itoa(c.rate))...)...))
	}
	for _, c := range running {
		e.wait(t, c)
	}
	waitFor(t, time.Minute, "30 s of scrapes of both binaries", func() bool {
		v, err := prom.Query(ctx, `count_over_time(up{job=~"logferry-.*"}[5m]) >= 30`, time.Now())
		return err == nil && len(v) == 2
	})
	waitFor(t, time.Minute, "every rule evaluated", func() bool {
		rules, err := prom.Rules(ctx)
		if err != nil {
			return false
		}
		for _, r := range rules {
			if r.LastEvaluation.Before(start) {
				return false
			}
		}
		return len(rules) > 0
	})
	healthyEnd := time.Now()

	t.Run("every alert rule is loaded and evaluates, none fires", func(t *testing.T) {
		rules := checkRulesLoaded(t, ctx, prom, rulesPath)
		for _, r := range rules {
			for _, a := range r.Alerts {
				switch a.State {
				case "firing":
					t.Errorf("%s fires in the healthy run: %v (value %s)", r.Name, a.Labels, a.Value)
				default:
					t.Logf("%s is %s: %v (value %s)", r.Name, a.State, a.Labels, a.Value)
				}
			}
		}
	})

	t.Run("every dashboard query returns data", func(t *testing.T) {
		seen := map[string]bool{}
		for _, q := range dash.Queries() {
			key := q.Panel + "/" + refID(q.Where)
			seen[key] = true
			m, err := prom.QueryRange(ctx, interpolate(q.Expr), start, healthyEnd, promStep)
			switch _, exempt := noDataWhenHealthy[key]; {
			case err != nil:
				t.Errorf("%s: %s: %v", q.Where, interpolate(q.Expr), err)
			case exempt:
				t.Logf("%s: %d series in the healthy phase (%s)", q.Where, len(m), noDataWhenHealthy[key])
			case !hasSamples(m):
				t.Errorf("%s: no data: %s", q.Where, interpolate(q.Expr))
			case q.Panel == "":
				checkVariable(t, q, m)
			}
		}
		for key := range noDataWhenHealthy {
			if !seen[key] {
				t.Errorf("noDataWhenHealthy lists %s, which the dashboard does not have", key)
			}
		}
	})

	// Faults, each deliberate: a Loki endpoint that refuses every push (its
	// entries are dropped), one that fails until it recovers (its entries
	// are retried, spooled and replayed), and the sidecar stopped.
	bad := newFaultyLoki(t)
	refused := loggen.Config{ID: runID("r"), Lines: 600, Size: 120}
	refusedID := d.Run(t, append([]string{"--name", "prom-refused-" + id, "--log-driver", e.driver,
		"--log-opt", "loki-url=" + bad.URL + "/refuse" + lokitest.PushPath, e.image}, genArgs(refused, "-rate", "100")...)...)
	flaky := loggen.Config{ID: runID("f"), Lines: 3000, Size: 120}
	flakyID := d.Run(t, append([]string{"--name", "prom-flaky-" + id, "--log-driver", e.driver,
		"--log-opt", "loki-url=" + bad.URL + "/flaky" + lokitest.PushPath,
		"--log-opt", "loki-retries=1", "--log-opt", "loki-min-backoff=100ms", "--log-opt", "loki-max-backoff=200ms",
		"--log-opt", "loki-batch-wait=200ms", e.image}, genArgs(flaky, "-rate", "300")...)...)
	waitFor(t, time.Minute, "Prometheus to see the failing endpoint's entries spooled", func() bool {
		v, err := prom.Query(ctx, `sum(logferry_loki_entries_spooled_total{job="logferry-plugin"}) > 1000`, time.Now())
		return err == nil && len(v) == 1
	})
	bad.recover()
	e.wait(t, flakyID)
	e.wait(t, refusedID)
	sc.stop(syscall.SIGTERM)

	t.Run("the faults fire their alerts", func(t *testing.T) {
		want := map[string]string{"LogferryLinesDropped": "firing", "LogferryLokiRefusingBatches": "firing", "LogferryDown": "pending"}
		got := map[string]string{}
		waitFor(t, time.Minute, "the deliberate alerts", func() bool {
			rules, err := prom.Rules(ctx)
			if err != nil {
				return false
			}
			for _, r := range rules {
				for _, a := range r.Alerts {
					if r.Name == "LogferryDown" && a.Labels["job"] != "logferry-sidecar" {
						continue
					}
					if _, ok := want[r.Name]; ok {
						got[r.Name] = a.State
					}
				}
			}
			return fmt.Sprint(got) == fmt.Sprint(want)
		})
		// LogferryDown's for: is 5 m: its expression shows the series.
		v, err := prom.Query(ctx, `up{job=~"logferry.*"} == 0`, time.Now())
		if err != nil || len(v) != 1 || v[0].Metric["job"] != "logferry-sidecar" {
			t.Errorf("LogferryDown's expression: %v %v, want the sidecar's target", v, err)
		}
		for _, r := range checkRulesLoaded(t, ctx, prom, rulesPath) {
			for _, a := range r.Alerts {
				if a.State == "firing" && !slices.Contains(firedOnPurpose, r.Name) {
					t.Errorf("%s fires, not triggered on purpose: %v (value %s)", r.Name, a.Labels, a.Value)
				}
			}
		}
	})

	// A few more scrapes, so the end of the faults is in the picture.
	after := time.Now().Add(5 * time.Second)
	waitFor(t, time.Minute, "scrapes of the plugin 5 s on", func() bool {
		v, err := prom.Query(ctx, `timestamp(up{job="logferry-plugin"})`, time.Now())
		return err == nil && len(v) == 1 && float64(v[0].Value) > float64(after.UnixMilli())/1e3
	})
	end := time.Now()
	t.Run("every metric of the no-data queries exists after the faults", func(t *testing.T) {
		families, err := metricnames.Registered()
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range dash.Queries() {
			if _, exempt := noDataWhenHealthy[q.Panel+"/"+refID(q.Where)]; !exempt {
				continue
			}
			if _, err := prom.QueryRange(ctx, interpolate(q.Expr), start, end, promStep); err != nil {
				t.Errorf("%s: %v", q.Where, err)
			}
			names, err := metricnames.SeriesNames(interpolate(q.Expr))
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range names {
				if why, ok := notInThisRun[name]; ok {
					if err := families.Check(name, nil); err != nil {
						t.Errorf("%s: %v", q.Where, err)
					}
					t.Logf("%s: %s has no series in this run (%s); it is registered", q.Where, name, why)
					continue
				}
				series, err := prom.Series(ctx, fmt.Sprintf(`{__name__=%q}`, name), start, end)
				if err != nil || len(series) == 0 {
					t.Errorf("%s: %s has no series in Prometheus (%v)", q.Where, name, err)
				}
			}
		}
	})

	if dir := os.Getenv(envDashboardPNG); dir != "" {
		if !filepath.IsAbs(dir) {
			dir = filepath.Join("..", dir) // go test runs in e2e/
		}
		drawDashboard(t, ctx, prom, dash, dir, start, healthyEnd, end)
	}
}

// checkRulesLoaded checks that Prometheus has loaded every rule of the file,
// each evaluated without error, and returns them.
func checkRulesLoaded(t *testing.T, ctx context.Context, prom *promtest.Server, path string) []promtest.Rule {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Rules []struct {
				Alert  string `yaml:"alert"`
				Record string `yaml:"record"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	rules, err := prom.Rules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]promtest.Rule{}
	for _, r := range rules {
		byName[r.Name] = r
	}
	n := 0
	for _, g := range file.Groups {
		for _, fr := range g.Rules {
			n++
			name := fr.Alert + fr.Record
			r, ok := byName[name]
			switch {
			case !ok:
				t.Errorf("%s: not loaded by Prometheus", name)
			case r.Health != "ok":
				t.Errorf("%s: health %q: %s", name, r.Health, r.LastError)
			}
		}
	}
	if n == 0 || len(rules) != n {
		t.Errorf("%d rules in %s, Prometheus has %d", n, path, len(rules))
	}
	return rules
}

// checkVariable: a label_values variable's selector returns series that
// have the label, and the job variable offers both binaries.
func checkVariable(t *testing.T, q metricnames.Query, m model.Matrix) {
	t.Helper()
	label := model.LabelName(strings.Trim(q.Legend, "{}"))
	var values []string
	for _, s := range m {
		if v := string(s.Metric[label]); v != "" && !slices.Contains(values, v) {
			values = append(values, v)
		}
	}
	slices.Sort(values)
	if len(values) == 0 {
		t.Errorf("%s: no series has the label %s", q.Where, label)
	}
	if label == "job" && fmt.Sprint(values) != "[logferry-plugin logferry-sidecar]" {
		t.Errorf("%s: jobs %v, want both binaries", q.Where, values)
	}
}

// interpolate puts the values of an unfiltered dashboard in place of
// Grafana's variables: All (.*) for job and instance.
func interpolate(expr string) string {
	return metricnames.Interpolate(expr, func(name string) string {
		switch name {
		case "__rate_interval", "__interval":
			return rateInterval
		}
		return ".*"
	})
}

var refIDRE = regexp.MustCompile(`query (\w+)$`)

// refID is the refId in a Query's Where ("" for a variable).
func refID(where string) string {
	if m := refIDRE.FindStringSubmatch(where); m != nil {
		return m[1]
	}
	return ""
}

func hasSamples(m model.Matrix) bool {
	for _, s := range m {
		if len(s.Values) > 0 {
			return true
		}
	}
	return false
}

// faultyLoki answers pushes under /refuse with 400 (the batch is dropped)
// and under /flaky with 500 until recover, then with 204 (accepted).
type faultyLoki struct {
	*httptest.Server
	recovered atomic.Bool
}

func newFaultyLoki(t *testing.T) *faultyLoki {
	t.Helper()
	f := &faultyLoki{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/refuse/"):
			http.Error(w, "refused by the test", http.StatusBadRequest)
		case strings.HasPrefix(r.URL.Path, "/flaky/") && !f.recovered.Load():
			http.Error(w, "failing until the test lets it recover", http.StatusInternalServerError)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *faultyLoki) recover() { f.recovered.Store(true) }

// drawDashboard draws every panel of the dashboard from the run's data into
// dir: dashboard.png, all panels where Grafana puts them, and one PNG per
// panel under dir/panels.
func drawDashboard(t *testing.T, ctx context.Context, prom *promtest.Server, dash metricnames.Dashboard, dir string, start, healthyEnd, end time.Time) {
	t.Helper()
	out := panelchart.Dashboard{
		Title: "logferry (deploy/grafana/logferry.json), drawn from e2e/prometheus_test.go's run",
		Subtitle: fmt.Sprintf("%s to %s UTC; Prometheus query_range, step %v, $__rate_interval %s, job and instance All. "+
			"Healthy until %s (2 containers through the plugin, 2 read by the sidecar), then faults on purpose: "+
			"a Loki that refuses, one that fails and recovers, the sidecar stopped (dashed line).",
			start.UTC().Format("2006-01-02 15:04:05"), end.UTC().Format("15:04:05"), promStep, rateInterval,
			healthyEnd.UTC().Format("15:04:05")),
		Start: start, End: end,
		Marks: []time.Time{healthyEnd},
	}
	for _, p := range dash.Panels {
		cp := panelchart.Panel{Title: p.Title, Unit: p.Unit, X: p.GridPos.X, Y: p.GridPos.Y, W: p.GridPos.W, H: p.GridPos.H}
		switch p.Type {
		case "row":
			cp.Kind = panelchart.Row
		case "heatmap":
			cp.Kind = panelchart.Heatmap
		}
		for _, tg := range p.Targets {
			m, err := prom.QueryRange(ctx, interpolate(tg.Expr), start, end, promStep)
			if err != nil {
				t.Fatalf("panel %q: %v", p.Title, err)
			}
			for _, s := range m {
				cs := panelchart.Series{Name: legend(tg.Legend, s.Metric)}
				for _, v := range s.Values {
					cs.Points = append(cs.Points, panelchart.Point{T: v.Timestamp.Time(), V: float64(v.Value)})
				}
				cp.Series = append(cp.Series, cs)
			}
		}
		if cp.Kind == panelchart.Heatmap {
			slices.SortFunc(cp.Series, func(a, b panelchart.Series) int {
				x, _ := strconv.ParseFloat(a.Name, 64)
				y, _ := strconv.ParseFloat(b.Name, 64)
				switch {
				case x < y:
					return -1
				case x > y:
					return 1
				}
				return 0
			})
		} else {
			slices.SortStableFunc(cp.Series, func(a, b panelchart.Series) int { return strings.Compare(a.Name, b.Name) })
		}
		out.Panels = append(out.Panels, cp)
	}
	if err := os.MkdirAll(filepath.Join(dir, "panels"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string, draw func(*os.File) error) {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := draw(f); err != nil {
			f.Close()
			t.Fatalf("%s: %v", name, err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	write("dashboard.png", func(f *os.File) error { return out.WriteGrid(f) })
	n := 0
	for i, p := range out.Panels {
		if p.Kind == panelchart.Row {
			continue
		}
		n++
		write(filepath.Join("panels", fmt.Sprintf("%02d-%s.png", n, slug(p.Title))), func(f *os.File) error { return out.WritePanel(f, i) })
	}
	t.Logf("drew the dashboard's %d panels into %s", n, dir)
}

var legendRE = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)

// legend fills a Grafana legend format with the series' labels.
func legend(format string, m model.Metric) string {
	if format == "" {
		return m.String()
	}
	return strings.TrimSpace(legendRE.ReplaceAllStringFunc(format, func(s string) string {
		return string(m[model.LabelName(legendRE.FindStringSubmatch(s)[1])])
	}))
}

var slugRE = regexp.MustCompile(`[^a-z0-9]+`)

func slug(title string) string {
	return strings.Trim(slugRE.ReplaceAllString(strings.ToLower(title), "-"), "-")
}
