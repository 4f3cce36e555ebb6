package plugin

import (
	"context"
	"io"
	"log/slog"

	"github.com/logferry/logferry/plugin/logstore"
	"github.com/logferry/logferry/shared/logopts"
)

// FileStore is the LocalStore on disk (package logstore), one directory per
// container under dir.
type FileStore struct {
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
	return &FileStore{store: s, log: log}, nil
}

// Open starts or continues a container's copy.
func (f *FileStore) Open(containerID string, cfg logopts.FileConfig) (copyWriter, error) {
	return f.store.Open(containerID, logstore.Config{MaxSize: cfg.MaxSize, MaxFile: cfg.MaxFile})
}

// Read streams a container's copy as daemon frames.
func (f *FileStore) Read(ctx context.Context, containerID string, cfg ReadConfig) (io.ReadCloser, error) {
	return f.store.Read(ctx, containerID, logstore.ReadConfig{Since: cfg.Since, Until: cfg.Until, Tail: cfg.Tail, Follow: cfg.Follow})
}
