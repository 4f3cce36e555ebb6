package tail

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
)

// A container's directory is written by dockerd, but whoever can write
// there, or make the Engine name another path, must not make this process
// (root) read a host file and ship it. So every log file is opened without
// following a symlink, at the file or at the container directory, and is
// read only when the opened descriptor is a regular file; anything else is
// refused with an error that wraps one of these.
var (
	// ErrRefused is wrapped by every refusal (ErrSymlink, ErrNotRegular).
	ErrRefused = errors.New("log file refused")
	// ErrSymlink: the log file, or the container directory it is in, is a
	// symbolic link.
	ErrSymlink = fmt.Errorf("%w: a symbolic link", ErrRefused)
	// ErrNotRegular: the log file is a FIFO, a directory, a device, a
	// socket; or the container directory is not a directory.
	ErrNotRegular = fmt.Errorf("%w: not a regular file", ErrRefused)
)

// Reasons for refused log files (RefusalCounter).
const (
	RefusedSymlink    = "symlink"
	RefusedNotRegular = "not_regular"
)

// refusalReason returns the reason label of a refusal.
func refusalReason(err error) string {
	if errors.Is(err, ErrSymlink) {
		return RefusedSymlink
	}
	return RefusedNotRegular
}

// refusal is the error for path, found to be of type mode.
func refusal(path string, mode fs.FileMode) error {
	if mode&fs.ModeSymlink != 0 {
		return fmt.Errorf("opening %s: %w", path, ErrSymlink)
	}
	return fmt.Errorf("opening %s (%s): %w", path, describe(mode), ErrNotRegular)
}

// checkRegular refuses what is not a regular file. mode must come from the
// opened descriptor to decide (fstat); from the path (lstat) it only spares
// opening what would be refused anyway.
func checkRegular(path string, mode fs.FileMode) error {
	if mode.IsRegular() {
		return nil
	}
	return refusal(path, mode)
}

// dirRefusal is the error for path, whose directory dir is of type mode.
func dirRefusal(path, dir string, mode fs.FileMode) error {
	sentinel := ErrNotRegular
	if mode&fs.ModeSymlink != 0 {
		sentinel = ErrSymlink
	}
	return fmt.Errorf("opening %s: its directory %s is %s: %w", path, dir, describe(mode), sentinel)
}

func describe(mode fs.FileMode) string {
	switch {
	case mode&fs.ModeSymlink != 0:
		return "a symbolic link"
	case mode.IsDir():
		return "a directory"
	case mode&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case mode&fs.ModeSocket != 0:
		return "a socket"
	case mode&fs.ModeCharDevice != 0:
		return "a character device"
	case mode&fs.ModeDevice != 0:
		return "a block device"
	default:
		return "not a regular file"
	}
}

// maxRefusals bounds the refused files one log's logFiles remembers, to
// warn once about each; past it, it forgets them all and may warn again.
const maxRefusals = 64

// refuse logs and counts a refused file, once per path until a regular file
// is opened there (accepted). Every look at the log meets the file again:
// only the first says so. It is called from Run's goroutine, the pinner's
// and under keeper.mu: l.mu is taken last and nothing is called while it is
// held.
func (l *logFiles) refuse(path string, err error) {
	l.mu.Lock()
	_, seen := l.refused[path]
	if !seen {
		if len(l.refused) >= maxRefusals {
			clear(l.refused)
		}
		l.refused[path] = struct{}{}
	}
	l.mu.Unlock()
	if seen {
		return
	}
	reason := refusalReason(err)
	l.m.refused.WithLabelValues(reason).Inc()
	l.log.Warn("refusing to read a log file that is not a regular file in the container's directory",
		"container_id", strings.TrimSuffix(filepath.Base(l.path), "-json.log"), "file", path, "reason", reason, "err", err)
}

// accepted forgets that path was refused: a regular file is there now, and
// what takes its place next is told again.
func (l *logFiles) accepted(path string) {
	l.mu.Lock()
	delete(l.refused, path)
	l.mu.Unlock()
}
