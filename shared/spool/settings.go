package spool

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/logferry/logferry/shared/logopts"
	"github.com/logferry/logferry/shared/loki"
)

// Overflow policies: what a binary does with entries Loki cannot take now
// (memory queue full, retries run out, shutdown).
const (
	// OverflowSpool writes them to a disk spool per endpoint, replayed in
	// order when Loki is back and after a restart.
	OverflowSpool = "spool"
	// OverflowDrop drops them and counts them by reason.
	OverflowDrop = "drop"
	// OverflowBlock (sidecar only) pauses reading files while the memory
	// queue is full: the lines wait in the json-file logs, no container
	// waits. Retries that run out and a shutdown still drop, counted, and
	// the positions do not cover what was dropped at a shutdown.
	OverflowBlock = "block"
)

// Settings are the overflow settings of a binary, under the keys of
// SettingKeys (the sidecar's flags; the plugin maps its environment onto
// them).
type Settings struct {
	Overflow string // overflow
	// Spool is every endpoint's spool configuration; its Dir (spool-dir)
	// is the base directory, under which each endpoint has its own (see
	// EndpointDir).
	Spool Config
}

// SettingKeys are the keys ParseSettings reads.
var SettingKeys = []string{"overflow", "spool-dir", "spool-max-size", "spool-fsync", "spool-full-policy"}

// ParseSettings reads the overflow settings. get returns a key's value ("":
// the default); name returns what the operator calls the key, for errors
// (the plugin's environment variable, the sidecar's flag). policies are the
// overflow policies the binary supports, its default first. defaultDir is
// spool-dir's default.
func ParseSettings(get, name func(key string) string, defaultDir string, policies ...string) (Settings, error) {
	s := Settings{Overflow: get("overflow"), Spool: DefaultConfig()}
	if s.Overflow == "" {
		s.Overflow = policies[0]
	}
	if !slices.Contains(policies, s.Overflow) {
		return s, fmt.Errorf("%s: %w: want %s, got %q", name("overflow"), ErrInvalidConfig, strings.Join(policies, " or "), s.Overflow)
	}
	s.Spool.Dir = get("spool-dir")
	if s.Spool.Dir == "" {
		s.Spool.Dir = defaultDir
	}
	dir, err := filepath.Abs(s.Spool.Dir)
	if err != nil {
		return s, fmt.Errorf("%s: %w: %v", name("spool-dir"), ErrInvalidConfig, err)
	}
	s.Spool.Dir = dir
	if v := get("spool-max-size"); v != "" {
		n, err := logopts.ParseSize(v)
		if err != nil || n <= 0 {
			return s, fmt.Errorf("%s: %w: want a size such as 1g, got %q", name("spool-max-size"), ErrInvalidConfig, v)
		}
		s.Spool.MaxBytes = n
	}
	if min := 2 * s.Spool.SegmentBytes; s.Spool.MaxBytes < min {
		return s, fmt.Errorf("%s: %w: want at least %dm (two segments), got %d bytes", name("spool-max-size"), ErrInvalidConfig, min>>20, s.Spool.MaxBytes)
	}
	if v := get("spool-fsync"); v != "" {
		policy, interval, err := ParseFsync(v)
		if err != nil {
			return s, fmt.Errorf("%s: %w: want always, never, interval or a duration such as 1s, got %q", name("spool-fsync"), ErrInvalidConfig, v)
		}
		s.Spool.Fsync, s.Spool.FsyncInterval = policy, interval
	}
	if v := get("spool-full-policy"); v != "" {
		p, err := ParseFullPolicy(v)
		if err != nil {
			return s, fmt.Errorf("%s: %w: want %s or %s, got %q", name("spool-full-policy"), ErrInvalidConfig, DropOldest, Refuse, v)
		}
		s.Spool.Full = p
	}
	if err := s.Spool.Validate(); err != nil {
		return s, err
	}
	return s, nil
}

// PoolOptions are the dispatcher options of s: with the spool policy, one
// spool per endpoint under s.Spool.Dir, its series registered with reg;
// otherwise none.
func (s Settings) PoolOptions(reg prometheus.Registerer, log *slog.Logger) []loki.Option {
	if s.Overflow != OverflowSpool {
		return nil
	}
	set := NewEndpointSpools(s.Spool.Dir, s.Spool, NewMetrics(reg), loki.NewSpoolMetrics(reg), log)
	return []loki.Option{loki.WithSpools(set)}
}

// ReplayLeftover starts replaying the spool that an earlier run left for the
// endpoint of cfg, even if nothing uses that endpoint now: a dispatcher is
// acquired and released at once, so the pool drains it, spool included,
// within its drain timeout. It does nothing unless s spools and that spool
// holds unacknowledged entries. The binaries call it for their default
// endpoint; spools of other endpoints replay when a container that uses
// them starts, because their directories hold no credentials to push with.
func (s Settings) ReplayLeftover(pool *loki.Pool, cfg loki.Config, log *slog.Logger) {
	if s.Overflow != OverflowSpool || cfg.URL == "" {
		return
	}
	dir := EndpointDir(s.Spool.Dir, cfg)
	unacked, err := Unacked(dir)
	if err != nil {
		log.Warn("looking for a spool left by an earlier run", "dir", dir, "err", err)
		return
	}
	if !unacked {
		return
	}
	d, err := pool.Acquire(cfg)
	if err != nil {
		log.Error("replaying a spool an earlier run left", "dir", dir, "err", err)
		return
	}
	log.Info("replaying the spool an earlier run left", "endpoint", cfg.Endpoint(), "dir", dir)
	pool.Release(d)
}
