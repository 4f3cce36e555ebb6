package tail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// eventBuffer is the fsnotify event channel's capacity. Every json-file
// line written is an inotify event; with an unbuffered channel each costs a
// goroutine hand-off, and a rotation's create event waits behind them.
const eventBuffer = 4096

// Watcher wakes tailers when something changes in their container's
// directory. There is one per process: one inotify instance and one watch
// per directory, however many tailers, instead of one per container.
// Directories are watched rather than files so that renames, removals and
// creations (rotation) are seen as well as writes.
//
// Where fsnotify is unavailable (no inotify instance left, a file system
// without it) or cannot watch a directory (watch limit reached), the
// directory is polled: its tailers are woken every PollInterval. Every
// tailer is also woken every Resync, against events the kernel dropped.
//
// When the process may use fanotify (CAP_SYS_ADMIN, Linux), the Watcher
// also owns the keeper: one fanotify group that holds every log file
// dockerd closes at a rotation until its tailer has moved past it.
type Watcher struct {
	log *slog.Logger
	cfg WatcherConfig
	m   *Metrics

	mu      sync.Mutex
	running bool
	fsw     *fsnotify.Watcher // nil when not running or unavailable
	dirs    map[string]*watchedDir

	// keepMu guards keeper, which holds rotated files for the tailers that
	// asked (nil while none does), and noKeeper: fanotify is unavailable.
	keepMu   sync.Mutex
	keeper   *keeper
	noKeeper bool
}

type watchedDir struct {
	subs    map[*Subscription]struct{}
	watched bool // an fsnotify watch is in place; otherwise the directory is polled
	// quiet counts the subscriptions that read on their own grid (Quiet);
	// while all of them do, the watch is removed (muted) so that the
	// daemon's writes wake no one. d.watched stays true meanwhile.
	quiet int
	muted bool
}

// Subscription is one tailer's interest in a directory.
type Subscription struct {
	w   *Watcher
	dir string
	c   chan struct{}
	// changed, when set, is called on the Watcher's goroutine, without
	// w.mu, when a file is created, renamed or removed in dir (a rotation).
	// It must only signal (see pinSet.signal): that goroutine wakes every
	// tailer, and the subscriber does its own I/O.
	changed func()
	quiet   bool // under w.mu
}

// Quiet says whether the subscriber reads the directory's file on its own
// schedule for now (a steady log read on a grid): while every subscriber
// of the directory is quiet, the directory's watch is removed, so that
// each write of the daemon (an inotify event) wakes neither the watcher
// nor the tailer, and the subscriber looks for rotations itself. Quiet
// false puts the watch back and wakes the subscribers (what was written
// meanwhile is then read).
func (s *Subscription) Quiet(q bool) {
	w := s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	d := w.dirs[s.dir]
	if d == nil || s.quiet == q {
		return
	}
	if _, ok := d.subs[s]; !ok {
		return
	}
	s.quiet = q
	if q {
		d.quiet++
	} else {
		d.quiet--
	}
	w.muteLocked(s.dir, d)
}

// muteLocked removes or puts back d's watch as its subscribers' quiet
// says. Called with w.mu held.
func (w *Watcher) muteLocked(dir string, d *watchedDir) {
	switch all := d.quiet > 0 && d.quiet == len(d.subs); {
	case all && !d.muted && d.watched && w.fsw != nil:
		if err := w.fsw.Remove(dir); err != nil && !errors.Is(err, fsnotify.ErrNonExistentWatch) {
			w.log.Debug("removing a directory watch", "dir", dir, "err", err)
			return
		}
		d.muted = true
		w.m.mutedDirs.Inc()
	case !all && d.muted:
		d.muted = false
		w.m.mutedDirs.Dec()
		if w.fsw != nil {
			d.watched = false // addWatchLocked puts it back, or falls back to polling
			w.m.watchedDirs.WithLabelValues("fsnotify").Dec()
			w.m.watchedDirs.WithLabelValues("poll").Inc()
			w.addWatchLocked(dir, d)
		}
		notifyAll(d)
	}
}

// C receives a value (capacity 1, never blocking the watcher) when the
// directory may have changed; several changes may arrive as one. It is never
// closed.
func (s *Subscription) C() <-chan struct{} { return s.c }

// NewWatcher returns a Watcher; it watches nothing until Run.
func NewWatcher(log *slog.Logger, cfg WatcherConfig, m *Metrics) (*Watcher, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	w := &Watcher{log: log, cfg: cfg, m: m, dirs: map[string]*watchedDir{}}
	switch cfg.Fanotify {
	case "", FanotifyAuto, FanotifyOn:
	case FanotifyOff:
		return w, nil
	default:
		return nil, fmt.Errorf("fanotify mode %q: want auto, on or off", cfg.Fanotify)
	}
	// Said once, at start: whether a log that rotates faster than this
	// process is scheduled can lose files.
	n, err := newCloseNotifier()
	switch {
	case err != nil && cfg.Fanotify == FanotifyOn:
		return nil, fmt.Errorf("holding rotated log files through fanotify (needs Linux and CAP_SYS_ADMIN): %w", err)
	case err != nil:
		w.noKeeper = true
		log.Warn("cannot hold rotated log files through fanotify (needs Linux and CAP_SYS_ADMIN); "+
			"a log that rotates faster than this process is scheduled may lose files", "err", err)
	default:
		if err := n.close(); err != nil {
			log.Debug("closing fanotify", "err", err)
		}
		m.fanotify.Set(1)
		log.Info("holding rotated log files through fanotify")
	}
	return w, nil
}

// Subscribe registers interest in dir. The caller must Close the
// subscription; the directory's watch goes when its last subscription does.
func (w *Watcher) Subscribe(dir string) *Subscription { return w.subscribe(dir, nil) }

// subscribe is Subscribe with a hook for files created, renamed or removed
// in dir (see Subscription.changed).
func (w *Watcher) subscribe(dir string, changed func()) *Subscription {
	dir = filepath.Clean(dir)
	s := &Subscription{w: w, dir: dir, c: make(chan struct{}, 1), changed: changed}
	w.mu.Lock()
	defer w.mu.Unlock()
	d := w.dirs[dir]
	if d == nil {
		d = &watchedDir{subs: map[*Subscription]struct{}{}}
		w.dirs[dir] = d
		w.m.watchedDirs.WithLabelValues("poll").Inc()
		w.addWatchLocked(dir, d)
	}
	d.subs[s] = struct{}{}
	w.muteLocked(dir, d) // a new subscriber is not quiet
	return s
}

// keep starts holding the files that rotations take from the log whose live
// file is path (see keeper), up to maxBytes; refuse (may be nil) is told of
// those that are not regular files. It returns nil when fanotify is
// disabled or unavailable (needs CAP_SYS_ADMIN; NewWatcher said so), or the
// log's directory is a symlink: then pinning alone holds rotated files. The
// caller calls unkeep.
func (w *Watcher) keep(path string, maxBytes int64, refuse func(path string, err error)) *keptLog {
	if w.cfg.Fanotify == FanotifyOff {
		return nil
	}
	w.keepMu.Lock()
	defer w.keepMu.Unlock()
	if w.noKeeper {
		return nil
	}
	if w.keeper == nil {
		n, err := newCloseNotifier()
		if err != nil {
			// Available at start, not now (out of descriptors?): this
			// Tailer pins alone; the next one tries again.
			w.log.Warn("cannot hold rotated log files through fanotify", "log", path, "err", err)
			return nil
		}
		w.keeper = newKeeper(n, w.m, w.log)
	}
	l := w.keeper.add(path, maxBytes, refuse)
	if l == nil && w.keeper.empty() {
		w.keeper.close()
		w.keeper = nil
	}
	return l
}

// drainKeeper empties fanotify's queue now and then: the other files
// dockerd writes in the directories (config.v2.json at each health check)
// queue events too, which would overflow it on a host where no log rotates.
func (w *Watcher) drainKeeper() {
	w.keepMu.Lock()
	defer w.keepMu.Unlock()
	if w.keeper != nil {
		w.keeper.drain()
	}
}

// unkeep releases what keep returned; the fanotify group goes with the last.
func (w *Watcher) unkeep(l *keptLog) {
	w.keepMu.Lock()
	defer w.keepMu.Unlock()
	if l.release() && w.keeper == l.k {
		w.keeper.close()
		w.keeper = nil
	}
}

// Close ends the subscription. It is idempotent.
func (s *Subscription) Close() {
	w := s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	d := w.dirs[s.dir]
	if d == nil {
		return
	}
	if _, ok := d.subs[s]; !ok {
		return
	}
	delete(d.subs, s)
	if s.quiet {
		s.quiet = false
		d.quiet--
	}
	if len(d.subs) > 0 {
		w.muteLocked(s.dir, d)
		return
	}
	if d.muted {
		d.muted = false
		w.m.mutedDirs.Dec()
	} else if d.watched && w.fsw != nil {
		// The kernel drops the watch itself when the directory is removed;
		// then fsnotify reports a watch it no longer has, which is fine.
		if err := w.fsw.Remove(s.dir); err != nil && !errors.Is(err, fsnotify.ErrNonExistentWatch) {
			w.log.Debug("removing a directory watch", "dir", s.dir, "err", err)
		}
	}
	w.setWatchedLocked(d, false)
	w.m.watchedDirs.WithLabelValues("poll").Dec()
	delete(w.dirs, s.dir)
}

// addWatchLocked tries to watch dir with fsnotify; on failure the directory
// stays polled.
func (w *Watcher) addWatchLocked(dir string, d *watchedDir) {
	if w.fsw == nil || d.watched {
		return
	}
	err := w.fsw.Add(dir)
	if err == nil {
		w.setWatchedLocked(d, true)
		return
	}
	reason := "error"
	switch {
	case errors.Is(err, syscall.ENOSPC):
		reason = "watch_limit" // fs.inotify.max_user_watches
	case errors.Is(err, syscall.ENOENT):
		reason = "no_directory"
	}
	w.m.pollFallbacks.WithLabelValues(reason).Inc()
	w.log.Warn("cannot watch a container directory, polling it", "dir", dir, "reason", reason, "err", err)
}

func (w *Watcher) setWatchedLocked(d *watchedDir, watched bool) {
	if d.watched == watched {
		return
	}
	d.watched = watched
	from, to := "poll", "fsnotify"
	if !watched {
		from, to = to, from
	}
	w.m.watchedDirs.WithLabelValues(from).Dec()
	w.m.watchedDirs.WithLabelValues(to).Inc()
}

// Stats returns how many directories have subscribers and how many of them
// fsnotify watches.
func (w *Watcher) Stats() (dirs, watched int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, d := range w.dirs {
		if d.watched {
			watched++
		}
	}
	return len(w.dirs), watched
}

// Run delivers wake-ups until ctx is done, then releases the inotify
// instance and returns nil. It returns an error only when it is already
// running. Subscriptions made before Run, or after it returned, are kept and
// watched by the next Run.
func (w *Watcher) Run(ctx context.Context) error {
	var fsw *fsnotify.Watcher
	if !w.cfg.PollOnly {
		var err error
		if fsw, err = fsnotify.NewBufferedWatcher(eventBuffer); err != nil {
			// Typically fs.inotify.max_user_instances reached.
			w.m.pollFallbacks.WithLabelValues("no_fsnotify").Inc()
			w.log.Warn("fsnotify unavailable, polling every container directory", "interval", w.cfg.PollInterval, "err", err)
			fsw = nil
		}
	}
	w.mu.Lock()
	if w.running {
		w.mu.Unlock()
		if fsw != nil {
			fsw.Close()
		}
		return errors.New("tail: Watcher.Run called twice")
	}
	w.running, w.fsw = true, fsw
	for dir, d := range w.dirs {
		w.addWatchLocked(dir, d)
		// What changed before the watch existed is seen now.
		notifyAll(d)
	}
	w.mu.Unlock()

	defer func() {
		w.mu.Lock()
		w.running, w.fsw = false, nil
		for _, d := range w.dirs {
			if d.muted {
				d.muted = false
				w.m.mutedDirs.Dec()
			}
			w.setWatchedLocked(d, false)
		}
		w.mu.Unlock()
		if fsw != nil {
			fsw.Close()
		}
	}()

	var events <-chan fsnotify.Event
	var errs <-chan error
	if fsw != nil {
		events, errs = fsw.Events, fsw.Errors
	}
	poll := time.NewTicker(w.cfg.PollInterval)
	defer poll.Stop()
	resync := time.NewTicker(w.cfg.Resync)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			for _, sub := range w.event(ev) {
				sub.changed()
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				w.log.Warn("fsnotify queue overflowed, waking every tailer")
			} else {
				w.log.Warn("fsnotify error, waking every tailer", "err", err)
			}
			w.wake(true)
		case <-poll.C:
			w.wake(false)
		case <-resync.C:
			w.retryWatches()
			w.drainKeeper()
			w.wake(true)
		}
	}
}

// event wakes the directory's tailers and returns the subscriptions whose
// hook the event calls for (a file created, renamed or removed).
func (w *Watcher) event(ev fsnotify.Event) []*Subscription {
	var hooks []*Subscription
	w.mu.Lock()
	defer w.mu.Unlock()
	if d := w.dirs[filepath.Dir(ev.Name)]; d != nil {
		notifyAll(d)
		if ev.Has(fsnotify.Create) || ev.Has(fsnotify.Rename) || ev.Has(fsnotify.Remove) {
			for s := range d.subs {
				if s.changed != nil {
					hooks = append(hooks, s)
				}
			}
		}
	}
	if d := w.dirs[ev.Name]; d != nil {
		if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
			w.setWatchedLocked(d, false)
		}
		notifyAll(d)
	}
	return hooks
}

func (w *Watcher) wake(all bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, d := range w.dirs {
		if all || !d.watched {
			notifyAll(d)
		}
	}
}

// retryWatches tries again to watch polled directories: the watch limit may
// have been raised or the directory created since.
func (w *Watcher) retryWatches() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fsw == nil {
		return
	}
	for dir, d := range w.dirs {
		if !d.watched {
			if err := w.fsw.Add(dir); err == nil {
				w.setWatchedLocked(d, true)
				notifyAll(d)
				w.log.Info("watching a container directory again", "dir", dir)
			}
		}
	}
}

func notifyAll(d *watchedDir) {
	for s := range d.subs {
		select {
		case s.c <- struct{}{}:
		default:
		}
	}
}
