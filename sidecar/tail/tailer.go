package tail

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logferry/logferry/sidecar/positions"
)

// ErrRunTwice is returned by a second call to Run.
var ErrRunTwice = errors.New("tail: Run called twice")

// Tailer follows one container's json-file log. Create it with New, run it
// with Run; Position and Release may be called from other goroutines. Run's
// loop ties the parts that doc.go lists.
type Tailer struct {
	cfg    Config
	log    *slog.Logger
	w      *Watcher
	m      *Metrics
	finish chan struct{}
	fin    sync.Once
	ran    atomic.Bool

	book  *tokenBook
	files *logFiles
	pins  *pinSet
	chain *chain
	rd    *lineReader
	asm   *assembler

	// Run's state.
	src      *source // nil while waiting for the live file to appear
	sincePin int     // lines delivered since the last look for files to pin
	empty    int     // grid ticks in a row that found nothing new (Config.Tick)
	// unchecked is how many grid ticks in a row skipped check (see
	// gridCheckEvery).
	unchecked int
	timer     *time.Timer
	// beforeWait, a test hook, is called before Run waits for a change.
	beforeWait func()
}

// New returns a Tailer for cfg.Path. w wakes it on changes; with a nil w it
// polls every cfg.PollInterval. A nil m or log discards metrics or logs.
func New(cfg Config, w *Watcher, m *Metrics, log *slog.Logger) (*Tailer, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("container", cfg.Name, "path", cfg.Path)
	t := &Tailer{cfg: cfg, log: log, w: w, m: m, finish: make(chan struct{}), book: newTokenBook(),
		files: newLogFiles(cfg.Path, m, log), asm: newAssembler(cfg.MaxLineSize, m)}
	t.pins = newPinSet(t.files, cfg.MaxPinnedBytes, m, log)
	t.chain = &chain{cfg: &t.cfg, files: t.files, pins: t.pins, m: m, log: log}
	t.rd = &lineReader{size: cfg.ReadBuffer, maxRaw: cfg.MaxRawLine, files: t.files,
		line: t.line, skip: t.skip, pin: t.pins.pinNewer}
	return t, nil
}

// Finish tells Run that the container has stopped: Run reads what is left
// (the live file to its end, after any rotated file it still had to read),
// delivers an incomplete split line as Partial, and returns nil. It does not
// wait for Run.
func (t *Tailer) Finish() { t.fin.Do(func() { close(t.finish) }) }

// Position returns the durable position a token stands for; false when the
// token is unknown or was released.
func (t *Tailer) Position(token int64) (positions.Position, bool) { return t.book.position(token) }

// Release says that no token before this one will be passed to Position
// again, so that the identities of the files they came from can go.
func (t *Tailer) Release(token int64) { t.book.release(token) }

// HoldRotated opens the files that rotations created since the Tailer last
// looked, so that further rotations cannot delete them unread (up to
// Config.MaxPinnedBytes). Run does this between reads, and its pinner
// whenever the Watcher sees a file created; an emit that blocks for long
// (backpressure) should also call it every few tens of milliseconds, for
// the rotations whose events the Watcher lost. It must be called from
// within emit, on Run's goroutine, and never elsewhere.
func (t *Tailer) HoldRotated() {
	if t.src != nil {
		t.pins.hold()
	}
}

// Run reads the log and calls emit for every complete line, in file order,
// from this goroutine; an error from emit stops Run and is returned. emit may
// block (that is backpressure: the file waits on disk) but should then also
// watch ctx.
//
// A file of the log that is not a regular file in the container's
// directory (a symlink there or at the directory, a FIFO...) is refused
// (ErrRefused): logged and counted once, never opened for reading or read,
// and passed over as if it were not there; a regular file that takes its
// place later is read.
//
// Run returns nil after Finish, once everything is read; ctx.Err() when ctx
// is done first; or an error reading the files. It may be called once.
func (t *Tailer) Run(ctx context.Context, emit func(Line) error) error {
	if !t.ran.CompareAndSwap(false, true) {
		return ErrRunTwice
	}
	t.asm.emit = emit
	var wake <-chan struct{}
	var sub *Subscription
	var tick <-chan time.Time
	stopPinner := func() {}
	if t.w != nil {
		// Before anything is looked at, so that no change goes unnoticed.
		sub = t.w.subscribe(filepath.Dir(t.cfg.Path), t.pins.signal)
		defer sub.Close()
		wake = sub.C()
		// Also before anything is opened: every file closed from now on is
		// held until this Tailer has moved past it.
		t.pins.kept = t.w.keep(t.cfg.Path, t.cfg.MaxPinnedBytes, t.files.refuse)
		stopPinner = t.pins.startPinner(ctx)
	} else {
		ticker := time.NewTicker(t.cfg.PollInterval)
		defer ticker.Stop()
		tick = ticker.C
	}
	t.m.tailers.Inc()
	defer t.m.tailers.Dec()
	defer func() {
		stopPinner()
		t.closeSource()
	}()

	src, expectNL, err := t.chain.start(ctx)
	if err != nil {
		return err
	}
	if src != nil {
		// From the live file's end: skip a line being written.
		t.rd.quietResync = t.cfg.Start == nil && !t.cfg.FromOldest
		if err := t.use(src, expectNL); err != nil {
			return err
		}
	}
	finishing := false
	// grown: the last pass read data from the live file and waits on the
	// grid since.
	grown := false
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !finishing {
			select {
			case <-t.finish:
				finishing = true
			default:
			}
		}
		var moved bool
		if grown && !finishing && t.unchecked < gridCheckEvery-1 {
			// The file grew a tick ago: Docker writes to the live file
			// until it rotates it, so a read finds the rotation (by
			// finding nothing) and the next tick looks.
			t.unchecked++
		} else {
			t.unchecked = 0
			var err error
			if moved, err = t.check(ctx); err != nil {
				return err
			}
		}
		grown = false
		progress, read := false, int64(0)
		if t.src != nil {
			from := t.src.off
			if progress, err = t.rd.readAll(ctx, t.src); err != nil {
				return err
			}
			read = t.src.off - from
		}
		// A live file was read to its end: a write since then has queued a
		// wake-up. A finished file, or a Finish, needs another look now.
		if moved || progress && (finishing || !t.src.live) {
			continue
		}
		if finishing {
			return t.finishUp()
		}
		grid := t.cfg.Tick > 0 && t.src != nil && t.src.live
		if grid && (progress && read < BusyBytes || !progress && t.empty > 0 && t.empty < IdleTicks) {
			// A steady log: the next read on the grid, without waiting
			// for the wake-ups that its writes queue meanwhile.
			if progress {
				t.empty = 1
			} else {
				t.empty++
			}
			grown = progress
			if sub != nil {
				sub.Quiet(true) // the grid sees writes and rotations now
			}
			if err := t.pause(ctx, t.cfg.Tick-time.Duration(time.Now().UnixNano()%int64(t.cfg.Tick))); err != nil {
				return err
			}
			drain(wake)
			continue
		}
		t.empty = 0
		if sub != nil {
			sub.Quiet(false)
		}
		if progress && t.cfg.ReadPause > 0 {
			// A busy log: let it grow before the next read, which follows
			// without waiting for the wake-ups that its writes queue.
			if err := t.pause(ctx, t.cfg.ReadPause); err != nil {
				return err
			}
			drain(wake)
			continue
		}
		if t.beforeWait != nil {
			t.beforeWait()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		case <-tick:
		case <-t.finish:
		}
	}
}

// gridCheckEvery bounds the grid ticks between two looks at the file
// system (check: the live path's Lstat, the fingerprint's pread) while the
// log grows on every tick: the look after a tick that found nothing is
// always taken, so a rotation or truncation is seen one tick later at
// most; a look every gridCheckEvery ticks whatever happens keeps rotated
// files pinned in time when the log grows on. At 25 containers on the grid
// the looks were a third of the sidecar's CPU (BENCHMARKS.md).
const gridCheckEvery = 5

// pause waits d, or less when Finish is called or ctx ends.
func (t *Tailer) pause(ctx context.Context, d time.Duration) error {
	if t.timer == nil {
		t.timer = time.NewTimer(d)
	} else {
		t.timer.Reset(d)
	}
	select {
	case <-ctx.Done():
		t.timer.Stop()
		return ctx.Err()
	case <-t.finish:
		t.timer.Stop()
	case <-t.timer.C:
	}
	return nil
}

// drain takes a pending wake-up: what it announced was read after it.
func drain(wake <-chan struct{}) {
	select {
	case <-wake:
	default:
	}
}

// closeSource closes every file Run holds; the pinner has stopped.
func (t *Tailer) closeSource() {
	if t.src != nil {
		t.src.close()
		t.src = nil
	}
	if kept := t.pins.close(); kept != nil {
		t.w.unkeep(kept)
	}
	t.rd.release()
}

// use makes src the file being read, in a new generation of tokens.
func (t *Tailer) use(src *source, expectNL bool) error {
	t.src = src
	t.pins.setAnchor(src)
	t.rd.reset(expectNL)
	return t.book.open(src, 0)
}

// check looks at the file system. It returns true when reading moved to
// another file or restarted the current one.
func (t *Tailer) check(ctx context.Context) (bool, error) {
	src := t.src
	if src == nil {
		src, expectNL, err := t.chain.openLive(false)
		if src == nil || err != nil {
			return false, err
		}
		return true, t.use(src, expectNL)
	}
	// One Lstat of the live path for both looks.
	var stat liveStat
	if err := t.pins.pinNewerStat(&stat); err != nil {
		return false, err
	}
	if src.live {
		switch state, err := t.chain.live(src, &stat); {
		case err != nil:
			return false, err
		case state == liveSame:
			return false, nil
		case state == liveTruncated:
			return true, t.restart()
		}
		// Replaced: ours is complete. Drain it, move on.
		if _, err := t.rd.readAll(ctx, t.src); err != nil {
			return false, err
		}
		src.live = false
	} else if !src.eof {
		return false, nil
	}
	return t.advance(ctx)
}

// restart reads the live file again from its start after it was truncated
// (json-file with max-file=1 in Docker before 23 truncates instead of
// recreating). Lines written between the last read and the truncation are
// lost; that is counted.
func (t *Tailer) restart() error {
	src := t.src
	t.m.truncations.Inc()
	t.log.Warn("log file truncated, reading it again from its start", "offset", src.off)
	if err := src.rewind(); err != nil {
		return err
	}
	if t.rd.torn() {
		t.skip(reasonTorn, "an unterminated line before a truncation")
	}
	if err := t.use(src, false); err != nil {
		return err
	}
	// A split line cut by the truncation will not be completed.
	return t.asm.flush(src.token(0))
}

// advance moves from the current file, which is complete, to the next
// newer one (see chain.next).
func (t *Tailer) advance(ctx context.Context) (bool, error) {
	old := t.src
	if err := old.refreshFingerprint(); err != nil {
		return false, err
	}
	t.book.setIdent(old.gen, old.ident)
	next, expectNL, err := t.chain.next(ctx, old)
	if next == nil || err != nil {
		return false, err
	}
	if t.rd.torn() {
		t.skip(reasonTorn, "an unterminated line at the end of a finished file")
	}
	t.chain.leave(old, next)
	// A split line may continue in the next file: the assembler keeps it.
	return true, t.use(next, expectNL)
}

// line handles one json-file line that occupies [start, end) of the file.
func (t *Tailer) line(raw []byte, start, end int64) error {
	src := t.src
	if err := t.asm.decode(raw); err != nil {
		t.m.skipped.WithLabelValues(reasonCorrupt).Inc()
		if !src.corruptSeen {
			src.corruptSeen = true
			t.log.Warn("skipping corrupt json-file lines", "file", src.path, "offset", start, "err", err)
		} else {
			t.log.Debug("skipping a corrupt json-file line", "file", src.path, "offset", start, "err", err)
		}
	} else {
		from, to, err := t.book.span(src, start, end)
		if err != nil {
			return err
		}
		if err := t.asm.add(from, to); err != nil {
			return err
		}
	}
	// A starved process reads slowly while the daemon rotates: hold on to
	// new files every few lines, not only between reads (one stat).
	if t.sincePin++; t.sincePin >= pinEveryLines {
		t.sincePin = 0
		return t.pins.pinNewer()
	}
	return nil
}

// finishUp ends a Finish: what is incomplete now stays so.
func (t *Tailer) finishUp() error {
	if t.src == nil {
		return nil
	}
	if t.rd.torn() {
		t.skip(reasonTorn, "an unterminated line at the end of a finished container's log")
	}
	return t.asm.flush(t.src.token(t.src.off - t.rd.held()))
}

func (t *Tailer) skip(reason, what string) {
	t.m.skipped.WithLabelValues(reason).Inc()
	file := ""
	if t.src != nil {
		file = t.src.path
	}
	t.log.Warn("skipping "+what, "file", file, "reason", reason)
}
