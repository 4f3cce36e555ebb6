// Package tail follows containers' json-file logs (<id>-json.log) through
// Docker's rotations, turning them into complete lines with acknowledgement
// tokens that map back to durable positions. It owns the host-wide Watcher
// that wakes every Tailer.
package tail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logferry/logferry/shared/dockerlog"
	"github.com/logferry/logferry/sidecar/positions"
)

// Tokens: gen<<offsetBits | offset, see Line.Token.
const (
	offsetBits = 40
	offsetMask = 1<<offsetBits - 1
	maxGen     = 1<<(63-offsetBits) - 1
	// maxKeptGens bounds the identities kept for tokens not yet released.
	maxKeptGens = 1024
)

// pinEveryLines is how many lines a Tailer delivers between two looks for
// files to hold open (pinNewer), besides one look per read.
const pinEveryLines = 128

// pinListAttempts is how many listings pinNewer takes, back to back, to get
// one that no rotation disturbed.
const pinListAttempts = 3

// maxTokenOffset is the largest offset a token of one generation holds; past
// it the same file continues in a new generation. A variable for tests.
var maxTokenOffset int64 = offsetMask

// Retries when a listing of the log files catches a rotation half done.
const (
	listAttempts = 4
	listRetry    = 10 * time.Millisecond
)

var (
	// ErrGenerationsExhausted is returned by Run after 2^23 files in one
	// run, when tokens can no longer grow; restart from the last position.
	ErrGenerationsExhausted = errors.New("tail: token generations exhausted")
	// ErrRunTwice is returned by a second call to Run.
	ErrRunTwice = errors.New("tail: Run called twice")
)

// Line is one complete log line: the chunks Docker split a long line into
// are joined.
type Line struct {
	// Stream is "stdout" or "stderr" (as the file says).
	Stream string
	// TimeNano is the line's time (its first chunk's), Unix nanoseconds.
	TimeNano int64
	// Data is the text without its trailing newline, cut at MaxLineSize.
	// It and Attrs are valid only until the callback returns.
	Data []byte
	// Attrs are the line's "attrs" (labels/env/tag log-opts), if any.
	Attrs []dockerlog.Attr
	// Truncated: Data was cut at MaxLineSize.
	Truncated bool
	// InvalidUTF8: invalid UTF-8 in the line was replaced with U+FFFD.
	InvalidUTF8 bool
	// Partial: the line's last chunk never came (the file was truncated, or
	// the container finished in the middle of a split line).
	Partial bool
	// Token acknowledges this line: Position(Token) is where reading
	// resumes to deliver the lines after it. Tokens never decrease over a
	// Tailer's life, so a consumer may acknowledge in order and save only
	// the latest. A token may repeat, and may point before this line's end
	// when a line of the other stream is still incomplete: resuming there
	// delivers some lines again (Loki drops exact duplicates) but loses none.
	Token int64
}

// Tailer follows one container's json-file log. Create it with New, run it
// with Run; Position and Release may be called from other goroutines.
type Tailer struct {
	cfg    Config
	log    *slog.Logger
	w      *Watcher
	m      *Metrics
	finish chan struct{}
	fin    sync.Once
	ran    atomic.Bool

	mu   sync.Mutex  // guards gens
	gens []genRecord // ascending gen

	// Run's state.
	emit func(Line) error
	src  *source // nil while waiting for the live file to appear
	// pinMu guards pins, anchor, pinLimited and pinClosed: pinNewer also
	// runs on the Watcher's goroutine, as soon as a file is created or
	// renamed in the directory, whatever Run is busy with.
	pinMu sync.Mutex
	// pins are the files newer than src, oldest first, opened as soon as
	// they are seen so that a rotation that deletes them before src is read
	// to its end loses nothing (see pinNewer).
	pins []*source
	// anchor is what pinNewer knows of src (it never touches src itself).
	anchor    *source
	pinClosed bool // Run has ended: pin nothing more
	// kept holds, through fanotify, the files that rotations take from the
	// log, when it is available (nil otherwise): it does not need a thread
	// of this process to run between a file's creation and its deletion,
	// as pinning does. Set before anything is opened; pinNewer uses it
	// under pinMu, Run's goroutine without.
	kept        *keptLog
	lastPin     time.Time // when pinNewer last held a file
	nextGen     int64
	buf         []byte
	start, end  int // unconsumed bytes: buf[start:end]
	scan        int // buf[start:scan] holds no newline
	skipping    bool
	expectNL    bool
	quietResync bool
	pinLimited  bool // pinNewer stopped at MaxPinnedBytes (warned once); pinMu
	sincePin    int  // lines delivered since pinNewer last ran
	dec         dockerlog.JSONDecoder
	jl          dockerlog.JSONLine
	joiner      *dockerlog.Joiner
	pend        [4]pendingStart
	// refusedMu guards refused, the files refused already (see refuse).
	refusedMu sync.Mutex
	refused   map[string]struct{}
	// Test hooks: afterRead is called after each read with the offset
	// reached, beforeWait before Run waits for a change.
	afterRead  func(off int64)
	beforeWait func()
}

// genRecord maps a generation of tokens to the file it was read from.
type genRecord struct {
	gen   int64
	ident positions.Identity
	base  int64
}

// pendingStart is where a line that the joiner holds incomplete started:
// resuming must not skip past it.
type pendingStart struct {
	active  bool
	stream  string
	token   int64
	invalid bool
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
	return &Tailer{
		cfg:     cfg,
		log:     log.With("container", cfg.Name, "path", cfg.Path),
		w:       w,
		m:       m,
		finish:  make(chan struct{}),
		nextGen: 1, // token 0 is never valid
		joiner:  dockerlog.NewJoiner(cfg.MaxLineSize),
		refused: map[string]struct{}{},
	}, nil
}

// Finish tells Run that the container has stopped: Run reads what is left
// (the live file to its end, after any rotated file it still had to read),
// delivers an incomplete split line as Partial, and returns nil. It does not
// wait for Run.
func (t *Tailer) Finish() { t.fin.Do(func() { close(t.finish) }) }

// Position returns the durable position a token stands for; false when the
// token is unknown or was released.
func (t *Tailer) Position(token int64) (positions.Position, bool) {
	if token <= 0 {
		return positions.Position{}, false
	}
	gen, off := token>>offsetBits, token&offsetMask
	t.mu.Lock()
	defer t.mu.Unlock()
	i := sort.Search(len(t.gens), func(i int) bool { return t.gens[i].gen >= gen })
	if i == len(t.gens) || t.gens[i].gen != gen {
		return positions.Position{}, false
	}
	r := t.gens[i]
	return positions.Position{File: r.ident, Offset: r.base + off}, true
}

// Release says that no token before this one will be passed to Position
// again, so that the identities of the files they came from can go.
func (t *Tailer) Release(token int64) {
	gen := token >> offsetBits
	t.mu.Lock()
	defer t.mu.Unlock()
	i := sort.Search(len(t.gens), func(i int) bool { return t.gens[i].gen >= gen })
	t.gens = append(t.gens[:0], t.gens[i:]...)
}

// rotated is the Watcher's hook: a file was created, renamed or removed in
// the log's directory, or the log rotated lately. It runs on the Watcher's
// goroutine, and reports whether the log rotated in the last hotFor.
func (t *Tailer) rotated() bool {
	if err := t.pinNewer(); err != nil {
		t.log.Debug("holding rotated files open", "err", err)
	}
	t.pinMu.Lock()
	defer t.pinMu.Unlock()
	return !t.pinClosed && time.Since(t.lastPin) < hotFor
}

// hotFor is how long after a rotation the Watcher keeps looking for the
// next one every hotInterval.
const hotFor = 2 * time.Second

// setAnchor records what pinNewer needs of src: its identity, not the file.
func (t *Tailer) setAnchor(src *source) {
	t.pinMu.Lock()
	t.anchor = src.snapshot()
	t.pinMu.Unlock()
}

// HoldRotated opens the files that rotations created since the Tailer last
// looked, so that further rotations cannot delete them unread (up to
// Config.MaxPinnedBytes). Run does this between reads; an emit that blocks
// for long (backpressure) should call it every few tens of milliseconds. It
// must be called from within emit, on Run's goroutine, and never elsewhere.
func (t *Tailer) HoldRotated() {
	if t.src == nil {
		return
	}
	if err := t.pinNewer(); err != nil {
		t.log.Debug("holding rotated files open", "err", err)
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
	t.emit = emit
	var wake <-chan struct{}
	var tick <-chan time.Time
	if t.w != nil {
		// Before anything is looked at, so that no change goes unnoticed.
		sub := t.w.subscribe(filepath.Dir(t.cfg.Path), t.rotated)
		defer sub.Close()
		wake = sub.C()
		// Also before anything is opened: every file closed from now on is
		// held until this Tailer has moved past it.
		kept := t.w.keep(t.cfg.Path, t.cfg.MaxPinnedBytes, t.refuse)
		t.pinMu.Lock()
		t.kept = kept
		t.pinMu.Unlock()
	} else {
		ticker := time.NewTicker(t.cfg.PollInterval)
		defer ticker.Stop()
		tick = ticker.C
	}
	t.m.tailers.Inc()
	defer t.m.tailers.Dec()
	defer t.closeSource()

	if err := t.open(ctx); err != nil {
		return err
	}
	finishing := false
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
		moved, err := t.check(ctx)
		if err != nil {
			return err
		}
		progress := false
		if t.src != nil {
			if progress, err = t.readAll(ctx); err != nil {
				return err
			}
		}
		// A live file was read to its end: a write since then has queued a
		// wake-up. A finished file, or a Finish, needs another look now.
		if moved || progress && (finishing || !t.src.live) {
			continue
		}
		if finishing {
			return t.finishUp()
		}
		if progress && t.cfg.ReadPause > 0 {
			// A busy log: let it grow before the next read, which follows
			// without waiting for the wake-ups that its writes queue.
			if err := t.pause(ctx); err != nil {
				return err
			}
			select {
			case <-wake:
			default:
			}
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

// pause waits cfg.ReadPause, or less when Finish is called or ctx ends.
func (t *Tailer) pause(ctx context.Context) error {
	tm := time.NewTimer(t.cfg.ReadPause)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.finish:
	case <-tm.C:
	}
	return nil
}

func (t *Tailer) closeSource() {
	if t.src != nil {
		t.src.close()
		t.src = nil
	}
	t.pinMu.Lock()
	for _, p := range t.pins {
		p.close()
	}
	kept := t.kept
	t.pins, t.anchor, t.pinClosed, t.kept = nil, nil, true, nil
	t.pinMu.Unlock()
	if kept != nil {
		t.w.unkeep(kept)
	}
	t.releaseBuffer()
}

// open finds where to start: the file and offset of cfg.Start, the oldest
// file's start (FromOldest), or the live file's start (or end, FromEnd).
func (t *Tailer) open(ctx context.Context) error {
	if t.cfg.Start == nil && !t.cfg.FromOldest {
		fi, err := os.Lstat(t.cfg.Path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // read it from its start once it appears
		}
		if err != nil {
			return err
		}
		f := logFile{path: t.cfg.Path, size: fi.Size()}
		f.dev, f.ino = fileID(fi)
		var offset int64
		if t.cfg.FromEnd {
			offset = fi.Size()
		}
		src, expectNL, _, err := t.openFile(f, offset)
		if unavailable(err) {
			return nil // rotated this instant, or refused: the next look finds the new file
		}
		if err != nil {
			return err
		}
		t.quietResync = true // from the end: skip a line being written
		return t.use(src, expectNL)
	}

	// From a saved position, or from the oldest file.
	for attempt := 1; ; attempt++ {
		files, consistent, err := t.list()
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if !consistent && attempt < listAttempts {
			if err := sleep(ctx, listRetry); err != nil {
				return err
			}
			continue
		}
		i, offset, lost := 0, int64(0), false
		if want := t.cfg.Start; want != nil {
			i, offset = findStart(files, want.File), want.Offset
			if i < 0 {
				i, offset, lost = 0, 0, true
			}
		}
		var src *source
		var expectNL, pastEnd bool
		if len(files) > 0 {
			src, expectNL, pastEnd, err = t.openFile(files[i], offset)
			if unavailable(err) && attempt < listAttempts {
				if err := sleep(ctx, listRetry); err != nil {
					return err
				}
				continue
			}
			if err != nil && !unavailable(err) {
				return err
			}
		}
		if lost || src == nil && t.cfg.Start != nil {
			t.m.positionsLost.Inc()
			t.log.Warn("the saved position's file is gone, reading from the oldest file", "offset", t.cfg.Start.Offset, "files", len(files))
		}
		if src == nil {
			return nil // read the live file from its start once it appears
		}
		if pastEnd {
			t.m.truncations.Inc()
			t.log.Warn("the saved position is past the end of its file, reading the file from its start", "file", files[i].path, "offset", offset)
		}
		if src.broken {
			t.brokenGzip(src, nil)
		}
		// Hold the newer files of this same listing open at once: a busy
		// container may rotate them away before the first look for more.
		var newer []*source
		for _, f := range files[i+1:] {
			p, _, _, err := t.openFile(f, 0)
			if err != nil {
				break // renamed or gone since: pinNewer takes over
			}
			p.size = f.size
			newer = append(newer, p)
		}
		t.pinMu.Lock()
		t.anchor, t.pins = src.snapshot(), newer
		t.pinMu.Unlock()
		return t.use(src, expectNL)
	}
}

// findStart returns the index of the file with identity want, or -1. A file
// that also has want's inode wins over one that only has its content (a copy,
// or the compressed version).
func findStart(files []logFile, want positions.Identity) int {
	best, bestScore := -1, 0
	for i, f := range files {
		score := 0
		if want.FingerprintLen == 0 {
			// The file was empty: only its inode can tell.
			if !f.gz && want.SameInode(f.dev, f.ino) {
				score = 1
			}
		} else {
			p, err := f.prefix()
			if err != nil || !want.MatchesContent(p) {
				continue
			}
			switch {
			case !f.gz && want.SameInode(f.dev, f.ino):
				score = 3
			case !f.gz:
				score = 2
			default:
				score = 1
			}
		}
		if score > 0 && score >= bestScore {
			best, bestScore = i, score
		}
	}
	return best
}

// use makes src the file being read, in a new generation.
func (t *Tailer) use(src *source, expectNL bool) error {
	t.src = src
	t.setAnchor(src)
	t.start, t.end, t.scan = 0, 0, 0
	t.skipping, t.expectNL = false, expectNL
	return t.newGen(src, 0)
}

// check looks at the file system. It returns true when reading moved to
// another file or restarted the current one.
func (t *Tailer) check(ctx context.Context) (bool, error) {
	src := t.src
	if src == nil {
		return t.openLive()
	}
	if err := t.pinNewer(); err != nil {
		return false, err
	}
	if !src.live {
		if !src.eof {
			return false, nil
		}
		return t.advance(ctx)
	}
	fi, err := os.Lstat(t.cfg.Path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	if err != nil || !sameFile(fi, src) {
		// The path names another file or none. Docker closes the file before
		// it renames or removes it, so ours is complete: drain it, move on.
		if _, err := t.readAll(ctx); err != nil {
			return false, err
		}
		src.live = false
		return t.advance(ctx)
	}
	truncated := fi.Size() < src.off
	if !truncated {
		if truncated, err = src.rewritten(); err != nil {
			return false, err
		}
	}
	if truncated {
		return true, t.restart()
	}
	return false, nil
}

func sameFile(fi fs.FileInfo, src *source) bool {
	dev, ino := fileID(fi)
	if ino == 0 && src.ino == 0 {
		return true // cannot tell here; truncation checks still apply
	}
	return dev == src.dev && ino == src.ino
}

// list lists the log's files (see listFiles), refusing those that are not
// regular files.
func (t *Tailer) list() ([]logFile, bool, error) { return listFiles(t.cfg.Path, t.refuse) }

// openFile is openSource, logging and counting a refused file.
func (t *Tailer) openFile(f logFile, offset int64) (s *source, expectNL, pastEnd bool, err error) {
	s, expectNL, pastEnd, err = openSource(f, offset)
	switch {
	case errors.Is(err, ErrRefused):
		t.refuse(f.path, err)
	case err == nil:
		t.accepted(f.path)
	}
	return s, expectNL, pastEnd, err
}

// unavailable reports that a file cannot be read now but that the log
// goes on: it was renamed or removed since it was listed, or it is refused
// (what is at its name is not a regular file). The next look lists again.
func unavailable(err error) bool {
	return errors.Is(err, errChanged) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrRefused)
}

// openLive opens the live file once it exists, from its start.
func (t *Tailer) openLive() (bool, error) {
	fi, err := os.Lstat(t.cfg.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	f := logFile{path: t.cfg.Path, size: fi.Size()}
	f.dev, f.ino = fileID(fi)
	src, expectNL, _, err := t.openFile(f, 0)
	if unavailable(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, t.use(src, expectNL)
}

// restart reads the live file again from its start after it was truncated
// (json-file with max-file=1 in Docker before 23 truncates instead of
// recreating). Lines written between the last read and the truncation are
// lost; that is counted.
func (t *Tailer) restart() error {
	src := t.src
	t.m.truncations.Inc()
	t.log.Warn("log file truncated, reading it again from its start", "offset", src.off)
	if _, err := src.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	src.off, src.eof = 0, false
	src.ident.FingerprintLen, src.ident.Fingerprint = 0, [16]byte{}
	if err := src.refreshFingerprint(); err != nil {
		return err
	}
	if t.end > t.start && !t.skipping {
		t.skip(reasonTorn, "an unterminated line before a truncation")
	}
	t.start, t.end, t.scan = 0, 0, 0
	t.skipping, t.expectNL = false, false
	if err := t.newGen(src, 0); err != nil {
		return err
	}
	t.setAnchor(src)
	// A split line cut by the truncation will not be completed.
	return t.flushPending(src.token(0))
}

// advance moves from the current file, which is complete, to the next newer
// one: the first file held open (pinned or kept), or else found by listing
// the files oldest first and locating the current one by inode (it may have
// been renamed any number of times since), or by content (it may have been
// compressed). If it is gone, it was the oldest or the only file: the files
// the keeper holds that were closed after it come next, then the oldest
// remaining.
func (t *Tailer) advance(ctx context.Context) (bool, error) {
	old := t.src
	if err := old.refreshFingerprint(); err != nil {
		return false, err
	}
	t.setIdent(old.gen, old.ident)
	if moved, err := t.nextPin(old); moved || err != nil {
		return moved, err
	}
	if t.kept != nil {
		if moved, err := t.nextKept(old, false); moved || err != nil {
			return moved, err
		}
	}
	for attempt := 1; ; attempt++ {
		retry := func() (bool, error) { return false, sleep(ctx, listRetry*time.Duration(attempt)) }
		files, consistent, err := t.list()
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil // the container's directory is gone
		}
		if err != nil {
			return false, err
		}
		next, found, located := successor(files, old)
		if !consistent {
			// A rename chain caught half done: look again, and never guess
			// from such a listing (it may lack the current file and so name
			// an older one as next). A consistent listing without the
			// current file means it was rotated away (deleted): the oldest
			// file listed is its successor.
			if attempt < listAttempts {
				if _, err := retry(); err != nil {
					return false, err
				}
				continue
			}
			return false, nil // the next wake-up looks again
		}
		if !located && t.kept != nil && t.keptFirst(files) {
			if moved, err := t.nextKept(old, true); moved || err != nil {
				return moved, err
			}
		}
		if !found {
			return false, nil
		}
		src, expectNL, _, err := t.openFile(next, 0)
		if unavailable(err) {
			// Renamed since listed, or refused: the next listing does
			// not list a file that is not a regular one.
			if attempt < listAttempts {
				if _, err := retry(); err != nil {
					return false, err
				}
				continue
			}
			return false, nil
		}
		if err != nil {
			return false, err
		}
		t.pinMu.Lock()
		if len(t.pins) > 0 {
			// The Watcher's hook held the files after old meanwhile: they
			// come first (src is one of them, or newer).
			p := t.pins[0]
			t.pins = slices.Delete(t.pins, 0, 1)
			t.anchor = p.snapshot()
			t.pinMu.Unlock()
			src.close()
			return true, t.moveTo(old, p, false)
		}
		t.anchor = src.snapshot()
		t.pinMu.Unlock()
		return true, t.moveTo(old, src, expectNL)
	}
}

// nextPin moves from old to the first file held open, if there is one.
func (t *Tailer) nextPin(old *source) (bool, error) {
	t.pinMu.Lock()
	var next *source
	if len(t.pins) > 0 {
		next = t.pins[0]
		t.pins = slices.Delete(t.pins, 0, 1)
		t.anchor = next.snapshot()
	}
	t.pinMu.Unlock()
	if next == nil {
		return false, nil
	}
	return true, t.moveTo(old, next, false)
}

// nextKept moves from old to the first file the keeper holds after it
// (see takeKept), unless the Watcher's hook pinned files meanwhile.
func (t *Tailer) nextKept(old *source, orAll bool) (bool, error) {
	t.pinMu.Lock()
	if len(t.pins) == 0 {
		t.pins = t.takeKept(old, orAll)
	}
	t.pinMu.Unlock()
	return t.nextPin(old)
}

// keptFirst says, for a current file that is no longer listed (deleted),
// whether the files the keeper holds come before the listed ones: unless
// the oldest listed file is a rotated one the keeper does not hold. That
// one was closed before the keeper began (the Tailer started from a saved
// position in an older file) or let go past its bound, so it is older than
// everything the keeper holds, and comes next.
func (t *Tailer) keptFirst(files []logFile) bool {
	return len(files) == 0 || files[0].index == 0 || t.kept.holds(files[0])
}

// takeKept returns the files the keeper holds that were closed after cur,
// oldest first. Without an entry for cur, it returns none, or with orAll
// every file held: the caller knows that cur was deleted, so it was closed
// before the keeper began (see keptLog.after). The last may be the live
// file (closed when the container stopped, written again since). pinMu is
// held.
func (t *Tailer) takeKept(cur *source, orAll bool) []*source {
	kept := t.kept.after(cur, orAll)
	if n := len(kept); n > 0 {
		if fi, err := os.Lstat(t.cfg.Path); err == nil && sameFile(fi, kept[n-1]) {
			kept[n-1].live, kept[n-1].path = true, t.cfg.Path
		}
	}
	t.m.keptTaken.Add(float64(len(kept)))
	for _, s := range kept {
		t.log.Debug("taking a rotated file that fanotify held", "file", s.path, "inode", s.ino, "size", s.size,
			"after_inode", cur.ino)
	}
	return kept
}

// moveTo leaves the finished file old for next.
func (t *Tailer) moveTo(old, next *source, expectNL bool) error {
	if t.end > t.start && !t.skipping {
		t.skip(reasonTorn, "an unterminated line at the end of a finished file")
	}
	t.log.Debug("following rotation", "from", old.path, "to", next.path, "from_inode", old.ino, "to_inode", next.ino,
		"from_offset", old.off)
	t.m.rotations.Inc()
	if t.kept != nil {
		t.kept.passed(old, next)
	}
	old.close()
	if next.broken {
		t.brokenGzip(next, nil)
	}
	// A split line may continue in the next file: the joiner keeps it.
	return t.use(next, expectNL)
}

// pinNewer opens the files that rotations created after the newest file
// the Tailer has open (src, or the last pin), as soon as the live path names
// a file it does not have. Docker deletes the oldest file at each rotation:
// a file that is open stays readable, so a Tailer that is behind by more
// than max-file rotations still reads every line. Pinned files keep their
// disk space until read; past MaxPinnedBytes no more are pinned (counted in
// logferry_sidecar_tail_pin_limit_total), and a file deleted before it is
// reached is lost, as without pinning, unless the keeper holds it. A
// rotation caught half done is looked at again on the next call.
func (t *Tailer) pinNewer() error {
	t.pinMu.Lock()
	defer t.pinMu.Unlock()
	if t.pinClosed || t.anchor == nil {
		return nil
	}
	newest := t.anchor
	if n := len(t.pins); n > 0 {
		newest = t.pins[n-1]
	}
	if newest.live {
		fi, err := os.Lstat(t.cfg.Path)
		if err != nil || sameFile(fi, newest) {
			return nil // no file newer than the live one we have
		}
	}
	var pinned int64
	for _, p := range t.pins {
		pinned += p.size
	}
	if t.kept != nil {
		// What the keeper holds after newest needs no listing: it is in
		// rotation order, however many rotations happened since.
		if newest.f != nil {
			if err := newest.refreshFingerprint(); err != nil {
				return err
			}
		}
		if kept := t.takeKept(newest, false); len(kept) > 0 {
			newest, pinned = t.pinKept(kept, pinned)
			if newest.live {
				return nil
			}
		}
	}
	var files []logFile
	for attempt := 1; ; attempt++ {
		var consistent bool
		var err error
		files, consistent, err = t.list()
		if err != nil {
			return nil
		}
		if consistent {
			break
		}
		if attempt == pinListAttempts {
			return nil // a rotation is under way: the next call looks again
		}
	}
	for {
		// A file pinned young has grown since: its fingerprint must cover
		// its content to find it once it is compressed.
		if newest.f != nil {
			if err := newest.refreshFingerprint(); err != nil {
				return err
			}
		}
		// When newest is not listed any more (deleted: it was the oldest),
		// the files the keeper holds that were closed after it come next;
		// after those, every file listed is newer, and the oldest of them
		// is next, as in advance.
		next, found, located := successor(files, newest)
		if !located && t.kept != nil && t.keptFirst(files) {
			if kept := t.takeKept(newest, true); len(kept) > 0 {
				if newest, pinned = t.pinKept(kept, pinned); newest.live {
					return nil
				}
				continue
			}
		}
		if !found {
			return nil
		}
		if pinned >= t.cfg.MaxPinnedBytes {
			if !t.pinLimited {
				t.pinLimited = true
				t.m.pinLimit.Inc()
				t.log.Warn("too far behind the log: not holding more rotated files open; files rotated away before they are read are lost",
					"held_bytes", pinned, "max_pinned_bytes", t.cfg.MaxPinnedBytes)
			}
			return nil
		}
		src, _, _, err := t.openFile(next, 0)
		if unavailable(err) {
			return nil // renamed meanwhile, or refused: the next call lists again
		}
		if err != nil {
			return err
		}
		src.size = next.size
		pinned += next.size
		t.pins = append(t.pins, src)
		t.lastPin = time.Now()
		t.log.Debug("holding a rotated file open", "file", next.path, "inode", src.ino, "size", next.size,
			"after_inode", newest.ino, "held", len(t.pins))
		newest = src
		if src.live {
			t.pinLimited = false
			return nil
		}
	}
}

// pinKept adds files the keeper held to pins (they hold no more disk space
// than they did), and returns the newest and the bytes now pinned. pinMu is
// held.
func (t *Tailer) pinKept(kept []*source, pinned int64) (*source, int64) {
	for _, p := range kept {
		pinned += p.size
	}
	t.pins = append(t.pins, kept...)
	t.lastPin = time.Now()
	newest := kept[len(kept)-1]
	if newest.live {
		t.pinLimited = false
	}
	return newest, pinned
}

// successor returns the file after cur in files (oldest first). located
// reports that cur itself was found.
func successor(files []logFile, cur *source) (next logFile, found, located bool) {
	pos := -1
	for i, f := range files {
		if f.sameFile(cur.dev, cur.ino) {
			pos = i
		}
	}
	if pos < 0 && cur.ident.FingerprintLen > 0 {
		// Compressed since: the same content, complete, in a .gz.
		for i, f := range files {
			if !f.gz {
				continue
			}
			p, err := f.prefix()
			if err == nil && cur.ident.MatchesContent(p) &&
				(len(p) == cur.ident.FingerprintLen || cur.ident.FingerprintLen == positions.FingerprintSize) {
				pos = i
				break
			}
		}
	}
	if pos >= 0 {
		if pos+1 < len(files) {
			return files[pos+1], true, true
		}
		return logFile{}, false, true
	}
	if len(files) > 0 {
		return files[0], true, false
	}
	return logFile{}, false, false
}

func (t *Tailer) brokenGzip(src *source, err error) {
	if err == nil {
		err = src.brokenErr
	}
	t.m.skipped.WithLabelValues(reasonCorruptGzip).Inc()
	t.log.Warn("compressed log file does not decompress, skipping the rest of it", "file", src.path, "err", err)
}

// readAll reads the current file to its end, delivering every complete
// line. progress reports that bytes were read.
func (t *Tailer) readAll(ctx context.Context) (progress bool, err error) {
	src := t.src
	defer t.maybeReleaseBuffer()
	for {
		if t.buf == nil {
			t.buf = getBuffer(t.cfg.ReadBuffer)
		}
		if t.end == len(t.buf) {
			t.makeRoom()
		}
		n, rerr := src.r.Read(t.buf[t.end:])
		if n > 0 {
			progress = true
			src.eof = false
			t.end += n
			src.off += int64(n)
			if err := t.process(); err != nil {
				return progress, err
			}
			// Reading a long backlog takes a while: hold on to what
			// rotations create meanwhile.
			if err := t.pinNewer(); err != nil {
				return progress, err
			}
		}
		if t.afterRead != nil {
			t.afterRead(src.off)
		}
		switch {
		case rerr == io.EOF || n == 0 && rerr == nil:
			src.eof = true
			return progress, nil
		case rerr != nil && src.zr != nil:
			t.brokenGzip(src, rerr)
			src.r = bytes.NewReader(nil)
			src.eof = true
			return progress, nil
		case rerr != nil:
			return progress, fmt.Errorf("reading %s: %w", src.path, rerr)
		}
		if err := ctx.Err(); err != nil {
			return progress, err
		}
	}
}

// makeRoom frees space at the end of a full buffer.
func (t *Tailer) makeRoom() {
	if t.start > 0 {
		n := copy(t.buf, t.buf[t.start:t.end])
		t.scan -= t.start
		t.start, t.end = 0, n
		return
	}
	if len(t.buf) < t.cfg.MaxRawLine {
		grown := make([]byte, min(2*len(t.buf), t.cfg.MaxRawLine))
		copy(grown, t.buf[:t.end])
		putBuffer(t.buf, t.cfg.ReadBuffer)
		t.buf = grown
		return
	}
	// One line fills the largest buffer: drop it up to its newline.
	if !t.skipping {
		t.skip(reasonTooLong, "a line longer than the maximum")
	}
	t.skipping = true
	t.start, t.end, t.scan = 0, 0, 0
}

// process delivers the complete lines in the buffer.
func (t *Tailer) process() error {
	if t.expectNL {
		if t.end == t.start {
			return nil
		}
		t.expectNL = false
		if t.buf[t.start] == '\n' {
			t.start++
			t.scan = t.start
		} else {
			t.skipping = true
			if !t.quietResync {
				t.skip(reasonBadPosition, "a saved position that is not at a line start")
			}
		}
	}
	t.quietResync = false
	for {
		i := bytes.IndexByte(t.buf[t.scan:t.end], '\n')
		if i < 0 {
			t.scan = t.end
			return nil
		}
		nl := t.scan + i
		raw := t.buf[t.start : nl+1]
		lineEnd := t.src.off - int64(t.end-nl-1)
		lineStart := lineEnd - int64(len(raw))
		t.start, t.scan = nl+1, nl+1
		if t.skipping {
			t.skipping = false
			continue
		}
		if err := t.line(raw, lineStart, lineEnd); err != nil {
			return err
		}
		// A starved process reads slowly while the daemon rotates: hold on
		// to new files every few lines, not only between reads (one stat).
		if t.sincePin++; t.sincePin >= pinEveryLines {
			t.sincePin = 0
			if err := t.pinNewer(); err != nil {
				return err
			}
		}
	}
}

// line handles one json-file line that occupies [start, end) of the file.
func (t *Tailer) line(raw []byte, start, end int64) error {
	src := t.src
	if err := t.dec.Decode(raw, &t.jl); err != nil {
		t.m.skipped.WithLabelValues(reasonCorrupt).Inc()
		if !src.corruptSeen {
			src.corruptSeen = true
			t.log.Warn("skipping corrupt json-file lines", "file", src.path, "offset", start, "err", err)
		} else {
			t.log.Debug("skipping a corrupt json-file line", "file", src.path, "offset", start, "err", err)
		}
		return nil
	}
	if end-src.base > maxTokenOffset {
		// Past what a token holds: the same file goes on in a new generation.
		if err := t.newGen(src, start); err != nil {
			return err
		}
	}
	if src.zr == nil && int64(src.ident.FingerprintLen) < min(end, positions.FingerprintSize) {
		// A young file: make the identity cover what is delivered.
		if err := src.refreshFingerprint(); err != nil {
			return err
		}
		t.setIdent(src.gen, src.ident)
	}

	stream := t.jl.Stream
	l, done := t.joiner.Push(stream, t.jl.TimeNano, t.jl.Text(), t.jl.EndsLine())
	p := t.pending(stream)
	if !done {
		if p == nil {
			p = t.freePending()
			*p = pendingStart{active: true, stream: stream, token: src.token(start)}
		}
		p.invalid = p.invalid || t.jl.InvalidUTF8
		return nil
	}
	invalid := t.jl.InvalidUTF8
	if p != nil {
		invalid = invalid || p.invalid
		*p = pendingStart{}
	}
	return t.deliver(l, t.jl.Attrs, invalid, false, t.safeToken(src.token(end)))
}

// safeToken is at, or the start of an incomplete line if that is earlier.
func (t *Tailer) safeToken(at int64) int64 {
	for i := range t.pend {
		if t.pend[i].active {
			at = min(at, t.pend[i].token)
		}
	}
	return at
}

func (t *Tailer) pending(stream string) *pendingStart {
	for i := range t.pend {
		if p := &t.pend[i]; p.active && p.stream == stream {
			return p
		}
	}
	return nil
}

func (t *Tailer) freePending() *pendingStart {
	for i := range t.pend {
		if !t.pend[i].active {
			return &t.pend[i]
		}
	}
	// The joiner has as many slots, so it returns a chunk whole rather than
	// holding a fifth stream; this is not reached.
	return &t.pend[0]
}

func (t *Tailer) deliver(l dockerlog.Line, attrs []dockerlog.Attr, invalid, partial bool, token int64) error {
	if l.Truncated {
		t.m.cut.Inc()
	}
	if invalid {
		t.m.invalidUTF8.Inc()
	}
	return t.emit(Line{
		Stream:      l.Stream,
		TimeNano:    l.TimeNano,
		Data:        l.Data,
		Attrs:       attrs,
		Truncated:   l.Truncated,
		InvalidUTF8: invalid,
		Partial:     partial,
		Token:       token,
	})
}

// flushPending delivers incomplete lines as Partial, each acknowledged at
// at or before the start of a line still held.
func (t *Tailer) flushPending(at int64) error {
	var err error
	t.joiner.Flush(func(l dockerlog.Line) {
		invalid := false
		if p := t.pending(l.Stream); p != nil {
			invalid = p.invalid
			*p = pendingStart{}
		}
		if err == nil {
			err = t.deliver(l, nil, invalid, true, t.safeToken(at))
		}
	})
	t.pend = [4]pendingStart{}
	return err
}

// finishUp ends a Finish: what is incomplete now stays so.
func (t *Tailer) finishUp() error {
	if t.src == nil {
		return nil
	}
	if t.end > t.start && !t.skipping {
		t.skip(reasonTorn, "an unterminated line at the end of a finished container's log")
	}
	return t.flushPending(t.src.token(t.src.off - int64(t.end-t.start)))
}

func (t *Tailer) skip(reason, what string) {
	t.m.skipped.WithLabelValues(reason).Inc()
	file := ""
	if t.src != nil {
		file = t.src.path
	}
	t.log.Warn("skipping "+what, "file", file, "reason", reason)
}

func (s *source) token(off int64) int64 { return s.gen<<offsetBits | (off - s.base) }

// newGen starts a generation of tokens for src from offset base.
func (t *Tailer) newGen(src *source, base int64) error {
	if t.nextGen > maxGen {
		return ErrGenerationsExhausted
	}
	src.gen, src.base = t.nextGen, base
	t.nextGen++
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.gens) == maxKeptGens {
		t.gens = append(t.gens[:0], t.gens[1:]...)
	}
	t.gens = append(t.gens, genRecord{gen: src.gen, ident: src.ident, base: base})
	return nil
}

// setIdent updates a generation's identity (its fingerprint grew).
func (t *Tailer) setIdent(gen int64, id positions.Identity) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := len(t.gens) - 1; i >= 0 && t.gens[i].gen >= gen; i-- {
		if t.gens[i].gen == gen {
			t.gens[i].ident = id
		}
	}
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-tm.C:
		return nil
	}
}

// Read buffers of the default size are pooled: most tailers are idle most
// of the time, and an idle tailer with no partial line holds none.
var bufPool = sync.Pool{New: func() any { b := make([]byte, DefaultReadBuffer); return &b }}

func getBuffer(size int) []byte {
	if size == DefaultReadBuffer {
		return *bufPool.Get().(*[]byte)
	}
	return make([]byte, size)
}

func putBuffer(b []byte, size int) {
	if size == DefaultReadBuffer && len(b) == DefaultReadBuffer {
		bufPool.Put(&b)
	}
}

func (t *Tailer) maybeReleaseBuffer() {
	if t.start == t.end && !t.skipping && !t.expectNL {
		t.releaseBuffer()
	}
}

func (t *Tailer) releaseBuffer() {
	if t.buf != nil {
		putBuffer(t.buf, t.cfg.ReadBuffer)
		t.buf = nil
		t.start, t.end, t.scan = 0, 0, 0
	}
}
