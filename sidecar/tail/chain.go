package tail

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/logferry/logferry/sidecar/positions"
)

// Retries when a listing of the log files catches a rotation half done.
const (
	listAttempts = 4
	listRetry    = 10 * time.Millisecond
)

// chain is the log's files in rotation order, as Run walks them: it finds
// the file and offset reading starts at, tells whether the live file is
// still the one being read, and finds the file after a finished one: the
// first the pin set holds, or else by listing the files oldest first and
// locating the finished one by inode (it may have been renamed any number
// of times since) or by content (it may have been compressed). If that one
// is gone, it was the oldest or the only file: the files the keeper holds
// that were closed after it come next, then the oldest remaining. The
// caller reads the files it returns and closes them through leave. It
// belongs to Run's goroutine.
type chain struct {
	cfg   *Config
	files *logFiles
	pins  *pinSet
	m     *Metrics
	log   *slog.Logger
}

// start opens the file reading starts in: the file and offset of
// cfg.Start, the oldest file's start (FromOldest), or the live file's start
// (or end, FromEnd). It returns nil while there is no file to start in yet
// (the live file, from its start, once it appears).
func (c *chain) start(ctx context.Context) (*source, bool, error) {
	if c.cfg.Start == nil && !c.cfg.FromOldest {
		return c.openLive(c.cfg.FromEnd)
	}
	// From a saved position, or from the oldest file.
	for attempt := 1; ; attempt++ {
		files, consistent, err := c.files.list()
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, false, err
		}
		if !consistent && attempt < listAttempts {
			if err := sleep(ctx, listRetry); err != nil {
				return nil, false, err
			}
			continue
		}
		i, offset, lost := 0, int64(0), false
		if want := c.cfg.Start; want != nil {
			i, offset = findStart(files, want.File), want.Offset
			if i < 0 {
				i, offset, lost = 0, 0, true
			}
		}
		var src *source
		var expectNL, pastEnd bool
		if len(files) > 0 {
			src, expectNL, pastEnd, err = c.files.open(files[i], offset)
			if unavailable(err) && attempt < listAttempts {
				if err := sleep(ctx, listRetry); err != nil {
					return nil, false, err
				}
				continue
			}
			if err != nil && !unavailable(err) {
				return nil, false, err
			}
		}
		if lost || src == nil && c.cfg.Start != nil {
			c.m.positionsLost.Inc()
			c.log.Warn("the saved position's file is gone, reading from the oldest file", "offset", c.cfg.Start.Offset, "files", len(files))
		}
		if src == nil {
			return nil, false, nil
		}
		if pastEnd {
			c.m.truncations.Inc()
			c.log.Warn("the saved position is past the end of its file, reading the file from its start", "file", files[i].path, "offset", offset)
		}
		if src.broken {
			c.files.brokenGzip(src, nil)
		}
		// Hold the newer files of this same listing open at once: a busy
		// container may rotate them away before the first look for more.
		var newer []*source
		for _, f := range files[i+1:] {
			p, _, _, err := c.files.open(f, 0)
			if err != nil {
				break // renamed or gone since: pinNewer takes over
			}
			p.size = f.size
			newer = append(newer, p)
		}
		c.pins.start(src, newer)
		return src, expectNL, nil
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

// openLive opens the live file from its start, or from its end with
// fromEnd; nil while there is none (or it was rotated this instant, or is
// refused: the next look finds what is there then).
func (c *chain) openLive(fromEnd bool) (*source, bool, error) {
	fi, err := os.Lstat(c.files.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	f := logFile{path: c.files.path, size: fi.Size()}
	f.dev, f.ino = fileID(fi)
	var offset int64
	if fromEnd {
		offset = fi.Size()
	}
	src, expectNL, _, err := c.files.open(f, offset)
	if unavailable(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return src, expectNL, nil
}

// liveState is what became of the live file being read.
type liveState int

const (
	liveSame      liveState = iota
	liveReplaced            // the path names another file, or none: ours is complete
	liveTruncated           // truncated (and maybe written again): read it from its start
)

// live looks at the live path for src, the live file being read.
func (c *chain) live(src *source, stat *liveStat) (liveState, error) {
	fi, err := stat.get(c.files.path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return liveSame, err
	}
	if err != nil || !sameFile(fi, src) {
		// Docker closes the file before it renames or removes it.
		return liveReplaced, nil
	}
	truncated := fi.Size() < src.off
	if !truncated {
		if truncated, err = src.rewritten(); err != nil {
			return liveSame, err
		}
	}
	if truncated {
		return liveTruncated, nil
	}
	return liveSame, nil
}

// next opens the file after old, which is complete, and makes it the pin
// set's anchor; nil when there is none yet. expectNL is openSource's.
func (c *chain) next(ctx context.Context, old *source) (next *source, expectNL bool, err error) {
	if next := c.pins.next(); next != nil {
		return next, false, nil
	}
	if c.pins.kept != nil {
		if next := c.pins.nextKept(old, false); next != nil {
			return next, false, nil
		}
	}
	for attempt := 1; ; attempt++ {
		retry := func() error { return sleep(ctx, listRetry*time.Duration(attempt)) }
		files, consistent, err := c.files.list()
		if errors.Is(err, fs.ErrNotExist) {
			return nil, false, nil // the container's directory is gone
		}
		if err != nil {
			return nil, false, err
		}
		after, found, located := successor(files, old)
		if !consistent {
			// A rename chain caught half done: look again, and never guess
			// from such a listing (it may lack the current file and so name
			// an older one as next). A consistent listing without the
			// current file means it was rotated away (deleted): the oldest
			// file listed is its successor.
			if attempt < listAttempts {
				if err := retry(); err != nil {
					return nil, false, err
				}
				continue
			}
			return nil, false, nil // the next wake-up looks again
		}
		if !located && c.pins.kept != nil && c.pins.keptFirst(files) {
			if next := c.pins.nextKept(old, true); next != nil {
				return next, false, nil
			}
		}
		if !found {
			return nil, false, nil
		}
		src, expectNL, _, err := c.files.open(after, 0)
		if unavailable(err) {
			// Renamed since listed, or refused: the next listing does
			// not list a file that is not a regular one.
			if attempt < listAttempts {
				if err := retry(); err != nil {
					return nil, false, err
				}
				continue
			}
			return nil, false, nil
		}
		if err != nil {
			return nil, false, err
		}
		// The pinner may have held the files after old meanwhile: they come
		// first.
		next, fromPins := c.pins.nextOr(src)
		return next, expectNL && !fromPins, nil
	}
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

// leave closes old, finished, for next: the keeper lets go of what it held
// up to next.
func (c *chain) leave(old, next *source) {
	c.log.Debug("following rotation", "from", old.path, "to", next.path, "from_inode", old.ino, "to_inode", next.ino,
		"from_offset", old.off)
	c.m.rotations.Inc()
	if c.pins.kept != nil {
		c.pins.kept.passed(old, next)
	}
	old.close()
	if next.broken {
		c.files.brokenGzip(next, nil)
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

// liveStat is one Lstat of the live path shared by the looks of one
// Tailer.check; a nil *liveStat takes a fresh one at each get.
type liveStat struct {
	done bool
	fi   fs.FileInfo
	err  error
}

func (s *liveStat) get(path string) (fs.FileInfo, error) {
	if s == nil {
		return os.Lstat(path)
	}
	if !s.done {
		s.fi, s.err = os.Lstat(path)
		s.done = true
	}
	return s.fi, s.err
}
