package logstore

import (
	"errors"
	"fmt"
	"time"
)

// ErrInvalidConfig is wrapped by every configuration error.
var ErrInvalidConfig = errors.New("invalid local copy configuration")

// Config bounds one container's local copy. The field comments give the
// log-opt each field is read from; defaults follow Docker's json-file and
// local drivers as Grafana's Loki driver configures them.
type Config struct {
	// MaxSize (max-size) is the most bytes one file holds: a frame that
	// would take the current file past it goes to a new file, and a line
	// too long for any file is cut (Stats.TruncatedLines), so the copy
	// never takes more than MaxSize*MaxFile bytes.
	MaxSize int64
	// MaxFile (max-file) is how many files are kept, the current one
	// included.
	MaxFile int
}

// Defaults and limits.
const (
	DefaultMaxSize = 20 << 20
	DefaultMaxFile = 5
	// MinMaxSize keeps room for a useful line in a file: a frame's own
	// fields take some 30 bytes.
	MinMaxSize = 1 << 10
)

// DefaultConfig returns a Config with every default set.
func DefaultConfig() Config {
	return Config{MaxSize: DefaultMaxSize, MaxFile: DefaultMaxFile}
}

// Validate names the log-opt of the first bad field.
func (c Config) Validate() error {
	if c.MaxSize < MinMaxSize {
		return fmt.Errorf("max-size: %d bytes: must be at least %d: %w", c.MaxSize, MinMaxSize, ErrInvalidConfig)
	}
	if c.MaxFile < 1 {
		return fmt.Errorf("max-file: %d: must be at least 1: %w", c.MaxFile, ErrInvalidConfig)
	}
	return nil
}

// ReadConfig selects what Store.Read returns; it has the fields of the
// daemon's ReadLogs Config and their meaning in Docker's file drivers
// (moby daemon/logger/loggerutils/logfile.go), so the plugin's request type
// converts to it directly.
type ReadConfig struct {
	// Since and Until select frames by time; zero is unbounded. As in
	// Docker, Since only skips frames until the first one at or after it
	// (times need not be monotonic), and the first frame after Until ends
	// the stream, also when following.
	Since, Until time.Time
	// Tail is how many of the last lines to start with: negative means
	// every line kept, 0 none (docker logs --tail 0). It counts lines in
	// the files, before Since and Until are applied.
	Tail int
	// Follow keeps the stream open after the existing lines and sends
	// every line the container's Writer appends, until that Writer is
	// closed. With no Writer open, the stream ends after the existing lines.
	Follow bool
}
