package tail

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"
)

// pinEveryLines is how many lines a Tailer delivers between two looks for
// files to hold open (pinNewer), besides one look per read.
const pinEveryLines = 128

// pinListAttempts is how many listings pinNewer takes, back to back, to get
// one that no rotation disturbed.
const pinListAttempts = 3

// After a file was pinned, the pinner looks for the next one every
// hotInterval for hotFor, so that a rotation is seen within that time even
// when its event waits behind thousands of writes' events in the Watcher.
const (
	hotInterval = 5 * time.Millisecond
	hotFor      = 2 * time.Second
)

// pinSet holds open, oldest first, the files of the log that rotations
// created after the one Run reads (the anchor), so that a rotation that
// deletes them before Run gets to them loses nothing: Docker deletes the
// oldest file at each rotation, and an open file stays readable. Run's
// goroutine pins between reads and takes the pinned files in order (next);
// the pinner goroutine (run), started and stopped by Run, pins when the
// Watcher signals a change in the directory (signal, which only signals:
// the Watcher's goroutine is every tailer's), and every hotInterval while
// the log rotates, whatever Run is blocked on. Files the keeper holds
// (fanotify) are taken in first, without a listing.
//
// Pinned files keep their disk space until read; past maxBytes no more are
// pinned (counted in logferry_sidecar_tail_pin_limit_total), and a file
// deleted before it is reached is lost, as without pinning, unless the
// keeper holds it. mu is held across listing and opening: see the lock
// order in doc.go.
type pinSet struct {
	files    *logFiles
	maxBytes int64
	m        *Metrics
	log      *slog.Logger
	// kept holds, through fanotify, the files that rotations take from the
	// log, when it is available (nil otherwise): it does not need a thread
	// of this process to run between a file's creation and its deletion,
	// as pinning does. Set before the pinner starts and cleared after it
	// stopped, so read without mu.
	kept *keptLog
	// wake carries the Watcher's signals to the pinner (capacity 1).
	wake chan struct{}

	mu      sync.Mutex
	pins    []*source // newer than the anchor, oldest first
	anchor  *source   // a snapshot of the file Run reads (never that file)
	closed  bool      // Run has ended: pin nothing more
	limited bool      // stopped at maxBytes (warned once)
	lastPin time.Time // when a file was last pinned
}

func newPinSet(files *logFiles, maxBytes int64, m *Metrics, log *slog.Logger) *pinSet {
	return &pinSet{files: files, maxBytes: maxBytes, m: m, log: log, wake: make(chan struct{}, 1)}
}

// signal is the Watcher's hook: a file was created, renamed or removed in
// the log's directory. It runs on the Watcher's goroutine and only wakes
// the pinner.
func (p *pinSet) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// startPinner runs the pinner until stop is called; stop waits for it.
func (p *pinSet) startPinner(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { p.run(ctx) })
	return func() {
		cancel()
		wg.Wait()
	}
}

// run is the pinner: it pins on every signal, and every hotInterval for as
// long as files were pinned in the last hotFor, until ctx is done.
func (p *pinSet) run(ctx context.Context) {
	hot := time.NewTicker(hotInterval)
	hot.Stop()
	defer hot.Stop()
	var hotC <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		case <-hotC:
		}
		p.hold()
		switch rotating := p.rotatedLately(); {
		case rotating && hotC == nil:
			hot.Reset(hotInterval)
			hotC = hot.C
		case !rotating && hotC != nil:
			hot.Stop()
			hotC = nil
		}
	}
}

// hold is pinNewer for a caller that can only log its error: the next look
// tries again.
func (p *pinSet) hold() {
	if err := p.pinNewer(); err != nil {
		p.log.Debug("holding rotated files open", "err", err)
	}
}

func (p *pinSet) rotatedLately() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.closed && time.Since(p.lastPin) < hotFor
}

// setAnchor records what pinNewer needs of the file Run reads: its
// identity, not the file.
func (p *pinSet) setAnchor(src *source) {
	p.mu.Lock()
	p.anchor = src.snapshot()
	p.mu.Unlock()
}

// start sets the anchor, and pins newer, the files after it that Run
// opened itself.
func (p *pinSet) start(src *source, newer []*source) {
	p.mu.Lock()
	p.anchor, p.pins = src.snapshot(), newer
	p.mu.Unlock()
}

// next takes the oldest pinned file, which becomes the anchor; nil when
// none is pinned.
func (p *pinSet) next() *source {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.nextLocked()
}

func (p *pinSet) nextLocked() *source {
	if len(p.pins) == 0 {
		return nil
	}
	next := p.pins[0]
	p.pins = slices.Delete(p.pins, 0, 1)
	p.anchor = next.snapshot()
	return next
}

// nextOr is next when files were pinned meanwhile (src, which Run opened
// after a listing, is one of them or older: it is closed); else src, which
// becomes the anchor in the same step, lest the pinner pin it again.
// fromPins says which.
func (p *pinSet) nextOr(src *source) (next *source, fromPins bool) {
	p.mu.Lock()
	next = p.nextLocked()
	if next == nil {
		p.anchor = src.snapshot()
	}
	p.mu.Unlock()
	if next == nil {
		return src, false
	}
	src.close()
	return next, true
}

// nextKept is next, after pinning the files the keeper holds after old
// (see takeKept) when none is pinned.
func (p *pinSet) nextKept(old *source, orAll bool) *source {
	p.mu.Lock()
	if len(p.pins) == 0 {
		p.pins = p.takeKept(old, orAll)
	}
	p.mu.Unlock()
	return p.next()
}

// close closes the pinned files and pins nothing more. It returns the
// keeper's log for the caller to release.
func (p *pinSet) close() *keptLog {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.pins {
		s.close()
	}
	kept := p.kept
	p.pins, p.anchor, p.closed, p.kept = nil, nil, true, nil
	return kept
}

// pinNewer opens the files that rotations created after the newest file
// held (the anchor, or the last pin), as soon as the live path names a
// file that is not held. A rotation caught half done is looked at again on
// the next call.
func (p *pinSet) pinNewer() error { return p.pinNewerStat(nil) }

// pinNewerStat is pinNewer with the live path's Lstat taken from stat
// when it is not nil (Tailer.check shares one with chain.live).
func (p *pinSet) pinNewerStat(stat *liveStat) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.anchor == nil {
		return nil
	}
	newest := p.anchor
	if n := len(p.pins); n > 0 {
		newest = p.pins[n-1]
	}
	if newest.live {
		fi, err := stat.get(p.files.path)
		if err != nil || sameFile(fi, newest) {
			return nil // no file newer than the live one we have
		}
	}
	var pinned int64
	for _, s := range p.pins {
		pinned += s.size
	}
	if p.kept != nil {
		// What the keeper holds after newest needs no listing: it is in
		// rotation order, however many rotations happened since.
		if newest.f != nil {
			if err := newest.refreshFingerprint(); err != nil {
				return err
			}
		}
		if kept := p.takeKept(newest, false); len(kept) > 0 {
			newest, pinned = p.pinKept(kept, pinned)
			if newest.live {
				return nil
			}
		}
	}
	var files []logFile
	for attempt := 1; ; attempt++ {
		var consistent bool
		var err error
		files, consistent, err = p.files.list()
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
		// is next, as in chain.next.
		next, found, located := successor(files, newest)
		if !located && p.kept != nil && p.keptFirst(files) {
			if kept := p.takeKept(newest, true); len(kept) > 0 {
				if newest, pinned = p.pinKept(kept, pinned); newest.live {
					return nil
				}
				continue
			}
		}
		if !found {
			return nil
		}
		if pinned >= p.maxBytes {
			if !p.limited {
				p.limited = true
				p.m.pinLimit.Inc()
				p.log.Warn("too far behind the log: not holding more rotated files open; files rotated away before they are read are lost",
					"held_bytes", pinned, "max_pinned_bytes", p.maxBytes)
			}
			return nil
		}
		src, _, _, err := p.files.open(next, 0)
		if unavailable(err) {
			return nil // renamed meanwhile, or refused: the next call lists again
		}
		if err != nil {
			return err
		}
		src.size = next.size
		pinned += next.size
		p.pins = append(p.pins, src)
		p.lastPin = time.Now()
		p.log.Debug("holding a rotated file open", "file", next.path, "inode", src.ino, "size", next.size,
			"after_inode", newest.ino, "held", len(p.pins))
		newest = src
		if src.live {
			p.limited = false
			return nil
		}
	}
}

// pinKept adds files the keeper held to pins (they hold no more disk space
// than they did), and returns the newest and the bytes now pinned. mu is
// held.
func (p *pinSet) pinKept(kept []*source, pinned int64) (*source, int64) {
	for _, s := range kept {
		pinned += s.size
	}
	p.pins = append(p.pins, kept...)
	p.lastPin = time.Now()
	newest := kept[len(kept)-1]
	if newest.live {
		p.limited = false
	}
	return newest, pinned
}

// keptFirst says, for a current file that is no longer listed (deleted),
// whether the files the keeper holds come before the listed ones: unless
// the oldest listed file is a rotated one the keeper does not hold. That
// one was closed before the keeper began (the Tailer started from a saved
// position in an older file) or let go past its bound, so it is older than
// everything the keeper holds, and comes next.
func (p *pinSet) keptFirst(files []logFile) bool {
	return len(files) == 0 || files[0].index == 0 || p.kept.holds(files[0])
}

// takeKept returns the files the keeper holds that were closed after cur,
// oldest first. Without an entry for cur, it returns none, or with orAll
// every file held: the caller knows that cur was deleted, so it was closed
// before the keeper began (see keptLog.after). The last may be the live
// file (closed when the container stopped, written again since). mu is
// held.
func (p *pinSet) takeKept(cur *source, orAll bool) []*source {
	kept := p.kept.after(cur, orAll)
	if n := len(kept); n > 0 {
		if fi, err := os.Lstat(p.files.path); err == nil && sameFile(fi, kept[n-1]) {
			kept[n-1].live, kept[n-1].path = true, p.files.path
		}
	}
	p.m.keptTaken.Add(float64(len(kept)))
	for _, s := range kept {
		p.log.Debug("taking a rotated file that fanotify held", "file", s.path, "inode", s.ino, "size", s.size,
			"after_inode", cur.ino)
	}
	return kept
}
