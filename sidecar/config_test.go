package sidecar

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logferry/logferry/shared/spool"
)

const testURL = "http://127.0.0.1:3100/loki/api/v1/push"

func TestLoadConfigPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "sidecar.yaml")
	if err := os.WriteFile(file, []byte("loki-url: "+testURL+"\nloki-batch-wait: 2s\nstate-dir: /from/file\nloki-retries: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(
		[]string{"--config", file, "--loki-batch-wait", "250ms", "--poll-interval", "2s"},
		[]string{"LOGFERRY_STATE_DIR=/from/env", "LOGFERRY_LOKI_BATCH_WAIT=5s", "PATH=/bin"},
		io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.StateDir != "/from/env" || cfg.PollInterval != 2*time.Second || cfg.Listen != "127.0.0.1:9376" {
		t.Fatalf("settings %+v", cfg)
	}
	if cfg.Options["loki-batch-wait"] != "250ms" || cfg.Options["loki-retries"] != "3" || cfg.Options["loki-url"] != testURL {
		t.Fatalf("options %v", cfg.Options)
	}
}

func TestLoadConfigErrorsNameTheKey(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bad.yaml")
	_ = os.WriteFile(file, []byte("loki-url: "+testURL+"\nloki-batchwait: 1s\n"), 0o600)
	tests := []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"--config", file}, nil, "loki-batchwait"},
		{[]string{"--loki-url", testURL}, []string{"LOGFERRY_NO_SUCH=1"}, "LOGFERRY_NO_SUCH"},
		{[]string{"--loki-url", testURL, "--loki-timeout", "x"}, nil, "loki-timeout"},
		{[]string{"--loki-url", testURL, "--poll-interval", "0s"}, nil, "poll-interval"},
		{[]string{}, nil, "loki-url"},
		{[]string{"--loki-url", testURL, "--log-level", "loud"}, nil, "log-level"},
		{[]string{"--loki-url", testURL, "--fanotify", "yes"}, nil, "fanotify"},
	}
	for _, tt := range tests {
		_, err := LoadConfig(tt.args, tt.env, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v %v: error %v does not name %s", tt.args, tt.env, err, tt.want)
		}
	}
	if _, err := LoadConfig([]string{"--no-such-flag"}, nil, io.Discard); err == nil {
		t.Error("an unknown flag was accepted")
	}
}

func TestDrainTimeout(t *testing.T) {
	c, err := LoadConfig([]string{"--loki-url", testURL, "--drain-timeout", "30s"}, nil, io.Discard)
	if err != nil || c.DrainTimeout != 30*time.Second {
		t.Fatalf("drain-timeout 30s: %v, %v", c.DrainTimeout, err)
	}
	if c, err = LoadConfig([]string{"--loki-url", testURL}, nil, io.Discard); err != nil || c.DrainTimeout != 5*time.Minute {
		t.Fatalf("default drain-timeout: %v, %v", c.DrainTimeout, err)
	}
	_, err = LoadConfig([]string{"--loki-url", testURL}, []string{"LOGFERRY_DRAIN_TIMEOUT=soon"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "drain-timeout") {
		t.Fatalf("bad drain-timeout: %v", err)
	}
}

func TestOverflowSettings(t *testing.T) {
	c, err := LoadConfig([]string{"--loki-url", testURL, "--state-dir", "/st"}, nil, io.Discard)
	if err != nil || c.Overflow.Overflow != spool.OverflowBlock || c.Overflow.Spool.Dir != "/st/spool" {
		t.Fatalf("defaults: %+v, %v", c.Overflow, err)
	}
	c, err = LoadConfig([]string{"--loki-url", testURL, "--overflow", "spool", "--spool-max-size", "32m"},
		[]string{"LOGFERRY_SPOOL_DIR=/sp"}, io.Discard)
	if err != nil || c.Overflow.Overflow != spool.OverflowSpool || c.Overflow.Spool.Dir != "/sp" || c.Overflow.Spool.MaxBytes != 32<<20 {
		t.Fatalf("spool: %+v, %v", c.Overflow, err)
	}
	if o, _, err := c.ContainerOptions(nil); err != nil || o.Loki.Retries != 10 {
		t.Fatalf("spool keeps loki-retries: %d, %v", o.Loki.Retries, err)
	}
	c.Overflow.Overflow = spool.OverflowBlock
	if o, _, err := c.ContainerOptions(nil); err != nil || o.Loki.Retries != 0 {
		t.Fatalf("block retries until delivered: loki-retries %d, %v", o.Loki.Retries, err)
	}
	_, err = LoadConfig([]string{"--loki-url", testURL, "--overflow", "later"}, nil, io.Discard)
	if !errors.Is(err, ErrConfig) || !strings.HasPrefix(err.Error(), "overflow: ") {
		t.Fatalf("bad overflow: %v", err)
	}
}
