package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/logferry/logferry/internal/loggen"
	"github.com/logferry/logferry/internal/lokitest"
)

// relabelRules are the Loki driver documentation's kind of example: swarm
// labels renamed by labelmap, host dropped; and one drop rule.
const relabelRules = `- action: labelmap
  regex: swarm_stack
  replacement: namespace
- action: labelmap
  regex: swarm_(service)
- action: labeldrop
  regex: swarm_stack|swarm_service|host
- action: drop
  source_labels: [container_name]
  regex: rl-drop-.*
`

// TestRelabelBothStyles: the same loki-relabel-config through the plugin
// (log-opt) and the sidecar (--loki-relabel-config) gives the same labels;
// a container the rules drop is never shipped by either; an empty value is
// accepted and a bad rule fails docker run naming it.
func TestRelabelBothStyles(t *testing.T) {
	e := setupPlugin(t)
	sc := startSidecar(t, e.d, e.loki.PushURL(), t.TempDir(), "--loki-relabel-config", relabelRules)
	swarm := []string{"--label", "com.docker.stack.namespace=shop", "--label", "com.docker.swarm.service.name=shop_web"}
	gen := loggen.Config{ID: runID("rl"), Lines: 50, Size: 100, StderrShare: 0.5}
	want := `{container_name="rl-web", namespace="shop", service="shop_web", source="stderr"}` +
		`{container_name="rl-web", namespace="shop", service="shop_web", source="stdout"}`

	for _, style := range []string{"sidecar", "plugin"} {
		args := []string{"--log-driver", "json-file"}
		if style == "plugin" {
			args = []string{"--log-driver", e.driver, "--log-opt", "loki-relabel-config=" + relabelRules}
		}
		// Both styles' rl-web share labels: each reads back only its own run.
		start := time.Now()
		dropped := e.d.Run(t, append(append(append([]string{"--name", "rl-drop-" + style}, args...), e.image), genArgs(gen)...)...)
		id := e.d.Run(t, append(append(append(append([]string{"--name", "rl-web"}, args...), swarm...), e.image), genArgs(gen)...)...)
		e.wait(t, id)
		e.wait(t, dropped)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		q := `{container_name="rl-web"}`
		if _, err := e.loki.WaitForCount(ctx, q, start, time.Now().Add(time.Minute), int(gen.Lines)); err != nil {
			cancel()
			t.Fatalf("%s: %v", style, err)
		}
		streams, err := e.loki.QueryAll(ctx, q, start, time.Now().Add(time.Minute))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		var got strings.Builder
		for _, s := range streams {
			got.WriteString(lokitest.LabelString(s.Labels))
		}
		if got.String() != want || lokitest.Count(streams) != int(gen.Lines) {
			t.Errorf("%s: streams %s with %d lines, want %s with %d", style, got.String(), lokitest.Count(streams), want, gen.Lines)
		}
		if style == "plugin" {
			e.waitDelivered(t)
		} else {
			waitFor(t, time.Minute, "the sidecar's shipper of rl-web to end", func() bool {
				return len(metricSamples(t, sc.metrics, "logferry_sidecar_lines_read_total", `container_name="rl-web"`)) == 0
			})
		}
		if n := lokitest.Count(containerStreams(t, e.loki, "rl-drop-"+style, start)); n != 0 {
			t.Errorf("%s: Loki has %d lines of the container the rules drop", style, n)
		}
		e.d.Docker(t, "rm", "-f", id, dropped)
	}
	if got := metricWhere(t, sc.metrics, "logferry_sidecar_containers", `route="dropped"`); got != 0 {
		t.Errorf("the dropped container is still counted after its removal: %v", got)
	}
	if got := e.metric(t, "logferry_plugin_lines_relabel_dropped_total"); got != float64(gen.Lines) {
		t.Errorf("the plugin counted %v lines of the dropped container, want %d", got, gen.Lines)
	}

	t.Run("empty is accepted, a bad rule fails docker run naming it", func(t *testing.T) {
		out, stderr, err := e.d.DockerErr("run", "--rm", "--network", "none", "--log-driver", e.driver,
			"--log-opt", "loki-relabel-config=", e.image, "-n", "1")
		if err != nil {
			t.Fatalf("empty loki-relabel-config: %v\n%s%s", err, out, stderr)
		}
		_, stderr, err = e.d.DockerErr("run", "--rm", "--network", "none", "--log-driver", e.driver,
			"--log-opt", "loki-relabel-config=- action: labelmap\n  regex: a\n- action: explode", e.image, "-n", "1")
		if err == nil || !strings.Contains(stderr, "loki-relabel-config: rule 2") {
			t.Fatalf("a bad rule: err %v, stderr %q does not name loki-relabel-config: rule 2", err, stderr)
		}
	})
}
