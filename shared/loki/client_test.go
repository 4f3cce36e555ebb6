package loki

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The tests of this file are the push client's trust boundaries (issue 14):
// what counts as Loki's acknowledgement, where requests and credentials may
// go, what reaches logs and errors.

// seen is one request a peer received.
type seen struct {
	method, path, auth string
	body               []byte
}

// peer is an httptest server that records every request and answers with
// answer (n counts requests from 0).
type peer struct {
	srv    *httptest.Server
	mu     sync.Mutex
	reqs   []seen
	answer func(n int, w http.ResponseWriter, r *http.Request, body []byte)
}

func newPeer(t *testing.T, answer func(n int, w http.ResponseWriter, r *http.Request, body []byte)) *peer {
	t.Helper()
	p := &peer{answer: answer}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		p.mu.Lock()
		n := len(p.reqs)
		p.reqs = append(p.reqs, seen{method: r.Method, path: r.URL.Path, auth: r.Header.Get("Authorization"), body: body})
		p.mu.Unlock()
		p.answer(n, w, r, body)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *peer) requests() []seen {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]seen(nil), p.reqs...)
}

// withUserinfo puts user:pass into an http://host:port URL.
func withUserinfo(u, user, pass string) string {
	return strings.Replace(u, "http://", "http://"+user+":"+pass+"@", 1)
}

// syncLog is a log destination the dispatcher's goroutine writes while the
// test reads it.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *syncLog) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// handleN hands n entries of stream {a="b"} to d, with offsets 0..n-1 on rec.
func handleN(t *testing.T, d *Dispatcher, rec *recorder, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if err := d.Handle(Entry{Stream: `{a="b"}`, TimeNano: int64(i + 1), Line: fmt.Sprintf("line %d", i), Acker: rec, Offset: int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
}

func (r *recorder) lastDelivered() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ok[len(r.ok)-1]
}

// TestRedirectIsNeverFollowed: a 3xx is not an acknowledgement and is not
// followed: the host it names receives nothing (no body, no credentials),
// the batch is retried and in the end given up, never counted as sent, and
// the log names the redirect's host but not its userinfo or query.
func TestRedirectIsNeverFollowed(t *testing.T) {
	for _, code := range []int{301, 302, 303, 307, 308} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			other := newPeer(t, func(_ int, w http.ResponseWriter, _ *http.Request, _ []byte) {
				w.WriteHeader(http.StatusNoContent)
			})
			otherHost := strings.TrimPrefix(other.srv.URL, "http://")
			location := withUserinfo(other.srv.URL, "mallory", "redirpass") + "/loki/api/v1/push?sig=redirquery"
			loki := newPeer(t, func(_ int, w http.ResponseWriter, _ *http.Request, _ []byte) {
				w.Header().Set("Location", location)
				w.WriteHeader(code)
			})
			cfg := testConfig(withUserinfo(loki.srv.URL, "alice", "s3cret") + "/loki/api/v1/push")
			cfg.Retries = 2
			var logs syncLog
			d, err := New(cfg, NewMetrics(prometheus.NewRegistry()), logs.logger())
			if err != nil {
				t.Fatal(err)
			}
			rec := newRecorder()
			handleN(t, d, rec, 3)
			rec.waitAck(t, 2)
			d.StopNow()
			d.Release()

			if got := other.requests(); len(got) != 0 {
				t.Fatalf("the redirect's target received %d requests (first: %s auth=%q, %d body bytes)", len(got), got[0].method, got[0].auth, len(got[0].body))
			}
			if got := len(loki.requests()); got != 3 {
				t.Fatalf("%d pushes, want 3 (1 + 2 retries)", got)
			}
			if rec.lastDelivered() {
				t.Fatal("a redirected batch was acknowledged as delivered")
			}
			if n := testutil.ToFloat64(d.m.entriesSent) + testutil.ToFloat64(d.m.batchesSent); n != 0 {
				t.Fatalf("sent counters %v after redirects only", n)
			}
			if n := testutil.ToFloat64(d.m.dropped.WithLabelValues(ReasonRetriesExhausted)); n != 3 {
				t.Fatalf("dropped{retries_exhausted} %v, want 3", n)
			}
			if n := testutil.ToFloat64(d.m.retries.WithLabelValues(fmt.Sprint(code))); n != 2 {
				t.Fatalf("retries{status=%d} %v, want 2", code, n)
			}
			if n := testutil.ToFloat64(d.m.pushFailures.WithLabelValues("redirect")); n != 3 {
				t.Fatalf("push_failures{reason=redirect} %v, want 3", n)
			}
			out := logs.String()
			if !strings.Contains(out, "redirect") || !strings.Contains(out, otherHost) {
				t.Fatalf("the log does not name the redirect and its host %s:\n%s", otherHost, out)
			}
			for _, secret := range []string{"redirpass", "mallory", "redirquery", "s3cret"} {
				if strings.Contains(out, secret) {
					t.Fatalf("the log contains %q:\n%s", secret, out)
				}
			}
		})
	}
}

// TestOnly200And204Acknowledge: another 2xx (a proxy, not Loki) is not an
// acknowledgement; the batch is retried and counted once, when Loki says 204.
func TestOnly200And204Acknowledge(t *testing.T) {
	tests := []struct {
		code       int
		wantPushes int
	}{
		{200, 1},
		{204, 1},
		{201, 2},
		{202, 2},
		{203, 2},
		{206, 2},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.code), func(t *testing.T) {
			loki := newFakeLoki(t, status(tt.code))
			d, err := New(testConfig(loki.url()), NewMetrics(prometheus.NewRegistry()), nil)
			if err != nil {
				t.Fatal(err)
			}
			rec := newRecorder()
			handleN(t, d, rec, 3)
			rec.waitAck(t, 2)
			if err := d.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			d.Release()
			if got := loki.requests(); got != tt.wantPushes {
				t.Fatalf("%d pushes, want %d", got, tt.wantPushes)
			}
			if !rec.lastDelivered() {
				t.Fatal("not delivered")
			}
			if n := testutil.ToFloat64(d.m.entriesSent); n != 3 {
				t.Fatalf("entries sent %v, want 3 (counted once)", n)
			}
			if n := testutil.ToFloat64(d.m.batchesSent); n != 1 {
				t.Fatalf("batches sent %v, want 1", n)
			}
			if tt.wantPushes > 1 {
				if n := testutil.ToFloat64(d.m.retries.WithLabelValues(fmt.Sprint(tt.code))); n != 1 {
					t.Fatalf("retries{status=%d} %v, want 1", tt.code, n)
				}
				if n := testutil.ToFloat64(d.m.pushFailures.WithLabelValues("unexpected_status")); n != 1 {
					t.Fatalf("push_failures{reason=unexpected_status} %v, want 1", n)
				}
			}
		})
	}
}

// TestUnauthorizedIsRetried: 401 and 403 are retried like a 5xx (a
// credential being rotated must not lose data), and when the retries run
// out the batch goes to the overflow (the spool), not to the drop counter.
func TestUnauthorizedIsRetried(t *testing.T) {
	t.Run("401 then 403 then 204", func(t *testing.T) {
		loki := newFakeLoki(t, status(401), status(403))
		d, err := New(testConfig(loki.url()), NewMetrics(prometheus.NewRegistry()), nil)
		if err != nil {
			t.Fatal(err)
		}
		rec := newRecorder()
		handleN(t, d, rec, 3)
		rec.waitAck(t, 2)
		if err := d.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		d.Release()
		if got := loki.requests(); got != 3 {
			t.Fatalf("%d pushes, want 3", got)
		}
		if !rec.lastDelivered() {
			t.Fatal("not delivered")
		}
		if n := testutil.ToFloat64(d.m.entriesSent); n != 3 {
			t.Fatalf("entries sent %v, want 3", n)
		}
		for _, st := range []string{"401", "403"} {
			if n := testutil.ToFloat64(d.m.retries.WithLabelValues(st)); n != 1 {
				t.Fatalf("retries{status=%s} %v, want 1", st, n)
			}
		}
		if n := testutil.ToFloat64(d.m.pushFailures.WithLabelValues("unauthorized")); n != 2 {
			t.Fatalf("push_failures{reason=unauthorized} %v, want 2", n)
		}
	})
	t.Run("retries run out: overflow keeps the batch", func(t *testing.T) {
		loki := newFakeLoki(t, status(401), status(401), status(401))
		cfg := testConfig(loki.url())
		cfg.Retries = 2
		k := &keeper{}
		d, err := New(cfg, NewMetrics(prometheus.NewRegistry()), nil, WithOverflow(k))
		if err != nil {
			t.Fatal(err)
		}
		rec := newRecorder()
		handleN(t, d, rec, 3)
		rec.waitAck(t, 2)
		d.StopNow()
		d.Release()
		k.mu.Lock()
		defer k.mu.Unlock()
		if k.reasons[ReasonRetriesExhausted] != 3 {
			t.Fatalf("overflow got %v, want 3 entries for %s", k.reasons, ReasonRetriesExhausted)
		}
		if n := testutil.ToFloat64(d.m.dropped.WithLabelValues("unauthorized")); n != 0 {
			t.Fatalf("dropped{unauthorized} %v, want 0", n)
		}
	})
}

// writeToken replaces the token file the way a secret manager does: a new
// file renamed over the old one.
func writeToken(t *testing.T, path, token string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestBearerTokenFileIsReread: a rotated token is used from the next push
// on, whether the file is replaced or rewritten in place with a token of
// the same size; while the file cannot be read, pushes fail (retried, no
// request without the token) and resume once it is back.
func TestBearerTokenFileIsReread(t *testing.T) {
	loki := newPeer(t, func(_ int, w http.ResponseWriter, _ *http.Request, _ []byte) {
		w.WriteHeader(http.StatusNoContent)
	})
	path := filepath.Join(t.TempDir(), "token")
	writeToken(t, path, "first-token\n")
	cfg := testConfig(loki.srv.URL + "/loki/api/v1/push")
	cfg.BearerTokenFile = path
	cfg.Retries = 0 // forever
	var logs syncLog
	d, err := New(cfg, NewMetrics(prometheus.NewRegistry()), logs.logger())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Release()
	defer d.StopNow()
	rec := newRecorder()
	push := func(off int64) {
		t.Helper()
		if err := d.Handle(Entry{Stream: `{a="b"}`, TimeNano: off + 1, Line: "x", Acker: rec, Offset: off}); err != nil {
			t.Fatal(err)
		}
		rec.waitAck(t, off)
	}
	lastAuth := func() string {
		reqs := loki.requests()
		return reqs[len(reqs)-1].auth
	}

	push(0)
	if got := lastAuth(); got != "Bearer first-token" {
		t.Fatalf("Authorization %q", got)
	}
	writeToken(t, path, "second-token")
	push(1)
	if got := lastAuth(); got != "Bearer second-token" {
		t.Fatalf("after rotation: Authorization %q, want the new token", got)
	}
	// In place, same size: a check of size alone would miss it.
	if err := os.WriteFile(path, []byte("third--token"), 0o600); err != nil {
		t.Fatal(err)
	}
	push(2)
	if got := lastAuth(); got != "Bearer third--token" {
		t.Fatalf("after an in-place rewrite: Authorization %q, want the new token", got)
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	before := len(loki.requests())
	if err := d.Handle(Entry{Stream: `{a="b"}`, TimeNano: 4, Line: "x", Acker: rec, Offset: 3}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(logs.String(), "loki-bearer-token-file") })
	if n := len(loki.requests()) - before; n != 0 {
		t.Fatalf("%d pushes went out while the token file was missing", n)
	}
	writeToken(t, path, "fourth-token")
	rec.waitAck(t, 3)
	if !rec.lastDelivered() {
		t.Fatal("the entry pushed while the token file was missing was not delivered after it came back")
	}
	if got := lastAuth(); got != "Bearer fourth-token" {
		t.Fatalf("after the file came back: Authorization %q", got)
	}
	if n := testutil.ToFloat64(d.m.retries.WithLabelValues("token_file")); n < 1 {
		t.Fatalf("retries{status=token_file} %v, want some", n)
	}
	if n := testutil.ToFloat64(d.m.pushFailures.WithLabelValues("token_file")); n < 1 {
		t.Fatalf("push_failures{reason=token_file} %v, want some", n)
	}
	if out := logs.String(); !strings.Contains(out, path) {
		t.Fatalf("the log does not name the token file %s:\n%s", path, out)
	}
	for _, tok := range []string{"first-token", "second-token", "third--token", "fourth-token"} {
		if strings.Contains(logs.String(), tok) {
			t.Fatalf("the log contains the token %q", tok)
		}
	}
}

// closedAddr returns a 127.0.0.1 address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func testBody(t *testing.T) []byte {
	t.Helper()
	b := newBatch()
	b.add(Entry{Stream: `{a="b"}`, TimeNano: 1, Line: "x"})
	body, err := b.encode()
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), body...)
}

// TestErrorsNameOnlyTheEndpoint: every error the client returns names the
// endpoint without userinfo or query, whatever failed: the connection, the
// proxy, or Loki's answer (even one that echoes the request's secrets).
func TestErrorsNameOnlyTheEndpoint(t *testing.T) {
	secrets := []string{"alice", "s3cret", "api_key", "topsecret", "puser", "ppass", "YWxpY2U6czNjcmV0", "tok-en"}
	echo := newPeer(t, func(_ int, w http.ResponseWriter, r *http.Request, _ []byte) {
		// A broken proxy that echoes what it got.
		http.Error(w, "bad gateway for "+r.URL.String()+" auth "+r.Header.Get("Authorization"), http.StatusBadGateway)
	})
	tokenFile := filepath.Join(t.TempDir(), "token")
	writeToken(t, tokenFile, "tok-en")
	tests := []struct {
		name  string
		url   string
		proxy string
		token bool
	}{
		{name: "connection refused", url: "http://alice:s3cret@" + closedAddr(t) + "/loki/api/v1/push?api_key=topsecret"},
		{name: "proxy refused", url: "http://alice:s3cret@127.0.0.1:9/loki/api/v1/push?api_key=topsecret", proxy: "http://puser:ppass@" + closedAddr(t)},
		{name: "answer echoes basic auth and query", url: withUserinfo(echo.srv.URL, "alice", "s3cret") + "/loki/api/v1/push?api_key=topsecret"},
		{name: "answer echoes the bearer token", url: echo.srv.URL + "/loki/api/v1/push?api_key=topsecret", token: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(tt.url)
			cfg.ProxyURL = tt.proxy
			if tt.token {
				cfg.BearerTokenFile = tokenFile
			}
			c, err := newClient(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.close()
			res := c.push(context.Background(), testBody(t))
			if res.err == nil {
				t.Fatal("no error")
			}
			msg := res.err.Error()
			if !strings.Contains(msg, cfg.Endpoint()) {
				t.Errorf("error %q does not name the endpoint %s", msg, cfg.Endpoint())
			}
			for _, s := range secrets {
				if strings.Contains(msg, s) {
					t.Errorf("error %q contains %q", msg, s)
				}
			}
		})
	}
}

func TestBasicAuthAndBearerNeverLeak(t *testing.T) {
	var gotUser, gotPass, gotAuth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotUser, gotPass, _ = r.BasicAuth()
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	cfg := testConfig(strings.Replace(srv.URL, "http://", "http://alice:s3cret@", 1) + "/loki/api/v1/push")
	cfg.Retries = 1
	var logs strings.Builder
	d, err := New(cfg, NewMetrics(reg), slogTo(&logs))
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	_ = d.Handle(Entry{Stream: `{a="b"}`, TimeNano: 1, Line: "x", Acker: rec, Offset: 1})
	rec.waitAck(t, 1)
	if gotUser != "alice" || gotPass != "s3cret" {
		t.Fatalf("basic auth %q/%q", gotUser, gotPass)
	}
	_ = gotAuth
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if strings.Contains(f.String(), "s3cret") {
			t.Fatalf("metric %s leaks the password", f.GetName())
		}
	}
	d.StopNow()
	d.Release()
	if strings.Contains(logs.String(), "s3cret") {
		t.Fatalf("logs leak the password: %s", logs.String())
	}
	if !strings.Contains(logs.String(), "giving up") {
		t.Fatalf("no log of the dropped batch: %s", logs.String())
	}
}

func TestReasonFor(t *testing.T) {
	tests := []struct {
		status int
		msg    string
		want   string
	}{
		{400, "couldn't parse labels: 1:5: parse error: unexpected end of input", "invalid_labels"},
		{400, "something new", "bad_request"},
		{404, "404 page not found", "not_found"},
		{413, "", "too_large"},
		{418, "teapot", "http_418"},
	}
	for _, tt := range tests {
		if got := reasonFor(tt.status, tt.msg); got != tt.want {
			t.Errorf("reasonFor(%d, %q) = %q, want %q", tt.status, tt.msg, got, tt.want)
		}
	}
}
