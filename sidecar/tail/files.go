package tail

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/logferry/logferry/sidecar/positions"
)

// logFiles is one container's log on disk, whose live file is path: it
// lists and opens the log's files, and refuses (logs and counts once, see
// refuse) those that are not regular files in the container's directory.
// Safe for concurrent use: Run's goroutine, the pinner's and the keeper
// (under keeper.mu) call it; mu is a leaf.
type logFiles struct {
	path string
	m    *Metrics
	log  *slog.Logger

	mu      sync.Mutex
	refused map[string]struct{} // the paths refused already
}

func newLogFiles(path string, m *Metrics, log *slog.Logger) *logFiles {
	return &logFiles{path: path, m: m, log: log, refused: map[string]struct{}{}}
}

// list lists the log's files (see listFiles).
func (l *logFiles) list() ([]logFile, bool, error) { return listFiles(l.path, l.refuse) }

// open is openSource, logging and counting a refused file.
func (l *logFiles) open(f logFile, offset int64) (s *source, expectNL, pastEnd bool, err error) {
	s, expectNL, pastEnd, err = openSource(f, offset)
	switch {
	case errors.Is(err, ErrRefused):
		l.refuse(f.path, err)
	case err == nil:
		l.accepted(f.path)
	}
	return s, expectNL, pastEnd, err
}

// brokenGzip logs and counts a compressed file that does not decompress
// (from err on, or from its start with a nil err); the rest of it is
// skipped.
func (l *logFiles) brokenGzip(src *source, err error) {
	if err == nil {
		err = src.brokenErr
	}
	l.m.skipped.WithLabelValues(reasonCorruptGzip).Inc()
	l.log.Warn("compressed log file does not decompress, skipping the rest of it", "file", src.path, "err", err)
}

// unavailable reports that a file cannot be read now but that the log
// goes on: it was renamed or removed since it was listed, or it is refused
// (what is at its name is not a regular file). The next look lists again.
func unavailable(err error) bool {
	return errors.Is(err, errChanged) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrRefused)
}

// logFile is one file of a container's log as found on disk.
type logFile struct {
	path  string
	index int  // 0 for the live file, n for <path>.n and <path>.n.gz
	gz    bool // compressed: immutable, read through gzip
	dev   uint64
	ino   uint64
	size  int64 // on disk (compressed size for .gz)
}

func (f logFile) sameFile(dev, ino uint64) bool { return ino != 0 && f.dev == dev && f.ino == ino }

// listFiles returns the log files of the container whose live file is path,
// oldest first: <path>.N ... <path>.1 (or their .gz), then path itself when
// it exists. Where both .n and .n.gz exist, compression is in progress and
// the complete uncompressed file is listed. consistent is false when the
// numbering has a gap or a file appears twice: a rotation is renaming files
// right now, and a caller that depends on the order should look again.
//
// A name of the log that is not a regular file (lstat: a symlink, a FIFO...)
// is not listed but passed to refuse when it is not nil; its number counts
// as present, so that the files around it are read in order.
func listFiles(path string, refuse func(path string, err error)) (files []logFile, consistent bool, err error) {
	dir, base := filepath.Split(path)
	entries, err := os.ReadDir(filepath.Clean(dir))
	if err != nil {
		return nil, false, err
	}
	byIndex := map[int]logFile{}
	refused := map[int]bool{}
	for _, e := range entries {
		name := e.Name()
		n, gz, ok := rotatedIndex(base, name)
		if !ok || n == 0 {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // renamed or removed since ReadDir
		}
		if err := checkRegular(filepath.Join(dir, name), fi.Mode()); err != nil {
			if refuse != nil {
				refuse(filepath.Join(dir, name), err)
			}
			refused[n] = true
			continue
		}
		f := logFile{path: filepath.Join(dir, name), index: n, gz: gz, size: fi.Size()}
		f.dev, f.ino = fileID(fi)
		if prev, ok := byIndex[n]; ok && !prev.gz {
			continue // .n is complete; .n.gz may still be written
		}
		byIndex[n] = f
	}
	indexes := make([]int, 0, len(byIndex)+len(refused))
	for n := range byIndex {
		indexes = append(indexes, n)
	}
	for n := range refused {
		if _, ok := byIndex[n]; !ok {
			indexes = append(indexes, n)
		}
	}
	slices.Sort(indexes)
	consistent = true
	for i, n := range indexes {
		if n != i+1 {
			consistent = false
		}
	}
	for _, n := range slices.Backward(indexes) {
		if f, ok := byIndex[n]; ok {
			files = append(files, f)
		}
	}
	if fi, err := os.Lstat(path); err == nil {
		if err := checkRegular(path, fi.Mode()); err != nil {
			if refuse != nil {
				refuse(path, err)
			}
		} else {
			f := logFile{path: path, size: fi.Size()}
			f.dev, f.ino = fileID(fi)
			files = append(files, f)
		}
	}
	// A rotation between two of the stats above can make a listing that
	// looks whole but misses a file: .2 stat'ed before it (the file about
	// to be deleted), .1 after it (the old live file), so the old .1, now
	// .2, is never listed. Every rotation gives every name another file, so
	// stat'ing each name again and finding the same files proves that no
	// rotation happened in between.
	for _, f := range files {
		fi, err := os.Lstat(f.path)
		if err != nil {
			consistent = false
			break
		}
		if dev, ino := fileID(fi); dev != f.dev || ino != f.ino {
			consistent = false
			break
		}
	}
	seen := map[[2]uint64]bool{}
	for _, f := range files {
		if f.ino == 0 {
			continue
		}
		k := [2]uint64{f.dev, f.ino}
		if seen[k] {
			consistent = false
		}
		seen[k] = true
	}
	return files, consistent, nil
}

// rotatedIndex reads name as a file of the log whose live file is named
// base: index 0 for base itself, n for <base>.n and <base>.n.gz (n >= 1,
// written without leading zeros, as dockerd does). ok is false for any
// other name.
func rotatedIndex(base, name string) (index int, gz, ok bool) {
	if name == base {
		return 0, false, true
	}
	rest, ok := strings.CutPrefix(name, base+".")
	if !ok {
		return 0, false, false
	}
	num, gz := strings.CutSuffix(rest, ".gz")
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 || strconv.Itoa(n) != num {
		return 0, false, false
	}
	return n, gz, true
}

// prefix returns the first positions.FingerprintSize bytes of f's
// uncompressed content (fewer when it is shorter).
func (f logFile) prefix() ([]byte, error) {
	fh, err := openLogFile(f.path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	var r io.Reader = fh
	if f.gz {
		zr, err := gzip.NewReader(fh)
		if err != nil {
			return nil, err
		}
		r = zr
	}
	return readPrefix(r)
}

func readPrefix(r io.Reader) ([]byte, error) {
	b := make([]byte, positions.FingerprintSize)
	n, err := io.ReadFull(r, b)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		err = nil
	}
	return b[:n], err
}

// errChanged reports that a file is no longer what a listing said: a
// rotation renamed it in between. The caller lists again.
var errChanged = errors.New("file changed since listed")

// source is the file a Tailer reads.
type source struct {
	path string
	f    *os.File
	zr   *gzip.Reader // nil for an uncompressed file
	r    io.Reader    // f, or zr
	// live: opened as the live path. Data may still be appended; once the
	// path names another file, this one is drained and left.
	live bool
	// dev, ino of the open file (of the .gz for a compressed one).
	dev, ino uint64
	ident    positions.Identity
	// gen and base map tokens to offsets: token = gen<<40 | (offset-base).
	gen, base int64
	// off is the uncompressed offset of the next byte Read returns.
	off int64
	eof bool
	// broken: a .gz that does not decompress (brokenErr says why); it
	// reads as empty.
	broken    bool
	brokenErr error
	// size is the file's size when it was pinned (see pinSet.pinNewer).
	size int64
	// corruptSeen limits warnings to one per file.
	corruptSeen bool
	head        [positions.FingerprintSize]byte
}

// openSource opens f for reading at offset, which must be a line start.
// It reads from offset-1 instead, and sets expectNL, so that the caller can
// check that a newline precedes offset. A position past the end of the
// content returns atEnd with the source at offset 0. A file that is not a
// regular file in the log's directory is refused (ErrRefused, see
// openLogFile).
func openSource(f logFile, offset int64) (s *source, expectNL, pastEnd bool, err error) {
	fh, err := openLogFile(f.path)
	if err != nil {
		return nil, false, false, err
	}
	defer func() {
		if err != nil {
			fh.Close()
		}
	}()
	fi, err := fh.Stat()
	if err != nil {
		return nil, false, false, err
	}
	s = &source{path: f.path, f: fh, r: fh, live: f.index == 0}
	s.dev, s.ino = fileID(fi)
	if f.ino != 0 && !f.sameFile(s.dev, s.ino) {
		return nil, false, false, errChanged
	}
	if !f.gz {
		s.ident.Dev, s.ident.Inode = s.dev, s.ino
		if err := s.refreshFingerprint(); err != nil {
			return nil, false, false, err
		}
		if offset > fi.Size() {
			return s, false, true, nil
		}
		if offset > 0 {
			if _, err := fh.Seek(offset-1, io.SeekStart); err != nil {
				return nil, false, false, err
			}
			s.off, expectNL = offset-1, true
		}
		return s, expectNL, false, nil
	}

	// Compressed: the identity is the content's (the inode is the .gz's).
	// A .gz that does not decompress is returned broken, reading as empty,
	// so that the caller counts it and moves on to the next file.
	broken := func(err error) (*source, bool, bool, error) {
		s.broken, s.brokenErr, s.r, s.eof = true, err, bytes.NewReader(nil), true
		return s, false, false, nil
	}
	zr, err := gzip.NewReader(fh)
	if err != nil {
		return broken(err)
	}
	p, err := readPrefix(zr)
	if err != nil {
		return broken(err)
	}
	s.ident.SetFingerprint(p)
	if _, err := fh.Seek(0, io.SeekStart); err != nil {
		return nil, false, false, err
	}
	if err := zr.Reset(fh); err != nil {
		return broken(err)
	}
	s.zr, s.r = zr, zr
	if offset > 0 {
		// No seeking in gzip: decompress up to the position.
		n, err := io.CopyN(io.Discard, zr, offset-1)
		if err == io.EOF {
			if _, err := fh.Seek(0, io.SeekStart); err != nil {
				return nil, false, false, err
			}
			if err := zr.Reset(fh); err != nil {
				return broken(err)
			}
			return s, false, true, nil
		}
		if err != nil {
			return broken(err)
		}
		s.off, expectNL = n, true
	}
	return s, expectNL, false, nil
}

// refreshFingerprint recomputes an uncompressed file's fingerprint from its
// current first bytes, while the file is shorter than what a fingerprint
// covers. It keeps the old one if those bytes changed (the file was
// truncated and rewritten: the caller's check finds that).
func (s *source) refreshFingerprint() error {
	if s.zr != nil || s.ident.FingerprintLen == positions.FingerprintSize {
		return nil
	}
	b, err := s.readHead()
	if err != nil {
		return err
	}
	if s.ident.FingerprintLen > 0 && !s.ident.MatchesContent(b) {
		return nil
	}
	s.ident.SetFingerprint(b)
	return nil
}

// readHead reads an uncompressed file's first bytes without moving its
// read offset.
func (s *source) readHead() ([]byte, error) {
	n, err := s.f.ReadAt(s.head[:], 0)
	if err == io.EOF {
		err = nil
	}
	return s.head[:n], err
}

// rewritten reports whether an uncompressed file's first bytes differ from
// those its fingerprint was made of: it was truncated and written again.
func (s *source) rewritten() (bool, error) {
	if s.zr != nil || s.ident.FingerprintLen == 0 {
		return false, nil
	}
	b, err := s.readHead()
	if err != nil {
		return false, err
	}
	return !s.ident.MatchesContent(b), nil
}

// snapshot is a copy of s's identity for the pin set, which also runs on
// the pinner's goroutine: it shares s's file only to read its first bytes
// (pread) when the fingerprint must grow, and never for a compressed file.
func (s *source) snapshot() *source {
	c := &source{path: s.path, live: s.live, dev: s.dev, ino: s.ino, ident: s.ident}
	if s.zr == nil {
		c.f = s.f
	}
	return c
}

// rewind makes an uncompressed file read again from its start, with a
// fingerprint of its new content (it was truncated).
func (s *source) rewind() error {
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	s.off, s.eof = 0, false
	s.ident.FingerprintLen, s.ident.Fingerprint = 0, [16]byte{}
	return s.refreshFingerprint()
}

// sameFile reports whether fi (from lstat) is src's file.
func sameFile(fi fs.FileInfo, src *source) bool {
	dev, ino := fileID(fi)
	if ino == 0 && src.ino == 0 {
		return true // cannot tell here; truncation checks still apply
	}
	return dev == src.dev && ino == src.ino
}

func (s *source) close() {
	s.f.Close()
}
