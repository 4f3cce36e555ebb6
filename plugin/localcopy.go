package plugin

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/logferry/logferry/plugin/logstore"
	"github.com/logferry/logferry/shared/dockerlog"
	"github.com/logferry/logferry/shared/logopts"
)

// FileStore is the LocalStore on disk (package logstore), one directory per
// container under dir.
type FileStore struct {
	dir   string
	store *logstore.Store
	log   *slog.Logger
}

var _ LocalStore = (*FileStore)(nil)

// NewFileStore opens (creating) the local copies under dir.
func NewFileStore(dir string, log *slog.Logger) (*FileStore, error) {
	s, err := logstore.New(dir)
	if err != nil {
		return nil, err
	}
	return &FileStore{dir: dir, store: s, log: log}, nil
}

// Open starts or continues a container's copy.
func (f *FileStore) Open(containerID string, cfg logopts.FileConfig) (copyWriter, error) {
	w, err := f.store.Open(containerID, logstore.Config{MaxSize: cfg.MaxSize, MaxFile: cfg.MaxFile})
	if err != nil {
		return nil, err
	}
	if cfg.KeepFile {
		if err := f.markKeep(containerID); err != nil {
			w.Close()
			return nil, err
		}
	}
	return w, nil
}

// Read streams a container's copy as daemon frames.
func (f *FileStore) Read(ctx context.Context, containerID string, cfg ReadConfig) (io.ReadCloser, error) {
	return f.store.Read(ctx, containerID, logstore.ReadConfig{Since: cfg.Since, Until: cfg.Until, Tail: cfg.Tail, Follow: cfg.Follow})
}

var _ replayer = (*FileStore)(nil)

// Replay calls fn, in order, for the lines of a container's copy that come
// after the last line stamped exactly after (the last line Loki accepted),
// looking no further back than since. When no line has that stamp (after is
// 0, or the line was rotated away) every line from since on is replayed:
// duplicates rather than a loss.
func (f *FileStore) Replay(ctx context.Context, containerID string, since, after int64, fn func(source string, timeNano int64, line []byte)) error {
	marker := -1
	if after > 0 {
		i := 0
		err := f.scan(ctx, containerID, since, func(fr *dockerlog.Frame) {
			if fr.TimeNano == after {
				marker = i
			}
			i++
		})
		if err != nil {
			return err
		}
	}
	i := 0
	return f.scan(ctx, containerID, since, func(fr *dockerlog.Frame) {
		if i > marker {
			fn(fr.Source, fr.TimeNano, fr.Line)
		}
		i++
	})
}

func (f *FileStore) scan(ctx context.Context, containerID string, since int64, fn func(*dockerlog.Frame)) error {
	rc, err := f.store.Read(ctx, containerID, logstore.ReadConfig{Since: time.Unix(0, since), Tail: -1})
	if err != nil {
		return err
	}
	defer rc.Close()
	dec := dockerlog.NewFrameDecoder(rc, 0)
	var fr dockerlog.Frame
	for {
		err := dec.Decode(&fr)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		fn(&fr)
	}
}
