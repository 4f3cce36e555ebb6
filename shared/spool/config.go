package spool

import (
	"errors"
	"fmt"
	"time"
)

// ErrInvalidConfig is wrapped by every configuration error.
var ErrInvalidConfig = errors.New("invalid spool configuration")

// FsyncPolicy says when appended records are forced to stable storage.
// Whatever the policy, a record Append accepted survives the process being
// killed: it is in the kernel's page cache. The policy is about power loss
// and kernel crashes.
type FsyncPolicy string

// Fsync policies.
const (
	// FsyncAlways syncs before every Append returns: nothing Append accepted
	// is lost, at the cost of one fsync per call.
	FsyncAlways FsyncPolicy = "always"
	// FsyncInterval syncs the active segment every FsyncInterval when it
	// has new data: a power loss costs at most that long of spooled data.
	FsyncInterval FsyncPolicy = "interval"
	// FsyncNever leaves flushing to the kernel.
	FsyncNever FsyncPolicy = "never"
)

// FullPolicy says what Append does when the spool is at MaxBytes.
type FullPolicy string

// Full policies.
const (
	// DropOldest deletes the oldest segments until the new records fit and
	// counts the unacknowledged records they held as dropped, reason
	// ReasonSpoolFull. Recent logs are usually the ones wanted.
	DropOldest FullPolicy = "drop-oldest"
	// Refuse keeps what is spooled and makes Append return ErrFull; the
	// caller counts the entries it could not spool.
	Refuse FullPolicy = "refuse"
)

// Defaults.
const (
	// DefaultSegmentBytes is the size at which the active segment is closed
	// and a new one started. Segments are deleted whole, so this is how much
	// acknowledged data may linger and how much drop-oldest drops at once;
	// at 1 GiB it means 128 files, few enough for one directory listing and
	// one open file at a time, and at 1,000 lines/s of 200 bytes a segment
	// fills in about 40 s, so acknowledged data is freed promptly.
	DefaultSegmentBytes = 8 << 20
	// DefaultMaxBytes bounds all segments together. A five-minute Loki
	// outage at 1,000 lines/s of 200 bytes spools about 70 MiB; 1 GiB holds
	// over an hour of that, while staying a small part of the disk that
	// also holds /var/lib/docker.
	DefaultMaxBytes = 1 << 30
	// DefaultFsyncInterval bounds what a power loss can take to one second
	// of spooled data for one fsync per second at most.
	DefaultFsyncInterval = time.Second

	// MinSegmentBytes keeps segments from degenerating into a file per
	// record.
	MinSegmentBytes = 4 << 10
)

// Config is one spool's configuration. The keys named in comments are what
// Validate's errors call each field; the binaries map their settings
// (environment of the plugin, flags of the sidecar) onto them.
type Config struct {
	Dir           string        // spool-dir: the spool's own directory, created if missing
	SegmentBytes  int64         // spool-segment-size
	MaxBytes      int64         // spool-max-size: all segments together, at least 2 segments
	Fsync         FsyncPolicy   // spool-fsync
	FsyncInterval time.Duration // spool-fsync (with Fsync = interval)
	Full          FullPolicy    // spool-full-policy
}

// DefaultConfig returns a Config with every default set and no directory.
func DefaultConfig() Config {
	return Config{
		SegmentBytes:  DefaultSegmentBytes,
		MaxBytes:      DefaultMaxBytes,
		Fsync:         FsyncInterval,
		FsyncInterval: DefaultFsyncInterval,
		Full:          DropOldest,
	}
}

func configError(key, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %w", key, fmt.Sprintf(format, args...), ErrInvalidConfig)
}

// Validate checks every field and names the key of the first bad one.
func (c Config) Validate() error {
	if c.Dir == "" {
		return configError("spool-dir", "no directory given")
	}
	if c.SegmentBytes < MinSegmentBytes {
		return configError("spool-segment-size", "must be at least %d bytes, got %d", MinSegmentBytes, c.SegmentBytes)
	}
	if c.MaxBytes < 2*c.SegmentBytes {
		return configError("spool-max-size", "%d bytes is below two segments (spool-segment-size %d)", c.MaxBytes, c.SegmentBytes)
	}
	switch c.Fsync {
	case FsyncAlways, FsyncNever:
	case FsyncInterval:
		if c.FsyncInterval <= 0 {
			return configError("spool-fsync", "interval must be positive, got %s", c.FsyncInterval)
		}
	default:
		return configError("spool-fsync", "%q is not always, never, interval or a duration", c.Fsync)
	}
	switch c.Full {
	case DropOldest, Refuse:
	default:
		return configError("spool-full-policy", "%q is not %s or %s", c.Full, DropOldest, Refuse)
	}
	return nil
}

// ParseFsync reads a spool-fsync setting: "always", "never", "interval"
// (every DefaultFsyncInterval) or a duration such as "500ms" (interval, that
// often).
func ParseFsync(s string) (FsyncPolicy, time.Duration, error) {
	switch FsyncPolicy(s) {
	case FsyncAlways, FsyncNever:
		return FsyncPolicy(s), 0, nil
	case FsyncInterval:
		return FsyncInterval, DefaultFsyncInterval, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return "", 0, configError("spool-fsync", "%q is not always, never, interval or a duration", s)
	}
	if d <= 0 {
		return "", 0, configError("spool-fsync", "interval must be positive, got %s", d)
	}
	return FsyncInterval, d, nil
}

// ParseFullPolicy reads a spool-full-policy setting.
func ParseFullPolicy(s string) (FullPolicy, error) {
	switch FullPolicy(s) {
	case DropOldest, Refuse:
		return FullPolicy(s), nil
	}
	return "", configError("spool-full-policy", "%q is not %s or %s", s, DropOldest, Refuse)
}
