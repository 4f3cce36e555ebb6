package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

const (
	segmentExt   = ".seg"
	ackFileName  = "ack"
	ackTempName  = "ack.tmp"
	lockFileName = "lock"
	ackFileSize  = 20
	ackVersion   = 1
)

var ackMagic = [4]byte{'L', 'F', 'A', 'K'}

// errCorruptAck is wrapped when the ack file does not check.
var errCorruptAck = errors.New("corrupt ack file")

// segment is one segment file.
type segment struct {
	base int64  // position of its first byte; its name
	size int64  // bytes that belong to it: for the active segment, the bytes completely written
	path string //
	// records is how many intact records it holds, -1 when unknown (a
	// segment found by Open, never scanned).
	records int64
}

func (g *segment) end() int64 { return g.base + g.size }

func segmentName(base int64) string { return fmt.Sprintf("%020d%s", base, segmentExt) }

// parseSegmentName returns the base a segment file's name gives, or false
// for a file that is not a segment.
func parseSegmentName(name string) (int64, bool) {
	digits, ok := strings.CutSuffix(name, segmentExt)
	if !ok || len(digits) != 20 {
		return 0, false
	}
	base, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || base < 0 {
		return 0, false
	}
	return base, true
}

// listSegments returns dir's segments by base. Sizes are clamped so that no
// segment reaches into the next one's positions: a segment that grew past
// where its successor starts (garbage left by a failed write) is read only
// up to that point.
func listSegments(dir string) ([]*segment, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("spool directory %s: %w", dir, err)
	}
	var segs []*segment
	for _, e := range entries {
		base, ok := parseSegmentName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("spool segment %s: %w", filepath.Join(dir, e.Name()), err)
		}
		segs = append(segs, &segment{base: base, size: info.Size(), path: filepath.Join(dir, e.Name()), records: -1})
	}
	slices.SortFunc(segs, func(a, b *segment) int { return compareInt64(a.base, b.base) })
	for i := 0; i+1 < len(segs); i++ {
		segs[i].size = min(segs[i].size, segs[i+1].base-segs[i].base)
	}
	return segs, nil
}

func compareInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// readAck returns the acknowledged position in dir's ack file: 0 when there
// is none, and an error wrapping errCorruptAck when it does not check.
func readAck(dir string) (int64, error) {
	path := filepath.Join(dir, ackFileName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("spool ack file %s: %w", path, err)
	}
	if len(b) != ackFileSize || [4]byte(b[0:4]) != ackMagic ||
		binary.LittleEndian.Uint32(b[4:8]) != ackVersion ||
		binary.LittleEndian.Uint32(b[16:20]) != crc32.Checksum(b[0:16], castagnoli) {
		return 0, fmt.Errorf("spool ack file %s: %w", path, errCorruptAck)
	}
	pos := int64(binary.LittleEndian.Uint64(b[8:16]))
	if pos < 0 {
		return 0, fmt.Errorf("spool ack file %s: negative position: %w", path, errCorruptAck)
	}
	return pos, nil
}

// writeAck replaces dir's ack file with pos, atomically; with sync it is
// durable when writeAck returns.
func writeAck(dir string, pos int64, sync bool) error {
	var b [ackFileSize]byte
	copy(b[0:4], ackMagic[:])
	binary.LittleEndian.PutUint32(b[4:8], ackVersion)
	binary.LittleEndian.PutUint64(b[8:16], uint64(pos))
	binary.LittleEndian.PutUint32(b[16:20], crc32.Checksum(b[0:16], castagnoli))
	tmp := filepath.Join(dir, ackTempName)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("spool ack file: %w", err)
	}
	_, err = f.Write(b[:])
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("spool ack file %s: %w", tmp, err)
	}
	path := filepath.Join(dir, ackFileName)
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("spool ack file: %w", err)
	}
	if sync {
		return syncDir(dir)
	}
	return nil
}

// syncDir makes the directory's entries (created, renamed and removed
// files) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("spool directory: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("spool directory %s: sync: %w", dir, err)
	}
	return nil
}

// segmentFile is what the spool writes a segment through: an *os.File, or
// a fake in tests that fails like a full disk.
type segmentFile interface {
	io.Writer
	Sync() error
	Truncate(size int64) error
	Close() error
}

func createSegment(path string) (segmentFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool segment: %w", err)
	}
	return f, nil
}

// segmentReader is what the spool reads a segment through: an *os.File, or
// a fake in tests that fails like a bad disk.
type segmentReader interface {
	io.ReaderAt
	io.Closer
}

func openSegment(path string) (segmentReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("spool segment: %w", err)
	}
	return f, nil
}
