package spool

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

const (
	segmentExt   = ".seg"
	lockFileName = "lock"
)

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
