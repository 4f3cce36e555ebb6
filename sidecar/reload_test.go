package sidecar

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestReload: a reload applies selection and endpoint changes (a running
// container's next lines go to the new endpoint), refuses a change only a
// restart applies and an invalid file, and counts both.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "sidecar.yaml")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r, _, _ := newTestRouter(t, slog.New(slog.DiscardHandler))
	url := r.cfg.Options["loki-url"]
	load := func() (Config, error) {
		return LoadConfig([]string{"--config", file, "--state-dir", dir}, nil, io.Discard)
	}
	write("loki-url: " + url + "\nloki-tenant-id: a\n")
	cfg, err := load()
	if err != nil {
		t.Fatal(err)
	}
	r.cfg, r.live = cfg, cfg
	s := testShipper(t, r, ctr(strings.Repeat("ab", 32)), RouteFile)
	r.mu.Lock()
	r.shippers[s.c.ID] = s
	r.mu.Unlock()
	defer s.fan.Close()
	rl := NewReloader(r, load, slog.New(slog.DiscardHandler))

	write("loki-url: " + url + "\nloki-tenant-id: b\nexclude-names: other\n")
	if err := rl.Reload("test"); err != nil {
		t.Fatal(err)
	}
	if got := s.fan.Base().TenantID; got != "b" {
		t.Errorf("running container's tenant after reload: %q, want b", got)
	}
	r.mu.Lock()
	sel := r.live.Selection
	r.mu.Unlock()
	c := ctr(strings.Repeat("cd", 32))
	c.Name = "other"
	if sel.Reason(c) == "" {
		t.Error("the reloaded selection does not exclude the container named other")
	}

	write("loki-url: " + url + "\nloki-tenant-id: c\nlisten: 127.0.0.1:1\n")
	if err := rl.Reload("test"); !errors.Is(err, ErrNeedsRestart) || !strings.Contains(err.Error(), "listen") {
		t.Errorf("changing listen: %v, want an error naming listen that needs a restart", err)
	}
	write("loki-url: " + url + "\nloki-batch-wait: soon\n")
	if err := rl.Reload("test"); err == nil || !strings.Contains(err.Error(), "loki-batch-wait") {
		t.Errorf("an invalid value: %v, want an error naming loki-batch-wait", err)
	}
	if got := s.fan.Base().TenantID; got != "b" {
		t.Errorf("after refused reloads the tenant is %q, want b", got)
	}
	for result, want := range map[string]float64{ReloadApplied: 1, ReloadInvalid: 2} {
		if got := testutil.ToFloat64(r.m.reloads.WithLabelValues(result)); got != want {
			t.Errorf("reloads{result=%s} = %v, want %v", result, got, want)
		}
	}
}
