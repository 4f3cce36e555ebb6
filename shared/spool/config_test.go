package spool

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	good := DefaultConfig()
	good.Dir = "/var/lib/logferry/spool"
	if err := good.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	cases := []struct {
		key    string
		change func(*Config)
	}{
		{"spool-dir", func(c *Config) { c.Dir = "" }},
		{"spool-segment-size", func(c *Config) { c.SegmentBytes = MinSegmentBytes - 1 }},
		{"spool-max-size", func(c *Config) { c.MaxBytes = 2*c.SegmentBytes - 1 }},
		{"spool-fsync", func(c *Config) { c.Fsync = "sometimes" }},
		{"spool-fsync", func(c *Config) { c.FsyncInterval = 0 }},
		{"spool-full-policy", func(c *Config) { c.Full = "drop-newest" }},
	}
	for _, c := range cases {
		cfg := good
		c.change(&cfg)
		err := cfg.Validate()
		if !errors.Is(err, ErrInvalidConfig) || !strings.HasPrefix(err.Error(), c.key+":") {
			t.Errorf("%s: got %v", c.key, err)
		}
	}
	// An interval is not needed by the other policies.
	never := good
	never.Fsync, never.FsyncInterval = FsyncNever, 0
	if err := never.Validate(); err != nil {
		t.Errorf("never without an interval: %v", err)
	}
}

func TestParseFsync(t *testing.T) {
	cases := []struct {
		in     string
		policy FsyncPolicy
		every  time.Duration
		ok     bool
	}{
		{"always", FsyncAlways, 0, true},
		{"never", FsyncNever, 0, true},
		{"interval", FsyncInterval, DefaultFsyncInterval, true},
		{"250ms", FsyncInterval, 250 * time.Millisecond, true},
		{"0s", "", 0, false},
		{"-1s", "", 0, false},
		{"", "", 0, false},
		{"Always", "", 0, false},
	}
	for _, c := range cases {
		p, d, err := ParseFsync(c.in)
		if (err == nil) != c.ok || p != c.policy || d != c.every {
			t.Errorf("ParseFsync(%q) = %q, %s, %v", c.in, p, d, err)
		}
		if err != nil && !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("ParseFsync(%q): %v does not wrap ErrInvalidConfig", c.in, err)
		}
	}
}

func TestParseFullPolicy(t *testing.T) {
	for in, want := range map[string]FullPolicy{"drop-oldest": DropOldest, "refuse": Refuse, "drop": "", "": ""} {
		got, err := ParseFullPolicy(in)
		if got != want || (err == nil) != (want != "") {
			t.Errorf("ParseFullPolicy(%q) = %q, %v", in, got, err)
		}
	}
}
