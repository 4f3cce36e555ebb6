package bench

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/logferry/logferry/internal/loggen"
	"github.com/logferry/logferry/plugin"
	"github.com/logferry/logferry/shared/dockerlog"
)

// ContainerID returns a 64-hex-digit container id derived from seed.
func ContainerID(seed string) string {
	sum := sha256.Sum256([]byte(seed))
	return hex.EncodeToString(sum[:])
}

// ContainerInfo is what the daemon sends with StartLogging for a container
// named name (with the leading /) and the log-opts opts.
func ContainerInfo(name string, opts map[string]string) plugin.Info {
	if opts == nil {
		opts = map[string]string{}
	}
	return plugin.Info{
		Config:             opts,
		ContainerID:        ContainerID(name),
		ContainerName:      name,
		ContainerImageName: "logferry-loggen:test",
		ContainerImageID:   "sha256:" + ContainerID("image"),
		ContainerCreated:   time.Now().UTC(),
		DaemonName:         "docker",
	}
}

// Frames are pre-encoded FIFO frames, as the daemon writes them.
type Frames struct {
	Buf       []byte // the frames, back to back
	Count     int64  // frames in Buf
	LineBytes int64  // bytes of the lines alone
}

// EncodeFrames encodes lines 1..cfg.Lines of the log generator's format
// (internal/loggen) as frames of source stdout or stderr, one nanosecond
// timestamp per line from start on, each line one microsecond after the
// previous.
func EncodeFrames(cfg loggen.Config, start time.Time) (Frames, error) {
	if err := cfg.Validate(); err != nil {
		return Frames{}, err
	}
	var fr Frames
	var line []byte
	var f dockerlog.Frame
	per := cfg.Size + 32
	fr.Buf = make([]byte, 0, int(cfg.Lines)*per)
	t0 := start.UnixNano()
	for seq := uint64(1); seq <= cfg.Lines; seq++ {
		var stream string
		stream, line = cfg.AppendLine(line[:0], seq)
		f = dockerlog.Frame{Source: stream, TimeNano: t0 + int64(seq)*1000, Line: line}
		fr.Buf = dockerlog.AppendFrame(fr.Buf, &f)
		fr.Count++
		fr.LineBytes += int64(len(line))
	}
	return fr, nil
}

// MakeFIFO creates a FIFO at path, as the daemon does for a container.
func MakeFIFO(path string) error {
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		return fmt.Errorf("mkfifo %s: %w", path, err)
	}
	return nil
}

// OpenWriter opens the daemon's (write) end of the FIFO. The plugin must
// have opened its read end already (StartLogging returned), or this blocks.
func OpenWriter(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY, 0)
}

// runDir makes a run's directory (see TempDir). done removes it, or when
// *keep is true by then, leaves it and stores its path in *kept.
func runDir(prefix string, keep *bool, kept *string) (dir string, done func(), err error) {
	if dir, err = TempDir(prefix); err != nil {
		return "", nil, err
	}
	return dir, func() {
		if *keep {
			*kept = dir
		} else {
			os.RemoveAll(dir)
		}
	}, nil
}

// runDirAndSink is runDir with a sink for the run: done closes the sink,
// then does runDir's done.
func runDirAndSink(prefix string, keep *bool, kept *string) (dir string, sink *Sink, done func(), err error) {
	dir, doneDir, err := runDir(prefix, keep, kept)
	if err != nil {
		return "", nil, nil, err
	}
	if sink, err = NewSink(); err != nil {
		doneDir()
		return "", nil, nil, err
	}
	return dir, sink, func() {
		sink.Close()
		doneDir()
	}, nil
}

// TempDir makes a directory short enough for a unix socket path inside it.
func TempDir(prefix string) (string, error) {
	base := os.TempDir()
	if len(base) > 40 {
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, prefix)
	if err != nil {
		return "", err
	}
	return filepath.Clean(dir), nil
}
