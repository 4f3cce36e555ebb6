package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang/snappy"

	"github.com/logferry/logferry/internal/loggen"
	"github.com/logferry/logferry/shared/loki"
)

// tenantTap sits between a shipper and Loki: it decodes every push, keeps
// the tenant (X-Scope-OrgID) each line was sent under, and forwards the
// push unchanged. The test Loki runs with auth_enabled: false, which
// stores every tenant's lines together, so the tenants are checked on the
// wire and the delivery in Loki.
type tenantTap struct {
	srv *httptest.Server

	mu    sync.Mutex
	lines map[string][]string // line -> the tenants it was pushed under, in order
}

func newTenantTap(t *testing.T, target string) *tenantTap {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "" // the push's own path is kept
	proxy := httputil.NewSingleHostReverseProxy(u)
	tap := &tenantTap{lines: map[string][]string{}}
	tap.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var pr loki.PushRequest
		raw, err := snappy.Decode(nil, body)
		if err == nil {
			err = pr.Unmarshal(raw)
		}
		if err != nil {
			t.Errorf("tenant tap: a push that does not decode: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		// Recorded before Loki answers: a push Loki refuses is sent
		// again, and the test would see the line twice.
		rec := func() {
			tap.mu.Lock()
			defer tap.mu.Unlock()
			for _, s := range pr.Streams {
				for _, e := range s.Entries {
					tap.lines[e.Line] = append(tap.lines[e.Line], req.Header.Get("X-Scope-OrgID"))
				}
			}
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		rw := &statusWriter{ResponseWriter: w}
		proxy.ServeHTTP(rw, req)
		if rw.code/100 == 2 {
			rec()
		}
	}))
	t.Cleanup(tap.srv.Close)
	return tap
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (tap *tenantTap) pushURL() string { return tap.srv.URL + "/loki/api/v1/push" }

func (tap *tenantTap) tenantsOf(line string) []string {
	tap.mu.Lock()
	defer tap.mu.Unlock()
	return append([]string(nil), tap.lines[line]...)
}

// tenantStages take the tenant from a JSON field; lines without one stay
// in the container's own tenant (loki-tenant-id).
const tenantStages = `- json:
    expressions:
      team: team
- tenant:
    source: team
`

// TestTenantStageBothStyles: a tenant stage chooses each entry's tenant
// from the line, through the plugin and through the sidecar: every line
// is pushed exactly once, under the tenant its JSON names, or under
// loki-tenant-id when it names none, and all of them are in Loki.
func TestTenantStageBothStyles(t *testing.T) {
	e := setupPlugin(t)
	tap := newTenantTap(t, e.loki.PushURL())
	sc := startSidecar(t, e.d, tap.pushURL(), t.TempDir(), "--loki-tenant-id", "ops", "--loki-pipeline-stages", tenantStages)
	for _, style := range []string{"sidecar", "plugin"} {
		gen := loggen.Config{ID: runID("tn"), Lines: 200, Size: 80}
		var say []string
		want := map[string]string{}
		for i := range 60 {
			team := []string{"team-a", "team-b", ""}[i%3]
			l := fmt.Sprintf(`{"team":%q,"style":%q,"i":%d}`, team, style, i)
			if team == "" {
				l = fmt.Sprintf(`{"style":%q,"i":%d}`, style, i)
				team = "ops"
			}
			say = append(say, l)
			want[l] = team
		}
		name := "tn-" + style
		args := []string{"--name", name, "--log-driver", "json-file"}
		if style == "plugin" {
			args = []string{"--name", name, "--log-driver", e.driver, "--log-opt", "loki-url=" + tap.pushURL(),
				"--log-opt", "loki-tenant-id=ops", "--log-opt", "loki-pipeline-stages=" + tenantStages}
		}
		start := time.Now()
		id := e.d.Run(t, append(append(args, e.image), genArgs(gen, "-say", strings.Join(say, "|"))...)...)
		e.wait(t, id)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err := e.loki.WaitForCount(ctx, fmt.Sprintf(`{container_name=%q}`, name), start, time.Now().Add(time.Minute), int(gen.Lines)+len(say))
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", style, err)
		}
		for l, team := range want {
			if got := tap.tenantsOf(l); len(got) != 1 || got[0] != team {
				t.Errorf("%s: %s pushed under %q, want once under %q", style, l, got, team)
			}
		}
		for seq := uint64(1); seq <= gen.Lines; seq++ {
			_, l := gen.Line(seq)
			if got := tap.tenantsOf(l); len(got) != 1 || got[0] != "ops" {
				t.Errorf("%s: numbered line %d pushed under %q, want once under ops", style, seq, got)
				break
			}
		}
		if style == "plugin" {
			e.waitDelivered(t)
		} else {
			waitFor(t, time.Minute, "the sidecar's shipper of "+name+" to end", func() bool {
				return len(metricSamples(t, sc.metrics, "logferry_sidecar_lines_read_total", `container_name="`+name+`"`)) == 0
			})
		}
		e.d.Docker(t, "rm", "-f", id)
	}
}

// TestSidecarReloadSwitchesTenant: under load (5 containers x 1,000
// lines/s), a SIGHUP after the --config file names another tenant moves
// every container's next lines to it: each line is pushed exactly once,
// each container's lines are in the old tenant up to a point and in the
// new one after it; a reload of an invalid file changes nothing and is
// counted.
func TestSidecarReloadSwitchesTenant(t *testing.T) {
	e := setupPlugin(t)
	tap := newTenantTap(t, e.loki.PushURL())
	dir := t.TempDir()
	file := dir + "/sidecar.yaml"
	write := func(body string) {
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("loki-tenant-id: team-a\n")
	sc := startSidecar(t, e.d, tap.pushURL(), t.TempDir(), "--config", file)
	const containers, lines = 5, 10000
	gens := make([]loggen.Config, containers)
	ids := make([]string, containers)
	start := time.Now()
	for i := range gens {
		gens[i] = loggen.Config{ID: runID(fmt.Sprintf("rl%d", i)), Lines: lines, Size: 200, StderrShare: 0.3}
		ids[i] = e.d.Run(t, append([]string{"--name", fmt.Sprintf("rl-%d", i), "--log-driver", "json-file", e.image},
			genArgs(gens[i], "-rate", "1000")...)...)
	}
	time.Sleep(3 * time.Second) // let each container write some 3,000 lines under team-a
	write("loki-tenant-id: team-b\n")
	if err := sc.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the reload to be applied", func() bool {
		return metricWhere(t, sc.metrics, "logferry_sidecar_config_reloads_total", `result="applied"`) == 1
	})
	write("loki-tenant-id: team-c\nloki-timeout: soon\n")
	if err := sc.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the invalid reload to be counted", func() bool {
		return metricWhere(t, sc.metrics, "logferry_sidecar_config_reloads_total", `result="invalid"`) == 1
	})
	for _, id := range ids {
		e.wait(t, id)
	}
	for i := range gens {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		_, err := e.loki.WaitForCount(ctx, fmt.Sprintf(`{container_name="rl-%d"}`, i), start, time.Now().Add(time.Minute), lines)
		cancel()
		if err != nil {
			t.Fatalf("rl-%d: %v", i, err)
		}
	}
	total := map[string]int{}
	for i, gen := range gens {
		switched := uint64(0)
		for seq := uint64(1); seq <= gen.Lines; seq++ {
			_, l := gen.Line(seq)
			got := tap.tenantsOf(l)
			if len(got) != 1 {
				t.Fatalf("rl-%d line %d pushed under %q, want exactly once", i, seq, got)
			}
			total[got[0]]++
			switch {
			case got[0] == "team-b" && switched == 0:
				switched = seq
			case got[0] == "team-a" && switched != 0:
				t.Fatalf("rl-%d: line %d under team-a after line %d went to team-b", i, seq, switched)
			case got[0] != "team-a" && got[0] != "team-b":
				t.Fatalf("rl-%d: line %d under %q", i, seq, got[0])
			}
		}
		t.Logf("rl-%d: lines 1-%d under team-a, the rest under team-b", i, switched-1)
	}
	if total["team-a"] == 0 || total["team-b"] == 0 {
		t.Errorf("tenants: %v, want lines in both", total)
	}
	for _, id := range ids {
		e.d.Docker(t, "rm", "-f", id)
	}
}
