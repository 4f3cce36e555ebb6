package tail

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/logferry/logferry/shared/dockerlog"
	"github.com/logferry/logferry/sidecar/positions"
)

// Defaults.
const (
	// DefaultMaxRawLine caps one json-file line (the JSON, not the text).
	// Docker splits text at 16 KiB, so a real line is at most ~100 KiB even
	// when every byte needs a \u escape; a longer one is garbage.
	DefaultMaxRawLine = 1 << 20
	// DefaultReadBuffer is the read size; it grows up to MaxRawLine.
	DefaultReadBuffer = 256 << 10
	// DefaultPollInterval is how often a Tailer without a Watcher, or a
	// Watcher for a directory fsnotify cannot watch, looks for new data.
	DefaultPollInterval = 500 * time.Millisecond
	// DefaultResync is how often a Watcher wakes every tailer even when
	// fsnotify works: a safety net for lost events.
	DefaultResync = 10 * time.Second
	// DefaultReadPause is how long a Tailer that found new data waits
	// before it reads again. dockerd writes one json-file line per
	// write(2), and every write is an inotify event: reading on each costs
	// a wake-up and two read(2)s per line, and a busy container then
	// out-writes its tailer. Pausing reads a busy log in large chunks, at
	// the price of this much latency.
	DefaultReadPause = 5 * time.Millisecond
	// SteadyTick is the grid the sidecar reads a steady log on
	// (Config.Tick): a container writing a line every few milliseconds
	// makes an inotify event per line, and reading on each costs a
	// wake-up and a look at the file system per line. A read that found
	// less than BusyBytes waits for the next multiple of SteadyTick of the
	// wall clock (every tailer of the process then wakes at the same
	// instant) and reads what came meanwhile. It adds at most this much
	// latency (the budget for p99 write -> queryable is the batch wait +
	// 250 ms).
	SteadyTick = 100 * time.Millisecond
	// BusyBytes is how much one round of reading must find for a log to
	// count as busy: read again after ReadPause, not on the grid. Well
	// above one long line (a 40 KiB line every second must not take a log
	// off the grid and put its watch back each time: measured, 20 watch
	// changes a second over 25 containers), and 2.5 MB/s on the grid.
	BusyBytes = 256 << 10
	// IdleTicks is how many grid ticks in a row may find nothing new
	// before the tailer waits for a change again (a log that fell quiet).
	IdleTicks = 20
	// DefaultMaxPinnedBytes bounds the rotated files one Tailer holds open
	// ahead of the one it reads (Config.MaxPinnedBytes).
	DefaultMaxPinnedBytes = 256 << 20
)

// ErrConfig is wrapped by every Validate error.
var ErrConfig = errors.New("invalid tail configuration")

// Config describes one container's json-file log.
type Config struct {
	// Path is the live log file, /var/lib/docker/containers/<id>/<id>-json.log.
	// Rotated files are <Path>.1, <Path>.2, ... or <Path>.N.gz. The directory
	// above Path's (the containers directory) is trusted and may be reached
	// through symlinks; Path's own directory and its files are read only
	// when they are a directory and regular files, not symlinks (see
	// ErrRefused). Whoever makes a Config checks that Path is the
	// container's, under the containers directory the operator chose.
	Path string
	// Name labels the container's metric series and log records
	// (default: the file's name without "-json.log").
	Name string
	// Start is where to resume: the file with this identity (the live file,
	// a rotated one, or a compressed one) at this offset. Nil starts at the
	// live file's beginning, or at its end with FromEnd.
	Start *positions.Position
	// FromEnd starts a tailer without Start at the end of the live file.
	FromEnd bool
	// FromOldest starts a tailer without Start at the beginning of the
	// oldest file there is (<Path>.N or <Path>.N.gz), so that a container
	// that rotated before its tailer began is read from its first line.
	FromOldest bool
	// MaxLineSize cuts a joined line (default dockerlog.DefaultMaxLine).
	MaxLineSize int
	// MaxRawLine skips json-file lines longer than this (default 1 MiB).
	MaxRawLine int
	// ReadBuffer is the size of one read (default 256 KiB).
	ReadBuffer int
	// PollInterval is used when the Tailer has no Watcher (default 500ms).
	PollInterval time.Duration
	// ReadPause is the wait after a read that found new data in the live
	// file before the next read (default DefaultReadPause; negative: none).
	ReadPause time.Duration
	// Tick, when positive, is the grid a steady live file is read on (see
	// SteadyTick, which the sidecar uses); 0: no grid, every read that
	// found data is followed by ReadPause.
	Tick time.Duration
	// MaxPinnedBytes bounds the disk space of the rotated files held open
	// ahead of the one being read, so that rotation does not delete them
	// unread (default 256 MiB; the sum of their sizes when opened).
	MaxPinnedBytes int64
}

func (c *Config) setDefaults() {
	if c.Name == "" {
		c.Name = strings.TrimSuffix(filepath.Base(c.Path), "-json.log")
	}
	if c.MaxLineSize == 0 {
		c.MaxLineSize = dockerlog.DefaultMaxLine
	}
	if c.MaxRawLine == 0 {
		c.MaxRawLine = DefaultMaxRawLine
	}
	if c.ReadBuffer == 0 {
		c.ReadBuffer = DefaultReadBuffer
	}
	c.ReadBuffer = min(c.ReadBuffer, c.MaxRawLine)
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.ReadPause == 0 {
		c.ReadPause = DefaultReadPause
	}
	if c.MaxPinnedBytes == 0 {
		c.MaxPinnedBytes = DefaultMaxPinnedBytes
	}
}

// Validate checks c after defaults were applied.
func (c *Config) Validate() error {
	switch {
	case c.Path == "":
		return fmt.Errorf("%w: Path is required", ErrConfig)
	case c.MaxLineSize < 0:
		return fmt.Errorf("%w: MaxLineSize %d is negative", ErrConfig, c.MaxLineSize)
	case c.MaxRawLine < 0 || c.MaxRawLine > 0 && c.MaxRawLine < 1024:
		return fmt.Errorf("%w: MaxRawLine %d is below 1024", ErrConfig, c.MaxRawLine)
	case c.ReadBuffer < 0 || c.ReadBuffer > 0 && c.ReadBuffer < 512:
		return fmt.Errorf("%w: ReadBuffer %d is below 512", ErrConfig, c.ReadBuffer)
	case c.PollInterval < 0 || c.PollInterval > 0 && c.PollInterval < time.Millisecond:
		return fmt.Errorf("%w: PollInterval %v is below 1ms", ErrConfig, c.PollInterval)
	case c.FromEnd && c.FromOldest:
		return fmt.Errorf("%w: FromEnd and FromOldest both set", ErrConfig)
	case c.Start != nil && c.Start.Offset < 0:
		return fmt.Errorf("%w: Start.Offset %d is negative", ErrConfig, c.Start.Offset)
	}
	return nil
}

// FanotifyMode is WatcherConfig.Fanotify: the sidecar's --fanotify.
type FanotifyMode string

// The fanotify modes.
const (
	FanotifyAuto FanotifyMode = "auto"
	FanotifyOn   FanotifyMode = "on"
	FanotifyOff  FanotifyMode = "off"
)

// WatcherConfig configures the Watcher.
type WatcherConfig struct {
	// PollInterval is how often tailers of a directory that fsnotify does
	// not watch are woken (default 500ms).
	PollInterval time.Duration
	// Resync is how often every tailer is woken anyway (default 10s).
	Resync time.Duration
	// PollOnly disables fsnotify (file systems without inotify).
	PollOnly bool
	// Fanotify says whether tailers hold rotated files through fanotify
	// (see keeper), which needs CAP_SYS_ADMIN: FanotifyAuto (the zero
	// value) when permitted, FanotifyOn or NewWatcher fails, FanotifyOff.
	Fanotify FanotifyMode
}

func (c *WatcherConfig) setDefaults() {
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.Resync == 0 {
		c.Resync = DefaultResync
	}
}

// Validate checks c after defaults were applied.
func (c *WatcherConfig) Validate() error {
	switch {
	case c.PollInterval < 0 || c.PollInterval > 0 && c.PollInterval < time.Millisecond:
		return fmt.Errorf("%w: PollInterval %v is below 1ms", ErrConfig, c.PollInterval)
	case c.Resync < 0 || c.Resync > 0 && c.Resync < time.Millisecond:
		return fmt.Errorf("%w: Resync %v is below 1ms", ErrConfig, c.Resync)
	}
	return nil
}
