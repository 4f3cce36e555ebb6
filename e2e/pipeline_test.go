package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/logferry/logferry/internal/loggen"
	"github.com/logferry/logferry/internal/lokitest"
)

// pipelineStages are the Loki driver documentation's own pipeline example
// (a level label from a regex), plus a drop stage for health checks.
const pipelineStages = `- regex:
    expression: '(level|lvl|severity)=(?P<level>\w+)'
- labels:
    level:
- drop:
    expression: 'GET /health'
    drop_counter_reason: health
`

// TestPipelineBothStyles: the same loki-pipeline-stages through the plugin
// (log-opt) and the sidecar (--loki-pipeline-stages) give the same streams
// and labels; the health check is dropped and counted by both.
func TestPipelineBothStyles(t *testing.T) {
	e := setupPlugin(t)
	sc := startSidecar(t, e.d, e.loki.PushURL(), t.TempDir(), "--loki-pipeline-stages", pipelineStages)
	gen := loggen.Config{ID: runID("pl"), Lines: 20, Size: 80}
	say := "level=error payment failed|GET /health 200|lvl=info order created"
	var got [2]string
	for i, style := range []string{"sidecar", "plugin"} {
		args := []string{"--name", "pl-web", "--log-driver", "json-file"}
		if style == "plugin" {
			args = []string{"--name", "pl-web", "--log-driver", e.driver, "--log-opt", "loki-pipeline-stages=" + pipelineStages}
		}
		start := time.Now()
		id := e.d.Run(t, append(append(args, e.image), genArgs(gen, "-say", say)...)...)
		e.wait(t, id)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		q := `{container_name="pl-web"}`
		if _, err := e.loki.WaitForCount(ctx, q, start, time.Now().Add(time.Minute), int(gen.Lines)+2); err != nil {
			cancel()
			t.Fatalf("%s: %v", style, err)
		}
		streams, err := e.loki.QueryAll(ctx, q, start, time.Now().Add(time.Minute))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, s := range streams {
			for _, en := range s.Entries {
				if _, err := loggen.Parse(en.Line); err != nil {
					fmt.Fprintf(&b, "%s %s\n", lokitest.LabelString(s.Labels), en.Line)
				}
			}
		}
		got[i] = b.String()
		if n := lokitest.Count(streams); n != int(gen.Lines)+2 {
			t.Errorf("%s: %d entries in Loki, want %d (the health check dropped)", style, n, gen.Lines+2)
		}
		if strings.Contains(got[i], "/health") {
			t.Errorf("%s: the health check reached Loki:\n%s", style, got[i])
		}
		for _, want := range []string{`level="error"`, `level="info"`} {
			if !strings.Contains(got[i], want) {
				t.Errorf("%s: no stream with %s:\n%s", style, want, got[i])
			}
		}
		if style == "plugin" {
			e.waitDelivered(t)
		} else {
			waitFor(t, time.Minute, "the sidecar's shipper of pl-web to end", func() bool {
				return len(metricSamples(t, sc.metrics, "logferry_sidecar_lines_read_total", `container_name="pl-web"`)) == 0
			})
		}
		e.d.Docker(t, "rm", "-f", id)
	}
	if got[0] != got[1] {
		t.Errorf("the styles differ:\nsidecar:\n%s\nplugin:\n%s", got[0], got[1])
	}
	for name, addr := range map[string]string{"plugin": e.metrics, "sidecar": sc.metrics} {
		if n := metricWhere(t, addr, "logferry_pipeline_dropped_total", `reason="health"`); n != 1 {
			t.Errorf("%s: logferry_pipeline_dropped_total{reason=health} = %v, want 1", name, n)
		}
	}
	_, stderr, err := e.d.DockerErr("run", "--rm", "--network", "none", "--log-driver", e.driver,
		"--log-opt", "loki-pipeline-stages=- regex:\n    expression: '('", e.image, "-n", "1")
	if err == nil || !strings.Contains(stderr, "stage 1 (regex)") {
		t.Errorf("a bad regex: err %v, stderr %q does not name stage 1 (regex)", err, stderr)
	}
	if out, stderr, err := e.d.DockerErr("run", "--rm", "--network", "none", "--log-driver", e.driver,
		"--log-opt", "loki-pipeline-stages=", e.image, "-n", "1"); err != nil {
		t.Errorf("empty loki-pipeline-stages: %v %s%s", err, out, stderr)
	}
}

// TestCardinalityGuard: 100,000 lines, each with a distinct seq made a
// label by a regex + labels pipeline, through the sidecar with
// --max-label-values 50: every line reaches Loki exactly once, the label
// has at most 50 values besides __overflow__, and the overflow is counted.
func TestCardinalityGuard(t *testing.T) {
	e := setupPlugin(t)
	stages := "- regex:\n    expression: 'seq=(?P<user>\\d+)'\n- labels:\n    user:\n"
	sc := startSidecar(t, e.d, e.loki.PushURL(), t.TempDir(), "--loki-pipeline-stages", stages, "--max-label-values", "50")
	gen := loggen.Config{ID: runID("card"), Lines: 100_000, Size: 100, StderrShare: 0.2}
	name := "card-" + gen.ID
	start := time.Now().Add(-time.Minute)
	id := e.d.Run(t, append([]string{"--name", name, "--log-driver", "json-file", e.image}, genArgs(gen)...)...)
	e.wait(t, id)
	waitLoki(t, e.loki, name, gen.Lines)
	streams := containerStreams(t, e.loki, name, start)
	seen := map[uint64]int{}
	users := map[string]int{}
	for _, s := range streams {
		for _, en := range s.Entries {
			rec, err := loggen.Parse(en.Line)
			if err != nil {
				t.Fatalf("damaged line %q: %v", en.Line, err)
			}
			seen[rec.Seq]++
			users[s.Labels["user"]]++
		}
	}
	dups := 0
	for _, n := range seen {
		if n > 1 {
			dups++
		}
	}
	if len(seen) != int(gen.Lines) || dups != 0 {
		t.Errorf("%d distinct lines of %d in Loki, %d repeated", len(seen), gen.Lines, dups)
	}
	over := users["__overflow__"]
	if len(users) > 51 || over < int(gen.Lines)-50 {
		t.Errorf("%d user values in Loki (want at most 50 and __overflow__), %d entries on __overflow__", len(users), over)
	}
	if got := metricWhere(t, sc.metrics, "logferry_labels_overflow_total", `label="user"`); int(got) != over {
		t.Errorf("logferry_labels_overflow_total{label=user} = %v, want %d (the entries on __overflow__)", got, over)
	}
}
