package sidecar

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/logferry/logferry/shared/metadata"
	"github.com/logferry/logferry/sidecar/engine"
)

func selCtr(name, image string, labels map[string]string) engine.Container {
	return engine.Container{Container: metadata.Container{ID: strings.Repeat("5e", 32), Name: name, ImageName: image, Labels: labels},
		LogDriver: "json-file", NetworkMode: "none", Running: true}
}

func TestSelectionReason(t *testing.T) {
	values := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	web := selCtr("web-1", "nginx:1.27", map[string]string{"team": "shop", "tier": "front"})
	loki := selCtr("loki", "grafana/loki:3.7.8", map[string]string{"team": "obs"})
	off := selCtr("quiet", "nginx:1.27", map[string]string{EnableLabel: "false"})
	tests := []struct {
		name     string
		settings map[string]string
		c        engine.Container
		want     string
	}{
		{"everything by default", nil, web, ""},
		{"enable=false", nil, off, ExcludedEnable},
		{"enable=false wins over include", values("include-names", "quiet"), off, ExcludedEnable},
		{"exclude label key", values("exclude-labels", "tier"), web, ExcludedByLabel},
		{"exclude label key=value", values("exclude-labels", "team=obs"), loki, ExcludedByLabel},
		{"exclude label other value", values("exclude-labels", "team=obs"), web, ""},
		{"exclude name glob", values("exclude-names", "web-*"), web, ExcludedByName},
		{"exclude image glob", values("exclude-images", "grafana/*"), loki, ExcludedByImage},
		{"include label missing", values("include-labels", "team=shop"), loki, ExcludedNoLabel},
		{"include label present", values("include-labels", "team=shop, other"), web, ""},
		{"include name", values("include-names", "db*"), web, ExcludedNoName},
		{"include image", values("include-images", "nginx:*"), loki, ExcludedNoImage},
		{"exclude before include", values("include-names", "web-*", "exclude-images", "nginx:*"), web, ExcludedByImage},
		{"relabel drop on a label", values(selectionRelabelKey,
			"- source_labels: [__meta_docker_container_label_team]\n  regex: obs\n  action: drop\n"), loki, ExcludedBySelRelabel},
		{"relabel keep on the name", values(selectionRelabelKey,
			"- source_labels: [__meta_docker_container_name]\n  regex: /web-.*\n  action: keep\n"), loki, ExcludedBySelRelabel},
		{"relabel keep matches", values(selectionRelabelKey,
			"- source_labels: [__meta_docker_container_name, __meta_docker_container_network_mode]\n  regex: /web-.*;none\n  action: keep\n"), web, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel, err := parseSelection(tt.settings)
			if err != nil {
				t.Fatal(err)
			}
			if got := sel.Reason(tt.c); got != tt.want {
				t.Fatalf("reason %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSelectionErrorsNameTheKey(t *testing.T) {
	for key, v := range map[string]string{
		"exclude-names":     "web[",
		"include-images":    "[a-",
		"include-labels":    "=x",
		selectionRelabelKey: "- action: explode",
	} {
		_, err := LoadConfig([]string{"--loki-url", testURL, "--" + key, v}, nil, io.Discard)
		if err == nil || !strings.HasPrefix(err.Error(), key+":") {
			t.Errorf("--%s %q: error %v does not start with the key", key, v, err)
		}
	}
}

// TestExcludedIsNeverRead: an excluded container gets no shipper and no
// file; it is counted by reason and listed on the containers page.
func TestExcludedIsNeverRead(t *testing.T) {
	r, pos, ff := newTestRouter(t, slog.New(slog.DiscardHandler))
	var err error
	if r.live.Selection, err = parseSelection(map[string]string{"exclude-names": "c"}); err != nil {
		t.Fatal(err)
	}
	id := strings.Repeat("7f", 32)
	r.start(context.Background(), ctr(id))
	c2 := ctr(strings.Repeat("8e", 32))
	c2.Labels = map[string]string{EnableLabel: "false"}
	c2.Name = "other"
	r.start(context.Background(), c2)
	if r.Active() != 0 || ff.opens != 0 {
		t.Fatalf("an excluded container is shipped: %d active, %d files opened", r.Active(), ff.opens)
	}
	if _, ok := pos.Get(id); ok {
		t.Fatal("an excluded container has a position")
	}
	for reason, want := range map[string]float64{ExcludedByName: 1, ExcludedEnable: 1} {
		if got := testutil.ToFloat64(r.m.excluded.WithLabelValues(reason)); got != want {
			t.Errorf("excluded{reason=%s} = %v, want %v", reason, got, want)
		}
	}
	rec := httptest.NewRecorder()
	r.ContainersHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/containers", nil))
	page := rec.Body.String()
	for _, want := range []string{"c ", "exclude_names", "other", "enable_false", "excluded"} {
		if !strings.Contains(page, want) {
			t.Errorf("containers page lacks %q:\n%s", want, page)
		}
	}
	r.finish(id) // its die event
	if got := testutil.ToFloat64(r.m.excluded.WithLabelValues(ExcludedByName)); got != 0 {
		t.Errorf("excluded{reason=exclude_names} = %v after the container stopped, want 0", got)
	}
	if n := len(r.Containers()); n != 1 {
		t.Errorf("%d containers listed after one stopped, want 1", n)
	}
}

// FuzzSelection: any selection settings either fail to parse or decide
// every container without a panic.
func FuzzSelection(f *testing.F) {
	f.Add("team=shop,tier", "web-*", "nginx:*", "- source_labels: [__meta_docker_container_name]\n  regex: /x\n  action: drop\n")
	f.Add("=", "[", "*", "- action: labelmap\n  regex: __meta_docker_container_label_(.+)\n")
	f.Fuzz(func(t *testing.T, lbls, names, images, rules string) {
		sel, err := parseSelection(map[string]string{"include-labels": lbls, "exclude-names": names,
			"include-images": images, selectionRelabelKey: rules})
		if err != nil {
			return
		}
		for _, c := range []engine.Container{
			selCtr("web-1", "nginx:1.27", map[string]string{"team": "shop"}),
			selCtr("", "", nil),
		} {
			_ = sel.Reason(c)
		}
	})
}
