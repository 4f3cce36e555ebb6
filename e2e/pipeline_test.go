package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
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

// checkTraces reads back name's entries and checks that every numbered
// line arrived exactly once as one entry, with a Java trace's continuation
// lines joined to it by "\n" exactly when it is every traceEvery-th.
func checkTraces(t *testing.T, srv *lokitest.Server, name string, gen loggen.Config, traceEvery uint64, since time.Time) {
	t.Helper()
	trace := "\n" + strings.Join(loggen.TraceLines, "\n")
	seen := map[uint64]int{}
	bad := 0
	for _, s := range containerStreams(t, srv, name, since) {
		for _, en := range s.Entries {
			head, rest, _ := strings.Cut(en.Line, "\n")
			rec, err := loggen.Parse(head)
			if err != nil {
				t.Fatalf("an entry that is no numbered line: %q", en.Line)
			}
			seen[rec.Seq]++
			want := ""
			if rec.Seq%traceEvery == 0 {
				want = trace
			}
			if got := strings.TrimPrefix(en.Line, head); got != want {
				if bad++; bad <= 3 {
					t.Errorf("line %d: joined %q, want %q (rest %q)", rec.Seq, got, want, rest)
				}
			}
		}
	}
	missing, dups := 0, 0
	for seq := uint64(1); seq <= gen.Lines; seq++ {
		switch seen[seq] {
		case 0:
			missing++
		case 1:
		default:
			dups++
		}
	}
	if missing+dups+bad > 0 {
		t.Errorf("%s: %d lines missing, %d repeated, %d joined wrongly", name, missing, dups, bad)
	}
}

// TestMultilineBothStyles: numbered lines on stdout and stderr, every
// seventh followed by a Java stack trace's continuation lines, through the
// plugin and the sidecar with multiline=java (the plugin's log-opt, the
// sidecar's --multiline): every numbered line arrives exactly once as one
// entry, with its trace joined to it.
func TestMultilineBothStyles(t *testing.T) {
	e := setupPlugin(t)
	startSidecar(t, e.d, e.loki.PushURL(), t.TempDir(), "--multiline", "java")
	const every = 7
	gen := loggen.Config{ID: runID("ml"), Lines: 3000, Size: 100, StderrShare: 0.3}
	for _, style := range []string{"sidecar", "plugin"} {
		name := "ml-" + style + "-" + gen.ID
		args := []string{"--name", name, "--log-driver", "json-file"}
		if style == "plugin" {
			args = []string{"--name", name, "--log-driver", e.driver, "--log-opt", "multiline=java"}
		}
		start := time.Now().Add(-time.Minute)
		id := e.d.Run(t, append(append(args, e.image), genArgs(gen, "-trace-every", fmt.Sprint(every), "-rate", "3000")...)...)
		e.wait(t, id)
		waitLoki(t, e.loki, name, gen.Lines)
		checkTraces(t, e.loki, name, gen, every, start)
	}
}

// TestMultilineAcrossSIGKILL: the same traces while the plugin, and then
// the sidecar, is killed with SIGKILL mid-stream: every numbered line still
// arrives exactly once, with its trace joined to it. Only stdout here: an
// entry of one source delivered while an entry of the other source is
// still open can be sent again after a crash (README, Pipelines).
func TestMultilineAcrossSIGKILL(t *testing.T) {
	e := setupPlugin(t)
	stateDir := t.TempDir()
	sc := startSidecar(t, e.d, e.loki.PushURL(), stateDir, "--multiline", "java")
	const every = 7 // the last line, 20,000, carries no trace: waitLoki parses it
	gen := loggen.Config{ID: runID("mlk"), Lines: 20_000, Size: 120}
	args := func(extra ...string) []string {
		return genArgs(gen, append([]string{"-trace-every", fmt.Sprint(every)}, extra...)...)
	}

	t.Run("plugin", func(t *testing.T) {
		name := "mlk-plugin-" + gen.ID
		start := time.Now().Add(-time.Minute)
		before := e.metric(t, "logferry_plugin_frames_read_total")
		id := e.d.Run(t, append([]string{"--name", name, "--log-driver", e.driver, "--log-opt", "multiline=java",
			"--log-opt", "loki-batch-wait=100ms", e.image}, args("-rate", "2000")...)...)
		waitFor(t, time.Minute, "a third of the lines", func() bool {
			return e.metric(t, "logferry_plugin_frames_read_total") >= before+8000
		})
		pid := e.pluginPID(t)
		if err := exec.Command("kill", "-9", strconv.Itoa(pid)).Run(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "the daemon to restart the plugin", func() bool {
			p, err := e.findPluginPID()
			return err == nil && p != pid
		})
		e.wait(t, id)
		e.waitDelivered(t)
		checkTraces(t, e.loki, name, gen, every, start)
	})

	t.Run("sidecar", func(t *testing.T) {
		name := "mlk-sidecar-" + gen.ID
		start := time.Now().Add(-time.Minute)
		id := e.d.Run(t, append([]string{"--name", name, "--log-driver", "json-file", e.image}, args("-rate", "2000")...)...)
		for i := 0; i < 3; i++ {
			time.Sleep(time.Duration(700+300*i) * time.Millisecond) // the point is a kill at an arbitrary moment
			sc.stop(syscall.SIGKILL)
			sc.start()
		}
		e.wait(t, id)
		waitLoki(t, e.loki, name, gen.Lines)
		checkTraces(t, e.loki, name, gen, every, start)
	})
}

// TestPipelineStagesInLoki: stages whose effect only Loki can show, through
// the plugin (the step is the sidecar's too): json into structured metadata
// queryable with | order="A42", match with action drop, timestamp from the
// line, limit dropping past its rate; and the python multiline preset.
func TestPipelineStagesInLoki(t *testing.T) {
	e := setupPlugin(t)
	stages := `- match:
    selector: '{container_name=~".+"} |= "debug"'
    action: drop
    drop_counter_reason: debug
- json:
    expressions:
      order: order
- structured_metadata:
    order:
- regex:
    expression: 'ts=(?P<ts>\S+)'
- timestamp:
    source: ts
    format: RFC3339
- match:
    selector: '{container_name=~".+"} |= "spam"'
    stages:
      - limit:
          rate: 1
          burst: 1
          drop: true
`
	// Within Loki's out-of-order window (an hour behind the stream's newest entry).
	past := time.Now().Add(-10 * time.Minute).UTC().Truncate(time.Second)
	say := []string{`{"level":"info","order":"A42","msg":"paid"}`, "debug noise", "ts=" + past.Format(time.RFC3339) + " late event"}
	for i := 0; i < 20; i++ {
		say = append(say, fmt.Sprintf("spam %d", i))
	}
	gen := loggen.Config{ID: runID("st"), Lines: 5, Size: 80}
	name := "st-" + gen.ID
	start := time.Now().Add(-2 * time.Hour)
	id := e.d.Run(t, append([]string{"--name", name, "--log-driver", e.driver, "--log-opt", "loki-pipeline-stages=" + stages,
		e.image}, genArgs(gen, "-say", strings.Join(say, "|"))...)...)
	e.wait(t, id)
	e.waitDelivered(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	end := time.Now().Add(time.Minute)
	q := fmt.Sprintf(`{container_name=%q}`, name)
	byOrder, err := e.loki.QueryAll(ctx, q+` | order="A42"`, start, end)
	if err != nil {
		t.Fatal(err)
	}
	if n := lokitest.Count(byOrder); n != 1 || !strings.Contains(byOrder[0].Entries[0].Line, `"order":"A42"`) {
		t.Errorf(`| order="A42" found %d entries, want the json line`, n)
	}
	all, err := e.loki.QueryAll(ctx, q, start, end)
	if err != nil {
		t.Fatal(err)
	}
	spam := 0
	for _, s := range all {
		for _, en := range s.Entries {
			switch {
			case strings.Contains(en.Line, "debug noise"):
				t.Errorf("the match drop let through %q", en.Line)
			case strings.Contains(en.Line, "late event"):
				if en.Timestamp != past.UnixNano() {
					t.Errorf("the timestamp stage gave %v, want %v", time.Unix(0, en.Timestamp).UTC(), past)
				}
			case strings.HasPrefix(en.Line, "spam "):
				spam++
			}
		}
	}
	if dropped := e.metric(t, "logferry_pipeline_dropped_total"); spam >= 20 || spam < 1 || int(dropped) != 1+20-spam {
		for _, s := range all {
			for _, en := range s.Entries {
				t.Logf("%s %d %q", lokitest.LabelString(s.Labels), en.Timestamp, en.Line)
			}
		}
		t.Errorf("%d spam lines in Loki, %v dropped in all: want the limit to let a few through and count the rest, and the debug line", spam, dropped)
	}
	if got := metricWhere(t, e.metrics, "logferry_pipeline_dropped_total", `reason="debug"`); got != 1 {
		t.Errorf("dropped{reason=debug} = %v, want 1", got)
	}

	t.Run("python preset", func(t *testing.T) {
		tb := []string{"Traceback (most recent call last):", `  File "app.py", line 3, in <module>`, "    main()", "ValueError: bad input"}
		gen := loggen.Config{ID: runID("py"), Lines: 3, Size: 80}
		name := "py-" + gen.ID
		id := e.d.Run(t, append([]string{"--name", name, "--log-driver", e.driver, "--log-opt", "multiline=python",
			e.image}, genArgs(gen, "-say", strings.Join(tb, "|"))...)...)
		e.wait(t, id)
		e.waitDelivered(t)
		var entries []string
		for _, s := range containerStreams(t, e.loki, name, start) {
			for _, en := range s.Entries {
				entries = append(entries, en.Line)
			}
		}
		want := strings.Join(tb, "\n")
		if len(entries) != 4 || !slices.Contains(entries, want) {
			t.Errorf("entries %q: want the traceback as one entry and the 3 numbered lines", entries)
		}
	})
}
