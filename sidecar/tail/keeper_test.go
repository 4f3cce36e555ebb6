package tail

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// needFanotify skips a test that needs the keeper when this process may
// not use fanotify (not root: CAP_SYS_ADMIN; not Linux).
func needFanotify(t *testing.T) {
	t.Helper()
	n, err := newCloseNotifier()
	if err != nil {
		t.Skipf("fanotify unavailable (needs Linux and CAP_SYS_ADMIN, e.g. root): %v", err)
	}
	n.close()
}

// The tailer is blocked in its callback, with no Watcher running: no thread
// of it runs while the log rotates ten times with max-file=3, so that the
// files it had not opened are created, rotated and deleted while it is not
// scheduled. Pinning cannot hold them then; the keeper's fanotify events
// do, and every line arrives exactly once, in order. Without fanotify the
// same run loses files (the control case), which shows that the test
// exercises the loss.
func TestKeeperHoldsFilesRotatedWhileNotScheduled(t *testing.T) {
	needFanotify(t)
	for _, tc := range []struct {
		name                    string
		maxFiles                int
		compress, deferCompress bool
		noFanotify              bool // control: lines are lost
	}{
		{name: "max-file=3", maxFiles: 3},
		{name: "compress", maxFiles: 3, compress: true},
		{name: "compression pending", maxFiles: 3, compress: true, deferCompress: true},
		{name: "max-file=1", maxFiles: 1},
		{name: "without fanotify", maxFiles: 3, noFanotify: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMetrics(nil)
			w, err := NewWatcher(nil, WatcherConfig{PollInterval: time.Hour, Resync: time.Hour, Fanotify: map[bool]FanotifyMode{true: FanotifyOff}[tc.noFanotify]}, m)
			if err != nil {
				t.Fatal(err)
			}
			dw := newDockerWriter(t, t.TempDir())
			dw.maxSize, dw.maxFiles, dw.compress, dw.deferCompress = 4096, tc.maxFiles, tc.compress, tc.deferCompress
			gate := make(chan struct{})
			r := startTailer(t, Config{Path: dw.path}, w, m, gate)
			n := 0
			dw.line("stdout", numbered(n, 20))
			n++
			w.wake(true)
			waitFor(t, "the tailer to block", func() bool { return r.entered.Load() == 1 })
			// Something dockerd also writes in the directory: not kept.
			cfg := filepath.Join(filepath.Dir(dw.path), "config.v2.json")
			for i := range 3 {
				if err := os.WriteFile(cfg, []byte(fmt.Sprint(i)), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			for rot := dw.rotations; dw.rotations < rot+10 || dw.size < 1000; n++ {
				dw.line("stdout", numbered(n, 20))
			}
			if !tc.noFanotify {
				// Every rotated file is held, and nothing else.
				l := keptOf(t, w, dw.path)
				if got := l.count(); got != 10 {
					t.Errorf("%d files kept after 10 rotations", got)
				}
			}
			close(gate)
			gs := r.finish()
			if tc.noFanotify {
				if len(gs) >= n {
					t.Fatalf("%d of %d lines without fanotify: the files were not lost, the test proves nothing", len(gs), n)
				}
				return
			}
			if len(gs) != n {
				t.Fatalf("%d lines, want %d (first %+v, last %+v)", len(gs), n, gs[0], last(gs))
			}
			checkSeq(t, gs, 0, 20)
			for _, reason := range []string{reasonKeepLimit, reasonSkipped, reasonQueueOverflow} {
				if got := counter(m.rotatedUnread.WithLabelValues(reason)); got != 0 {
					t.Errorf("rotated unread (%s): %v", reason, got)
				}
			}
			if counter(m.keptTaken) == 0 {
				t.Error("no file was taken from the keeper")
			}
			if got := counter(m.rotations); got != 10 {
				t.Errorf("rotations followed: %v, want 10", got)
			}
			// The Tailer is done: its files are released, and the
			// fanotify group with the last of them.
			w.keepMu.Lock()
			defer w.keepMu.Unlock()
			if w.keeper != nil {
				t.Error("the keeper outlived its last tailer")
			}
		})
	}
}

// Slower rotations, as a tailer that keeps up sees them, while the Watcher
// runs: pinning and the keeper both hold each file; none is read twice.
func TestKeeperWithPinning(t *testing.T) {
	needFanotify(t)
	for _, compress := range []bool{false, true} {
		t.Run(fmt.Sprint("compress=", compress), func(t *testing.T) {
			m := NewMetrics(nil)
			w := startWatcher(t, WatcherConfig{}, m)
			dw := newDockerWriter(t, t.TempDir())
			dw.maxSize, dw.maxFiles, dw.compress = 4096, 3, compress
			r := startTailer(t, Config{Path: dw.path}, w, m, nil)
			r.waitIdle(0)
			n := 0
			for n < 1500 {
				start := n
				for ; n < start+50; n++ {
					dw.line("stdout", numbered(n, 20))
				}
				checkSeq(t, r.expect(n-start), start, 20)
			}
			if rest := r.finish(); len(rest) != 0 {
				t.Fatalf("%d lines more after Finish: read twice", len(rest))
			}
			for _, reason := range []string{reasonKeepLimit, reasonSkipped, reasonQueueOverflow} {
				if got := counter(m.rotatedUnread.WithLabelValues(reason)); got != 0 {
					t.Errorf("rotated unread (%s): %v", reason, got)
				}
			}
		})
	}
}

// Past its bound the keeper lets the oldest files go, counted; releasing
// closes what it holds.
func TestKeeperBound(t *testing.T) {
	needFanotify(t)
	m := NewMetrics(nil)
	w, err := NewWatcher(nil, WatcherConfig{}, m)
	if err != nil {
		t.Fatal(err)
	}
	dw := newDockerWriter(t, t.TempDir())
	dw.maxSize, dw.maxFiles = 4096, 3
	l := w.keep(dw.path, 3*5000, nil) // files of 4096 bytes and one line
	if l == nil {
		t.Fatal("no keeper")
	}
	for dw.rotations < 6 {
		dw.line("stdout", numbered(dw.seq, 20))
	}
	if got := l.count(); got != 3 {
		t.Errorf("%d files kept, want 3", got)
	}
	if got := counter(m.rotatedUnread.WithLabelValues(reasonKeepLimit)); got != 3 {
		t.Errorf("let go: %v, want 3", got)
	}
	// The kept files are the newest three, oldest first.
	kept := l.after(&source{}, true)
	for i, s := range kept {
		b := make([]byte, 20)
		if _, err := s.f.ReadAt(b, 0); err != nil {
			t.Fatal(err)
		}
		s.close()
		if i > 0 && kept[i-1].ino == s.ino {
			t.Errorf("file %d twice", i)
		}
	}
	if len(kept) != 3 {
		t.Errorf("after: %d files", len(kept))
	}
	w.unkeep(l)
	if w.keeper != nil {
		t.Error("keeper not closed with its last log")
	}
}

func TestKeptLogIsLogFile(t *testing.T) {
	l := &keptLog{base: "abc-json.log"}
	for name, want := range map[string]bool{
		"abc-json.log": true, "abc-json.log.1": true, "abc-json.log.12": true,
		"abc-json.log.1.gz": false, "abc-json.log.01": false, "abc-json.log.": false,
		"abc-json.log.0": false, "config.v2.json": false, "hostconfig.json": false, "xabc-json.log": false,
	} {
		if got := l.isLogFile(name); got != want {
			t.Errorf("isLogFile(%q) = %v", name, got)
		}
	}
}

// keptOf returns the keeper's record of path's log, after reading the
// kernel's queue.
func keptOf(t *testing.T, w *Watcher, path string) *keptLog {
	t.Helper()
	w.keepMu.Lock()
	k := w.keeper
	w.keepMu.Unlock()
	if k == nil {
		t.Fatal("no keeper")
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	d := k.dirs[filepath.Dir(path)]
	if d == nil || d.logs[filepath.Base(path)] == nil {
		t.Fatal("the log is not kept")
	}
	return d.logs[filepath.Base(path)]
}

// count reads the kernel's queue and returns how many files l holds.
func (l *keptLog) count() int {
	l.k.mu.Lock()
	defer l.k.mu.Unlock()
	l.k.drainLocked()
	return len(l.files)
}

// fanotify=on refuses to start where it cannot be used; auto says which
// is in force in the gauge; an unknown mode is refused.
func TestWatcherFanotifySetting(t *testing.T) {
	n, probeErr := newCloseNotifier()
	if probeErr == nil {
		n.close()
	}
	m := NewMetrics(nil)
	_, err := NewWatcher(nil, WatcherConfig{Fanotify: FanotifyOn}, m)
	if (err == nil) != (probeErr == nil) {
		t.Fatalf("required: %v, with fanotify available: %v", err, probeErr == nil)
	}
	m = NewMetrics(nil)
	if _, err := NewWatcher(nil, WatcherConfig{}, m); err != nil {
		t.Fatal(err)
	}
	if got, want := counter(m.fanotify), map[bool]float64{true: 1, false: 0}[probeErr == nil]; got != want {
		t.Errorf("fanotify gauge %v, want %v", got, want)
	}
	m = NewMetrics(nil)
	w, err := NewWatcher(nil, WatcherConfig{Fanotify: FanotifyOff}, m)
	if err != nil {
		t.Fatal(err)
	}
	if counter(m.fanotify) != 0 || w.keep("/nonexistent/x-json.log", 1<<20, nil) != nil {
		t.Error("fanotify in force with FanotifyOff")
	}
	if _, err := NewWatcher(nil, WatcherConfig{Fanotify: "yes"}, m); err == nil {
		t.Error("fanotify mode \"yes\" was accepted")
	}
}

// Files closed before the keeper began (a Tailer that started from a saved
// position in an older file) are older than every file it holds: when the
// current file was deleted, such a file still listed comes next, not the
// keeper's (pinSet.keptFirst). The state is what chain.start leaves when a
// rotation makes its first open of a newer file fail: no pins, the current
// file deleted. Found in review; it failed before keptFirst.
func TestKeeperAfterFilesFromBeforeIt(t *testing.T) {
	for _, compress := range []bool{false, true} {
		t.Run(fmt.Sprint("compress=", compress), func(t *testing.T) { testKeeperAfterFilesFromBeforeIt(t, compress) })
	}
}

func testKeeperAfterFilesFromBeforeIt(t *testing.T, compress bool) {
	needFanotify(t)
	dw := newDockerWriter(t, t.TempDir())
	dw.maxSize, dw.maxFiles, dw.compress = 4096, 5, compress
	for dw.rotations < 4 { // .4 .3 .2 .1 live, all closed before the keeper
		dw.line("stdout", numbered(dw.seq, 20))
	}
	files, ok, err := listFiles(dw.path, nil)
	if err != nil || !ok || len(files) != 5 {
		t.Fatalf("listing: %v %v %d", err, ok, len(files))
	}
	src, _, _, err := openSource(files[0], 0) // the oldest, .4
	if err != nil {
		t.Fatal(err)
	}
	defer src.close()
	skippable := files[1] // .3: must be read right after .4
	m := NewMetrics(nil)
	w := manualWatcher(t, m)
	tl, err := New(Config{Path: dw.path}, w, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	ps := tl.pins
	ps.kept = w.keep(dw.path, 1<<30, nil)
	if ps.kept == nil {
		t.Fatal("no keeper")
	}
	defer w.unkeep(ps.kept)
	// What chain.start leaves when its first openSource of a newer file
	// failed.
	ps.start(src, nil)
	for dw.rotations < 5 { // .4 (src) deleted; the old live file closed: kept
		dw.line("stdout", numbered(dw.seq, 20))
	}
	if err := ps.pinNewer(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, p := range ps.pins {
			p.close()
		}
	}()
	if len(ps.pins) == 0 {
		t.Fatal("nothing pinned")
	}
	if p := ps.pins[0]; p.ino != skippable.ino {
		t.Errorf("first file after the deleted .4: inode %d (%s), want %d (the old .3, still on disk); %d pins",
			p.ino, p.path, skippable.ino, len(ps.pins))
	}
}

// The kernel's path for a closed file has symlinks resolved (and, in a
// container, may name dockerd's mount, not ours): the keeper finds the log
// by the file's name, so a containers directory reached through a symlink
// is kept too. Found in review; it kept nothing before.
func TestKeeperThroughSymlinkedDir(t *testing.T) {
	needFanotify(t)
	base := t.TempDir()
	dw := newDockerWriter(t, filepath.Join(base, "real"))
	dw.maxSize, dw.maxFiles = 4096, 3
	link := filepath.Join(base, "link")
	if err := os.Symlink(filepath.Join(base, "real"), link); err != nil {
		t.Fatal(err)
	}
	rel, _ := filepath.Rel(filepath.Join(base, "real"), dw.path)
	viaLink := filepath.Join(link, rel)
	m := NewMetrics(nil)
	w := manualWatcher(t, m)
	l := w.keep(viaLink, 1<<30, nil)
	if l == nil {
		t.Fatal("no keeper")
	}
	defer w.unkeep(l)
	for dw.rotations < 3 {
		dw.line("stdout", numbered(dw.seq, 20))
	}
	if got := l.count(); got != 3 {
		t.Errorf("%d files kept after 3 rotations through a symlinked dir, want 3 (gauge fanotify=%v)", got, counter(m.fanotify))
	}
}
