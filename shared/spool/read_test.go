package spool

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestReadLimits(t *testing.T) {
	s := open(t, testConfig(t))
	appendEach(t, s, testRecords(0, 10))
	recs, err := s.Read(100, 3*frameBytes)
	if err != nil || len(recs) != 3 {
		t.Fatalf("Read by bytes: %d records, %v; want 3", len(recs), err)
	}
	recs, err = s.Read(100, 1)
	if err != nil || len(recs) != 1 {
		t.Fatalf("Read with a byte limit below one record: %d records, %v; want 1", len(recs), err)
	}
	recs, err = s.Read(2, 1<<20)
	if err != nil || len(recs) != 2 || recs[1].Line != testRecord(5).Line {
		t.Fatalf("Read by count: %d records, %v", len(recs), err)
	}
}

func TestWaitWakesOnAppend(t *testing.T) {
	s := open(t, testConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Wait(ctx) }()
	appendEach(t, s, testRecords(0, 1))
	if err := <-done; err != nil {
		t.Fatalf("Wait: %v", err)
	}
	go func() { done <- s.Wait(ctx) }()
	if recs, _ := s.Read(10, 1<<20); len(recs) != 1 {
		t.Fatalf("read %d records", len(recs))
	}
	s.Close()
	if err := <-done; err != nil && !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait after Close: %v", err)
	}
}

func TestRewind(t *testing.T) {
	s := open(t, testConfig(t))
	want := testRecords(0, 100)
	appendEach(t, s, want)
	got, _ := s.Read(30, 1<<20)
	if err := s.Ack(got[9].End); err != nil {
		t.Fatal(err)
	}
	s.Rewind()
	sameRecords(t, readAllFrom(t, s, 16), want[10:])
}

func TestTornTail(t *testing.T) {
	for _, cut := range []int{1, 7, frameBytes - headerSize, frameBytes - 3} {
		t.Run(fmt.Sprintf("cut %d", cut), func(t *testing.T) {
			cfg := testConfig(t)
			s := open(t, cfg)
			want := testRecords(0, 20)
			appendEach(t, s, want)
			s.Close()
			// A crash in the middle of writing the last record.
			path := lastSegment(t, cfg.Dir)
			info, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, info.Size()-int64(cut)); err != nil {
				t.Fatal(err)
			}
			s = open(t, cfg)
			appendEach(t, s, testRecords(20, 25))
			got := readAllFrom(t, s, 8)
			sameRecords(t, got, append(want[:19], testRecords(20, 25)...))
			st := s.Stats()
			if st.Torn != 1 || st.TornBytes != int64(frameBytes-cut) || st.Corrupt != 0 {
				t.Errorf("torn %d (%d bytes), corrupt %d; want 1 torn of %d bytes", st.Torn, st.TornBytes, st.Corrupt, frameBytes-cut)
			}
			// Counted once, however often it is read again.
			s.Rewind()
			readAllFrom(t, s, 100)
			if st := s.Stats(); st.Torn != 1 {
				t.Errorf("torn counted %d times", st.Torn)
			}
		})
	}
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x10
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func TestFlippedBytes(t *testing.T) {
	cases := []struct {
		name    string
		flips   []int64 // offsets in the first segment
		damaged []int   // records lost
		runs    int64   // damaged runs counted
	}{
		{"payload", []int64{10*frameBytes + 200}, []int{10}, 1},
		{"length", []int64{10*frameBytes + 5}, []int{10}, 1},
		{"magic", []int64{10 * frameBytes}, []int{10}, 1},
		{"three records", []int64{3*frameBytes + 100, 30*frameBytes + 4, 31*frameBytes + 499}, []int{3, 30, 31}, 3},
		{"two headers in a row", []int64{40*frameBytes + 13, 41*frameBytes + 1}, []int{40, 41}, 1},
		{"last of the segment", []int64{63*frameBytes + 300}, []int{63}, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig(t)
			s := open(t, cfg)
			want := testRecords(0, 150) // three segments
			appendEach(t, s, want)
			s.Close()
			first := filepath.Join(cfg.Dir, segmentFiles(t, cfg.Dir)[0])
			for _, off := range c.flips {
				flipByte(t, first, off)
			}
			s = open(t, cfg)
			got := readAllFrom(t, s, 10)
			var expect []Record
			for i, r := range want {
				if !slices.Contains(c.damaged, i) {
					expect = append(expect, r)
				}
			}
			sameRecords(t, got, expect)
			st := s.Stats()
			if st.Corrupt != c.runs || st.CorruptBytes != int64(len(c.damaged)*frameBytes) || st.Torn != 0 {
				t.Errorf("corrupt %d (%d bytes), torn %d; want %d of %d bytes", st.Corrupt, st.CorruptBytes, st.Torn,
					c.runs, len(c.damaged)*frameBytes)
			}
		})
	}
}

// badSector fails reads that reach past its offset, like a bad disk.
type badSector struct {
	segmentReader
	at int64
}

func (b badSector) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) <= b.at {
		return b.segmentReader.ReadAt(p, off)
	}
	n := 0
	if off < b.at {
		n, _ = b.segmentReader.ReadAt(p[:b.at-off], off)
	}
	return n, &fs.PathError{Op: "read", Path: "segment", Err: syscall.EIO}
}

func TestUnreadableSegment(t *testing.T) {
	cfg := testConfig(t)
	s := open(t, cfg)
	want := testRecords(0, 150) // segments of 64, 64 and 22
	appendEach(t, s, want)
	first := filepath.Join(cfg.Dir, segmentFiles(t, cfg.Dir)[0])
	s.openRd = func(path string) (segmentReader, error) {
		f, err := openSegment(path)
		if err != nil || path != first {
			return f, err
		}
		return badSector{f, 10*frameBytes + 3}, nil
	}
	// The records before the bad sector, then the next segment on: the
	// rest of the segment is damage, counted, not an error forever.
	got := readAllFrom(t, s, 100)
	sameRecords(t, got, append(want[:10:10], want[64:]...))
	if st := s.Stats(); st.Corrupt != 1 || st.CorruptBytes != 54*frameBytes {
		t.Errorf("corrupt %d (%d bytes), want 1 of %d", st.Corrupt, st.CorruptBytes, 54*frameBytes)
	}
}

func TestSegmentOpenErrorIsRetried(t *testing.T) {
	cfg := testConfig(t)
	s := open(t, cfg)
	want := testRecords(0, 100) // segments of 64 and 36
	appendEach(t, s, want)
	second := filepath.Join(cfg.Dir, segmentFiles(t, cfg.Dir)[1])
	fail := true
	s.openRd = func(path string) (segmentReader, error) {
		if path == second && fail {
			return nil, fmt.Errorf("spool segment: %w", &fs.PathError{Op: "open", Path: path, Err: syscall.EMFILE})
		}
		return openSegment(path)
	}
	recs, err := s.Read(1000, 1<<30)
	if err != nil || len(recs) != 64 {
		t.Fatalf("first Read: %d records, %v; want the first segment", len(recs), err)
	}
	if _, err := s.Read(1000, 1<<30); !errors.Is(err, syscall.EMFILE) || !strings.Contains(err.Error(), second) {
		t.Fatalf("second Read: %v, want EMFILE naming the segment", err)
	}
	fail = false
	sameRecords(t, append(recs, readAllFrom(t, s, 1000)...), want)
}
