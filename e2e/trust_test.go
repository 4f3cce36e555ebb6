package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/logferry/logferry/internal/dockertest"
	"github.com/logferry/logferry/internal/loggen"
	"github.com/logferry/logferry/internal/lokitest"
)

// recorder is an HTTP server that counts requests and keeps the
// Authorization headers it saw; with a target it forwards to it.
type recorder struct {
	srv *httptest.Server

	mu    sync.Mutex
	n     int
	auths map[string]int
}

func newRecorder(t *testing.T, target string) *recorder {
	t.Helper()
	r := &recorder{auths: map[string]int{}}
	var proxy http.Handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	if target != "" {
		u, err := url.Parse(target)
		if err != nil {
			t.Fatal(err)
		}
		proxy = httputil.NewSingleHostReverseProxy(u)
	}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.n++
		r.auths[req.Header.Get("Authorization")]++
		r.mu.Unlock()
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *recorder) pushURL() string { return r.srv.URL + lokitest.PushPath }

func (r *recorder) seen() (int, map[string]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	auths := make(map[string]int, len(r.auths))
	for k, v := range r.auths {
		auths[k] = v
	}
	return r.n, auths
}

// TestTrustLabelsCannotRedirect runs the attack of issue 14 against the
// sidecar with label overrides on: an image's labels name a foreign
// endpoint, a host file as the bearer token, a tenant the operator did not
// list and a template that would allocate 1.2 GiB. The foreign endpoint
// gets nothing, no host file is sent, and the container's lines reach the
// operator's Loki with the operator's token.
func TestTrustLabelsCannotRedirect(t *testing.T) {
	d := dockertest.Start(t)
	srv := lokitest.Start(t)
	image := d.EnsureTestImage(t)

	dir := t.TempDir()
	token := filepath.Join(dir, "operator-token")
	secret := filepath.Join(dir, "host-secret")
	if err := os.WriteFile(token, []byte("OPERATOR-SECRET-TOKEN\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secret, []byte("ROOT-ONLY-HOST-SECRET\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	operator := newRecorder(t, srv.URL())
	foreign := newRecorder(t, "")
	sc := startSidecar(t, d, operator.pushURL(), t.TempDir(), "--loki-bearer-token-file", token,
		"--label-overrides=true", "--label-override-tenants=team-a")

	gen := loggen.Config{ID: runID("trust"), Lines: 300, Size: 100, StderrShare: 0.3}
	name := "sc-" + gen.ID
	d.Run(t, append([]string{"--name", name, "--log-driver", "json-file",
		"--label", "logferry.loki-url=" + foreign.pushURL(),
		"--label", "logferry.loki-proxy-url=" + foreign.srv.URL,
		"--label", "logferry.loki-bearer-token-file=" + secret,
		"--label", "logferry.loki-tenant-id=someone-else",
		"--label", "logferry.loki-external-labels=x={{pad .Name 300000000 0}}",
		"--label", "logferry.no-such-option=1",
		"--label", "logferry.loki-external-labels-typo=1",
		image}, genArgs(gen)...)...)

	waitLoki(t, srv, name, gen.Lines)
	checkStreams(t, srv, name, hostLabel(t), gen, time.Now().Add(-time.Hour))

	if n, _ := foreign.seen(); n != 0 {
		t.Errorf("the foreign endpoint named by a label received %d requests", n)
	}
	n, auths := operator.seen()
	if n == 0 || auths["Bearer OPERATOR-SECRET-TOKEN"] != n {
		t.Errorf("the operator's endpoint saw %d requests with Authorization headers %v; want every one with the operator's token", n, auths)
	}
	for want, reason := range map[string]string{
		"loki-url": "operator_only", "loki-proxy-url": "operator_only", "loki-bearer-token-file": "operator_only",
		"loki-tenant-id": "tenant_not_allowed", "loki-external-labels": "invalid_value", "unknown": "unknown_option",
	} {
		match := fmt.Sprintf(`option=%q,reason=%q`, want, reason)
		if got := metricWhere(t, sc.metrics, "logferry_sidecar_label_refused_total", match); got < 1 {
			t.Errorf("logferry_sidecar_label_refused_total{%s} = %v, want at least 1", match, got)
		}
	}
	if got := metricWhere(t, sc.metrics, "logferry_sidecar_label_refused_total", `option="unknown"`); got != 2 {
		t.Errorf("refused unknown options counted %v times, want 2 (one per label)", got)
	}
	if got := sc.metric("logferry_sidecar_container_errors_total"); got != 0 {
		t.Errorf("logferry_sidecar_container_errors_total = %v: a container with bad labels must still be shipped", got)
	}

	t.Run("pprof answers 404 unless enabled", func(t *testing.T) {
		resp, err := httpc.Get("http://" + sc.metrics + "/debug/pprof/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("/debug/pprof/ answered %d, want 404", resp.StatusCode)
		}
	})
}

// hostLabel is the host label the sidecar gives: the Engine's host name,
// which for the test's private dockerd is this machine's.
func hostLabel(t *testing.T) string {
	t.Helper()
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestTrustLineCapAfterReplacement: a container writes a line of 64 KiB of
// invalid bytes with max-line-size=64k. Each byte becomes U+FFFD (3 bytes),
// and the cap applies to what is sent: the line reaches Loki, through the
// plugin and through the sidecar, at most 64 KiB long and valid UTF-8, and
// the numbered lines around it arrive too.
func TestTrustLineCapAfterReplacement(t *testing.T) {
	const lineCap = 64 << 10
	e := setupPlugin(t)
	sc := startSidecar(t, e.d, e.loki.PushURL(), t.TempDir(), "--max-line-size", "64k")
	gen := loggen.Config{ID: runID("cap"), Lines: 20, Size: 100}
	for _, driver := range []string{e.driver, "json-file"} {
		name := fmt.Sprintf("cap-%s-%s", strings.ReplaceAll(driver, "/", "_"), gen.ID)
		start := time.Now().Add(-time.Minute)
		args := []string{"--name", name, "--log-driver", driver}
		if driver == e.driver {
			args = append(args, "--log-opt", "max-line-size=64k")
		}
		id := e.d.Run(t, append(append(args, e.image), genArgs(gen, "-invalid-utf8", fmt.Sprint(lineCap))...)...)
		e.wait(t, id)
		waitFor(t, 2*time.Minute, fmt.Sprintf("%s: %d lines in Loki", driver, gen.Lines+1), func() bool {
			return lokitest.Count(containerStreams(t, e.loki, name, start)) >= int(gen.Lines)+1
		})
		var numbered, capped int
		for _, s := range containerStreams(t, e.loki, name, start) {
			for _, en := range s.Entries {
				if _, err := loggen.Parse(en.Line); err == nil {
					numbered++
					continue
				}
				capped++
				if len(en.Line) > lineCap || !utf8.ValidString(en.Line) || strings.Trim(en.Line, "\uFFFD") != "" {
					t.Errorf("%s: the invalid line reached Loki as %d bytes (cap %d), valid UTF-8 %v, only U+FFFD %v",
						driver, len(en.Line), lineCap, utf8.ValidString(en.Line), strings.Trim(en.Line, "\uFFFD") == "")
				}
			}
		}
		if numbered != int(gen.Lines) || capped != 1 {
			t.Errorf("%s: %d numbered lines (want %d) and %d other lines (want 1)", driver, numbered, gen.Lines, capped)
		}
	}
	if got := sc.metric("logferry_sidecar_lines_truncated_total"); got != 1 {
		t.Errorf("the sidecar counted %v truncated lines, want 1", got)
	}
	if got := e.metric(t, "logferry_plugin_lines_truncated_total"); got != 1 {
		t.Errorf("the plugin counted %v truncated lines, want 1", got)
	}
}

// TestBuildInfo: both binaries answer --version and say which build runs
// in logferry_build_info.
func TestBuildInfo(t *testing.T) {
	out, err := exec.Command(buildSidecar(t), "--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "logferry-sidecar ") || !strings.Contains(string(out), runtime.Version()) {
		t.Fatalf("logferry-sidecar --version: %q, %v", out, err)
	}
	e := setupPlugin(t)
	sc := startSidecar(t, e.d, e.loki.PushURL(), t.TempDir())
	for name, addr := range map[string]string{"plugin": e.metrics, "sidecar": sc.metrics} {
		if got := metricWhere(t, addr, "logferry_build_info", fmt.Sprintf("goversion=%q", runtime.Version())); got != 1 {
			t.Errorf("%s: logferry_build_info{goversion=%q} = %v, want 1", name, runtime.Version(), got)
		}
	}
}
