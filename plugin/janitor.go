package plugin

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// Retention bounds the local copies of containers whose stream has ended.
// The plugin never hears that a container was removed (the daemon calls
// StopLogging when it stops, and StartLogging again to serve docker logs of
// a stopped container), so copies are kept by age and total size instead:
// a copy whose last line is older than MaxAge is removed (unless the
// container asked for keep-file), and while all copies together take more
// than MaxTotal the oldest of the ended ones are removed. Each copy is
// itself bounded by max-size × max-file.
type Retention struct {
	MaxAge   time.Duration
	MaxTotal int64
	Every    time.Duration
}

// Defaults of Retention.
const (
	DefaultRetentionAge   = 7 * 24 * time.Hour
	DefaultRetentionTotal = 4 << 30
	DefaultRetentionEvery = 10 * time.Minute
	keepFileMarker        = "keep-file"
)

// markKeep records that a container asked for keep-file=true.
func (f *FileStore) markKeep(containerID string) error {
	dir := filepath.Join(f.dir, containerID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, keepFileMarker), nil, 0o600)
}

type copyInfo struct {
	id    string
	size  int64
	mtime time.Time
	keep  bool
}

// Clean applies r to the copies of containers for which active is false
// and returns how many copies it removed.
func (f *FileStore) Clean(r Retention, active func(containerID string) bool, now time.Time) (int, error) {
	entries, err := os.ReadDir(f.dir)
	if err != nil {
		return 0, err
	}
	var all []copyInfo
	var total int64
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		c := copyInfo{id: e.Name()}
		_ = filepath.WalkDir(filepath.Join(f.dir, c.id), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			if d.Name() == keepFileMarker {
				c.keep = true
				return nil
			}
			if info, err := d.Info(); err == nil {
				c.size += info.Size()
				if info.ModTime().After(c.mtime) {
					c.mtime = info.ModTime()
				}
			}
			return nil
		})
		total += c.size
		all = append(all, c)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].mtime.Before(all[j].mtime) })
	removed := 0
	var errs []error
	for _, c := range all {
		if active(c.id) {
			continue
		}
		old := r.MaxAge > 0 && now.Sub(c.mtime) > r.MaxAge && !c.keep
		over := r.MaxTotal > 0 && total > r.MaxTotal
		if !old && !over {
			continue
		}
		if err := f.store.Remove(c.id); err != nil {
			errs = append(errs, err)
			continue
		}
		total -= c.size
		removed++
	}
	return removed, errors.Join(errs...)
}

// runJanitor cleans the local copies now and every r.Every until ctx ends.
func (d *Driver) runJanitor(ctx context.Context, fs *FileStore, r Retention) {
	if r.Every <= 0 {
		r.Every = DefaultRetentionEvery
	}
	t := time.NewTicker(r.Every)
	defer t.Stop()
	for {
		n, err := fs.Clean(r, d.hasContainer, time.Now())
		if n > 0 || err != nil {
			d.log.Info("cleaned local copies of ended containers", "removed", n, "err", err)
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// hasContainer reports whether a stream of the container is registered.
func (d *Driver) hasContainer(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.streams {
		if s.info.ContainerID == id {
			return true
		}
	}
	return false
}

// StartJanitor starts the cleaning of local copies, owned by the Driver
// (it ends with Shutdown).
func (d *Driver) StartJanitor(r Retention) {
	fs, ok := d.store.(*FileStore)
	if !ok {
		return
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.runJanitor(d.ctx, fs, r)
	}()
}
