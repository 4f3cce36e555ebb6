package e2e

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/logferry/logferry/internal/loggen"
)

// TestSidecarSelection: containers left out by label, by name, by image,
// by logferry.enable=false and by a selection relabel rule are never
// shipped; the included one is shipped exactly once; the /containers page
// shows each with its reason while they run.
func TestSidecarSelection(t *testing.T) {
	e := setupPlugin(t)
	other := "lf-sel-other:1"
	e.d.Docker(t, "tag", e.image, other)
	rules := "- source_labels: [__meta_docker_container_label_drop]\n  regex: yes\n  action: drop\n"
	sc := startSidecar(t, e.d, e.loki.PushURL(), t.TempDir(), "--exclude-labels", "team=ops",
		"--exclude-names", "sel-skip-*", "--exclude-images", "lf-sel-other:*", "--selection-relabel-config", rules)
	gen := loggen.Config{ID: runID("sel"), Lines: 200, Size: 80}
	cases := []struct {
		name   string
		args   []string
		reason string // "" = shipped
	}{
		{"sel-in-" + gen.ID, nil, ""},
		{"sel-label-" + gen.ID, []string{"--label", "team=ops"}, "exclude_labels"},
		{"sel-skip-" + gen.ID, nil, "exclude_names"},
		{"sel-image-" + gen.ID, []string{"--image-marker"}, "exclude_images"},
		{"sel-off-" + gen.ID, []string{"--label", "logferry.enable=false"}, "enable_false"},
		{"sel-rule-" + gen.ID, []string{"--label", "drop=yes"}, "selection_relabel"},
	}
	start := time.Now().Add(-time.Minute)
	var ids []string
	for _, c := range cases {
		img := e.image
		args := []string{"--name", c.name, "--log-driver", "json-file"}
		for _, a := range c.args {
			if a == "--image-marker" {
				img = other
				continue
			}
			args = append(args, a)
		}
		ids = append(ids, e.d.Run(t, append(append(args, img), genArgs(gen, "-sleep-after", "2m")...)...))
	}
	waitLoki(t, e.loki, cases[0].name, gen.Lines)
	resp, err := httpc.Get("http://" + sc.metrics + "/containers")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, c := range cases {
		var line string
		for _, l := range strings.Split(string(page), "\n") {
			if strings.Contains(l, " "+c.name+" ") {
				line = l
			}
		}
		want := "yes"
		if c.reason != "" {
			want = "no       excluded  " + c.reason
		}
		if !strings.Contains(line, want) {
			t.Errorf("%s: containers page line %q does not say %q\n%s", c.name, line, want, page)
		}
		if c.reason != "" {
			if got := metricWhere(t, sc.metrics, "logferry_sidecar_containers_excluded", `reason="`+c.reason+`"`); got != 1 {
				t.Errorf("logferry_sidecar_containers_excluded{reason=%s} = %v, want 1", c.reason, got)
			}
		}
	}
	// The lines of the included one are all there: nothing of the others
	// was ever read, so none can come later.
	for _, c := range cases[1:] {
		if n := len(containerStreams(t, e.loki, c.name, start)); n != 0 {
			t.Errorf("%s (%s) reached Loki: %d streams", c.name, c.reason, n)
		}
	}
	checkStreams(t, e.loki, cases[0].name, e.host, gen, start)
	e.d.Docker(t, append([]string{"rm", "-f"}, ids...)...)
}
