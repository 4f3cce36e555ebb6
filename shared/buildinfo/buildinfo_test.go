package buildinfo

import (
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestReadAndRegister(t *testing.T) {
	old := version
	t.Cleanup(func() { version = old })
	version = ""
	if got := Read().Version; got != "dev" {
		t.Fatalf("version without ldflags: %q, want dev", got)
	}
	version = "1.2.3"
	i := Read()
	if i.Version != "1.2.3" || i.GoVersion != runtime.Version() || i.Revision == "" || i.BuildDate == "" {
		t.Fatalf("info %+v", i)
	}
	if s := i.String("logferry-sidecar"); !strings.HasPrefix(s, "logferry-sidecar 1.2.3 (revision ") || !strings.Contains(s, runtime.Version()) {
		t.Fatalf("version line %q", s)
	}
	reg := prometheus.NewRegistry()
	i.Register(reg)
	want := `
# HELP logferry_build_info Always 1; the labels say which build of logferry runs.
# TYPE logferry_build_info gauge
logferry_build_info{goversion="` + runtime.Version() + `",revision="` + i.Revision + `",version="1.2.3"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "logferry_build_info"); err != nil {
		t.Fatal(err)
	}
}

func TestAsked(t *testing.T) {
	for args, want := range map[string]bool{"--version": true, "-version": true, "--loki-url x": false, "": false} {
		if got := Asked(strings.Fields(args)); got != want {
			t.Errorf("Asked(%q) = %v", args, got)
		}
	}
}
