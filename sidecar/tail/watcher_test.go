package tail

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(entries)
}

// 500 containers' tailers on one Watcher: one watch per directory while
// they run, none, and no file, goroutine or metric series, after.
func TestWatcher500Tailers(t *testing.T) {
	const n = 500
	m := NewMetrics(nil)
	w := startWatcher(t, WatcherConfig{}, m)
	root := t.TempDir()
	waitFor(t, "Run to start", func() bool { w.mu.Lock(); defer w.mu.Unlock(); return w.running })
	fdsBefore := openFDs(t)

	paths := make([]string, n)
	for i := range n {
		id := fmt.Sprintf("%064x", i)
		dir := filepath.Join(root, id)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		paths[i] = filepath.Join(dir, id+"-json.log")
		if err := os.WriteFile(paths[i], []byte(`{"log":"first\n","stream":"stdout","time":"2024-05-01T12:00:00Z"}`+"\n"), 0o640); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	lines := make(chan int, 2*n)
	tailers := make([]*Tailer, n)
	for i := range n {
		tl, err := New(Config{Path: paths[i]}, w, m, nil)
		if err != nil {
			t.Fatal(err)
		}
		tailers[i] = tl
		wg.Go(func() {
			err := tl.Run(ctx, func(Line) error { lines <- i; return nil })
			if err != nil && err != context.Canceled {
				t.Error(err)
			}
		})
	}
	for range n {
		<-lines
	}
	if dirs, watched := w.Stats(); dirs != n || watched != n {
		t.Errorf("while running: %d directories, %d watched; want %d", dirs, watched, n)
	}
	if got := testutil.ToFloat64(m.tailers); got != n {
		t.Errorf("tailers gauge %v", got)
	}
	// A write in every directory reaches its tailer through the one watcher.
	for i := range n {
		f, err := os.OpenFile(paths[i], os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(`{"log":"second\n","stream":"stdout","time":"2024-05-01T12:00:01Z"}` + "\n")
		f.Close()
	}
	seen := map[int]int{}
	timeout := time.After(20 * time.Second)
	for len(seen) < n {
		select {
		case i := <-lines:
			seen[i]++
		case <-timeout:
			t.Fatalf("second line reached %d of %d tailers", len(seen), n)
		}
	}

	// Half finish (container died), half are cancelled (shutdown).
	for i := range n / 2 {
		tailers[i].Finish()
	}
	waitFor(t, "finished tailers to return", func() bool { return testutil.ToFloat64(m.tailers) == n/2 })
	cancel()
	wg.Wait()

	if dirs, watched := w.Stats(); dirs != 0 || watched != 0 {
		t.Errorf("after: %d directories, %d watched", dirs, watched)
	}
	w.mu.Lock()
	if w.fsw != nil {
		if l := w.fsw.WatchList(); len(l) != 0 {
			t.Errorf("fsnotify still watches %d paths", len(l))
		}
	}
	w.mu.Unlock()
	for _, mode := range []string{"fsnotify", "poll"} {
		if got := testutil.ToFloat64(m.watchedDirs.WithLabelValues(mode)); got != 0 {
			t.Errorf("watched directories gauge %s = %v", mode, got)
		}
	}
	if fds := openFDs(t); fds != fdsBefore {
		t.Errorf("open files: %d before, %d after", fdsBefore, fds)
	}
	// goleak in TestMain checks the goroutines.
}

// A directory fsnotify cannot watch (here: not there yet) is polled, and
// watched once it can be.
func TestWatcherFallsBackToPolling(t *testing.T) {
	m := NewMetrics(nil)
	w := startWatcher(t, WatcherConfig{PollInterval: 5 * time.Millisecond, Resync: 50 * time.Millisecond}, m)
	dir := filepath.Join(t.TempDir(), "late")
	path := filepath.Join(dir, "late-json.log")
	r := startTailer(t, Config{Path: path}, w, m, nil)
	waitFor(t, "the fallback", func() bool {
		return testutil.ToFloat64(m.pollFallbacks.WithLabelValues("no_directory")) >= 1
	})
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	dw := &dockerWriter{t: t, path: path, maxFiles: 1, base: time.Now()}
	dw.open()
	defer dw.f.Close()
	dw.line("stdout", numbered(0, 0))
	checkSeq(t, r.expect(1), 0, 0)
	waitFor(t, "the directory to be watched", func() bool { _, watched := w.Stats(); return watched == 1 })
	dw.line("stdout", numbered(1, 0))
	checkSeq(t, r.expect(1), 1, 0)
}

func TestWatcherPollOnly(t *testing.T) {
	m := NewMetrics(nil)
	w := startWatcher(t, WatcherConfig{PollOnly: true, PollInterval: 5 * time.Millisecond}, m)
	dw := newDockerWriter(t, t.TempDir())
	r := startTailer(t, Config{Path: dw.path}, w, m, nil)
	for i := range 5 {
		dw.line("stdout", numbered(i, 0))
	}
	checkSeq(t, r.expect(5), 0, 0)
	if _, watched := w.Stats(); watched != 0 {
		t.Errorf("poll-only watcher watches %d directories", watched)
	}
	if got := testutil.ToFloat64(m.watchedDirs.WithLabelValues("poll")); got != 1 {
		t.Errorf("poll gauge %v", got)
	}
}

func TestWatcherRunTwice(t *testing.T) {
	w := startWatcher(t, WatcherConfig{}, nil)
	waitFor(t, "Run to start", func() bool { w.mu.Lock(); defer w.mu.Unlock(); return w.running })
	if err := w.Run(t.Context()); err == nil {
		t.Error("second Run accepted")
	}
}
