package tail

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/logferry/logferry/sidecar/positions"
)

// closeNotifier reports the files closed after writing in marked
// directories, each with a descriptor the kernel opened for it when it was
// closed (fanotify on Linux). Its methods are called under keeper.mu.
type closeNotifier interface {
	// mark and unmark start and stop reporting closes in dir. mark fails
	// when dir itself is a symlink (what is above it is followed).
	mark(dir string) error
	unmark(dir string) error
	// read passes the files closed since the last call to closed, in close
	// order, without blocking (neither on the queue nor on opening a FIFO
	// for an event); closed owns f. overflow: the kernel dropped events
	// since the last call.
	read(closed func(f *os.File, path string)) (overflow bool, err error)
	close() error
}

// maxKeptFiles bounds the files one log's keptLog holds, besides its bytes.
const maxKeptFiles = 256

// keeper holds the container log files that dockerd closes at each
// rotation, through a closeNotifier, so that a rotation that deletes a file
// before any of this process's threads ran loses nothing: pinning
// (pinSet.pinNewer) needs a thread to run between a file's creation and its
// deletion, the kernel's reference does not. There is one per Watcher, made
// when the first Tailer asks for one and closed with the last.
type keeper struct {
	log *slog.Logger
	m   *Metrics

	mu   sync.Mutex
	n    closeNotifier
	dirs map[string]*keptDir
	// byBase finds a closed file's log by its name alone
	// (<container id>-json.log[.N], unique on the host): the kernel's path
	// for it has symlinks resolved and, in a container, may name dockerd's
	// mount rather than ours, so it need not start with the Tailer's path.
	byBase map[string]*keptLog
	logs   int
}

type keptDir struct {
	logs map[string]*keptLog // by the live file's base name
}

// keptLog is what one Tailer's log has kept: the files closed after
// writing, oldest first. Methods are safe for concurrent use.
type keptLog struct {
	k         *keeper
	dir, base string
	maxBytes  int64
	// refuse is told of a closed file of the log that is not a regular
	// file (nil: none is); called under keeper.mu.
	refuse   func(path string, err error)
	files    []keptFile // keeper.mu
	bytes    int64      // keeper.mu
	limited  bool       // keeper.mu: the bound was reached (warned once)
	released bool       // keeper.mu
}

// keptFile is one closed file; f is open on it.
type keptFile struct {
	f        *os.File
	path     string
	dev, ino uint64
	size     int64
	// taken: after handed it to the Tailer, which holds it too.
	taken bool
}

func newKeeper(n closeNotifier, m *Metrics, log *slog.Logger) *keeper {
	return &keeper{log: log, m: m, n: n, dirs: map[string]*keptDir{}, byBase: map[string]*keptLog{}}
}

// add starts keeping the files of the log whose live file is path. It
// returns nil when its directory cannot be marked. refuse, when not nil,
// is told of the log's files that are refused.
func (k *keeper) add(path string, maxBytes int64, refuse func(path string, err error)) *keptLog {
	dir, base := filepath.Split(path)
	dir = filepath.Clean(dir)
	k.mu.Lock()
	defer k.mu.Unlock()
	d := k.dirs[dir]
	if d == nil {
		if err := k.n.mark(dir); err != nil {
			k.log.Debug("cannot hold rotated files through fanotify", "dir", dir, "err", err)
			return nil
		}
		d = &keptDir{logs: map[string]*keptLog{}}
		k.dirs[dir] = d
	}
	if k.byBase[base] != nil {
		// Another Tailer of the same log (or of a log of the same name
		// elsewhere) keeps its files.
		if len(d.logs) == 0 {
			k.unmarkLocked(dir)
		}
		return nil
	}
	l := &keptLog{k: k, dir: dir, base: base, maxBytes: maxBytes, refuse: refuse}
	d.logs[base] = l
	k.byBase[base] = l
	k.logs++
	return l
}

func (k *keeper) empty() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.logs == 0
}

// release closes what l holds and stops keeping its log's files. It reports
// whether the keeper keeps nothing any more (its owner closes it then).
func (l *keptLog) release() (empty bool) {
	k := l.k
	k.mu.Lock()
	defer k.mu.Unlock()
	if l.released {
		return k.logs == 0
	}
	k.drainLocked()
	l.released = true
	l.dropLocked(len(l.files))
	k.logs--
	d := k.dirs[l.dir]
	delete(d.logs, l.base)
	delete(k.byBase, l.base)
	if len(d.logs) == 0 {
		k.unmarkLocked(l.dir)
	}
	return k.logs == 0
}

func (k *keeper) unmarkLocked(dir string) {
	if err := k.n.unmark(dir); err != nil {
		k.log.Debug("unmarking a container directory", "dir", dir, "err", err)
	}
	delete(k.dirs, dir)
}

// close releases the notifier, and with it the events still queued.
func (k *keeper) close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, d := range k.dirs {
		for _, l := range d.logs {
			l.dropLocked(len(l.files))
		}
	}
	k.dirs, k.byBase = map[string]*keptDir{}, map[string]*keptLog{}
	if err := k.n.close(); err != nil {
		k.log.Debug("closing fanotify", "err", err)
	}
}

func (k *keeper) drain() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.drainLocked()
}

// drainLocked moves the files closed since the last call from the kernel's
// queue to their logs.
func (k *keeper) drainLocked() {
	overflow, err := k.n.read(k.closedLocked)
	if err != nil {
		k.log.Warn("reading fanotify events", "err", err)
	}
	if overflow {
		k.m.rotatedUnread.WithLabelValues(reasonQueueOverflow).Inc()
		k.log.Warn("fanotify queue overflowed: rotated files may have been deleted unread")
	}
}

func (k *keeper) closedLocked(f *os.File, path string) {
	path = strings.TrimSuffix(path, " (deleted)")
	// <base>, or <base>.N: its log is found by one of the two names.
	name := filepath.Base(path)
	l := k.byBase[name]
	if i := strings.LastIndexByte(name, '.'); l == nil && i > 0 {
		l = k.byBase[name[:i]]
	}
	if l != nil && !l.isLogFile(name) {
		l = nil
	}
	if l == nil {
		f.Close() // config.v2.json, a .gz, a file of a log no Tailer follows...
		return
	}
	// The kernel opened what was closed, with nothing followed: only what
	// it is (fstat) can make it unfit.
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return
	}
	if err := checkRegular(path, fi.Mode()); err != nil {
		f.Close()
		if l.refuse != nil {
			l.refuse(path, err)
		}
		return
	}
	kf := keptFile{f: f, path: path, size: fi.Size()}
	kf.dev, kf.ino = fileID(fi)
	// The same file closed again (the live file at a container's stop, then
	// at a rotation after its restart): its latest close is its place. The
	// earlier entry holds the inode, so no other file can have it.
	if i := slices.IndexFunc(l.files, func(e keptFile) bool { return kf.ino != 0 && e.dev == kf.dev && e.ino == kf.ino }); i >= 0 {
		l.bytes -= l.files[i].size
		l.files[i].f.Close()
		l.files = slices.Delete(l.files, i, i+1)
	}
	l.files = append(l.files, kf)
	l.bytes += kf.size
	// Too far behind: give up the oldest, as pinning stops at its bound.
	// The Tailer finds its successor among the newer ones.
	n := 0
	for b := l.bytes; len(l.files)-n > 1 && (len(l.files)-n > maxKeptFiles || b > l.maxBytes); n++ {
		b -= l.files[n].size
	}
	if n > 0 {
		lost := 0
		for _, kf := range l.files[:n] {
			if !kf.taken {
				lost++
			}
		}
		if lost > 0 && !l.limited {
			l.limited = true
			k.log.Warn("too far behind the log: letting rotated files go unread",
				"log", filepath.Join(l.dir, l.base), "files", lost, "held_bytes", l.bytes, "max_pinned_bytes", l.maxBytes)
		}
		k.m.rotatedUnread.WithLabelValues(reasonKeepLimit).Add(float64(lost))
		l.dropLocked(n)
	}
}

// isLogFile reports whether name is the log's live file or a rotated one
// (<base>.N; not <base>.N.gz, a copy whose original is reported too).
func (l *keptLog) isLogFile(name string) bool {
	_, gz, ok := rotatedIndex(l.base, name)
	return ok && !gz
}

// dropLocked closes the n oldest files.
func (l *keptLog) dropLocked(n int) {
	for _, kf := range l.files[:n] {
		kf.f.Close()
		l.bytes -= kf.size
	}
	l.files = slices.Delete(l.files, 0, n)
	if len(l.files) == 0 {
		l.limited = false
	}
}

// indexLocked returns the index of the latest entry that is cur: the same
// inode (cur is open, so no other file has it) with content that agrees, or
// else the same content complete (cur is its compressed copy). -1 when cur
// was not closed since the keeper began, or was let go.
func (l *keptLog) indexLocked(cur *source) int {
	for i, kf := range slices.Backward(l.files) {
		if cur.ino != 0 && kf.dev == cur.dev && kf.ino == cur.ino {
			if cur.ident.FingerprintLen == 0 {
				return i
			}
			if p, err := kf.prefix(); err == nil && cur.ident.MatchesContent(p) {
				return i
			}
		}
	}
	if cur.ident.FingerprintLen == 0 {
		return -1
	}
	for i, kf := range slices.Backward(l.files) {
		p, err := kf.prefix()
		if err == nil && cur.ident.MatchesContent(p) &&
			(len(p) == cur.ident.FingerprintLen || cur.ident.FingerprintLen == positions.FingerprintSize) {
			return i
		}
	}
	return -1
}

// holds reports whether l has an entry for f, a file listed in the log's
// directory: the same inode, or for a compressed copy the same content.
func (l *keptLog) holds(f logFile) bool {
	k := l.k
	k.mu.Lock()
	defer k.mu.Unlock()
	if l.released {
		return false
	}
	k.drainLocked()
	var p []byte
	for _, kf := range l.files {
		if !f.gz {
			if f.sameFile(kf.dev, kf.ino) {
				return true
			}
			continue
		}
		if p == nil {
			var err error
			if p, err = f.prefix(); err != nil {
				return false
			}
		}
		if kp, err := kf.prefix(); err == nil && bytes.Equal(kp, p) {
			return true
		}
	}
	return false
}

func (kf keptFile) prefix() ([]byte, error) {
	return readPrefix(io.NewSectionReader(kf.f, 0, positions.FingerprintSize))
}

// after returns the files closed after cur, oldest first, each opened
// again for the caller to read and close: the files that rotations
// took from the log since cur. Without an entry for cur it returns nothing,
// or with orAll every file held: for a caller that knows cur was deleted,
// cur was then closed before the keeper began, or its entry went with
// every older one (passed, the bound), so every entry is newer. The
// entries stay until passed: the next call finds the newest returned.
func (l *keptLog) after(cur *source, orAll bool) []*source {
	k := l.k
	k.mu.Lock()
	defer k.mu.Unlock()
	if l.released {
		return nil
	}
	k.drainLocked()
	i := l.indexLocked(cur)
	if i < 0 && !orAll {
		return nil
	}
	if i < 0 {
		// Never hand a file out twice: whatever came before one handed
		// out already is held, or was read.
		for j, kf := range l.files {
			if kf.taken {
				i = j
			}
		}
	}
	var out []*source
	for j := i + 1; j < len(l.files); j++ {
		kf := &l.files[j]
		f, err := reopenFile(kf.f)
		if err != nil {
			// Out of descriptors: the next call tries again.
			k.log.Warn("cannot hold a rotated file", "file", kf.path, "err", err)
			break
		}
		s := &source{path: kf.path, f: f, r: f, dev: kf.dev, ino: kf.ino, size: kf.size}
		s.ident.Dev, s.ident.Inode = kf.dev, kf.ino
		if err := s.refreshFingerprint(); err != nil {
			k.log.Debug("reading a kept file", "file", kf.path, "err", err)
		}
		out = append(out, s)
		kf.taken = true
	}
	return out
}

// passed says that the Tailer has finished old and reads next: old's entry
// and older ones go, and entries between old and next, which it never
// took, were rotated away unread: counted. next's own entry stays, so that
// after(next) finds where it is.
func (l *keptLog) passed(old, next *source) {
	k := l.k
	k.mu.Lock()
	defer k.mu.Unlock()
	if l.released {
		return
	}
	k.drainLocked()
	if i := l.indexLocked(old); i >= 0 {
		l.dropLocked(i + 1)
	}
	i := l.indexLocked(next)
	if i <= 0 {
		return
	}
	k.m.rotatedUnread.WithLabelValues(reasonSkipped).Add(float64(i))
	k.log.Warn("rotated files were skipped unread", "log", filepath.Join(l.dir, l.base), "files", i, "at", next.path)
	l.dropLocked(i)
}
