package spool

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/logferry/logferry/shared/loki"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// frameBytes is the size of the records testRecord makes.
const frameBytes = 512

// testRecord returns record i, whose frame is exactly frameBytes long.
func testRecord(i int) Record {
	r := Record{
		Stream:   fmt.Sprintf(`{container_name="c%d", source="stdout"}`, i%3),
		TimeNano: 1_700_000_000_000_000_000 + int64(i),
		Metadata: []loki.LabelPairAdapter{{Name: "container_id", Value: fmt.Sprintf("%064x", i%3)}},
	}
	prefix := fmt.Sprintf("line %08d ", i)
	r.Line = prefix
	for headerSize+payloadSize(&r) < frameBytes {
		r.Line += "."
	}
	if headerSize+payloadSize(&r) != frameBytes {
		panic("testRecord cannot make an exact frame")
	}
	return r
}

func testRecords(from, to int) []Record {
	var out []Record
	for i := from; i < to; i++ {
		out = append(out, testRecord(i))
	}
	return out
}

func testConfig(t *testing.T) Config {
	cfg := DefaultConfig()
	cfg.Dir = filepath.Join(t.TempDir(), "spool")
	cfg.SegmentBytes = 8 * frameBytes * 8 // 64 records
	cfg.MaxBytes = 1 << 20
	cfg.Fsync = FsyncNever
	return cfg
}

func open(t *testing.T, cfg Config) *Spool {
	t.Helper()
	s, err := Open(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func appendEach(t *testing.T, s *Spool, recs []Record) {
	t.Helper()
	for _, r := range recs {
		if err := s.Append(r); err != nil {
			t.Fatal(err)
		}
	}
}

// readAllFrom reads s to the end in batches of batch records.
func readAllFrom(t *testing.T, s *Spool, batch int) []Record {
	t.Helper()
	var out []Record
	for {
		recs, err := s.Read(batch, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return out
		}
		if len(recs) > batch {
			t.Fatalf("Read returned %d records, asked for %d", len(recs), batch)
		}
		out = append(out, recs...)
	}
}

// sameRecords compares records without their positions, and checks that
// the positions grow.
func sameRecords(t *testing.T, got, want []Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	var last int64 = -1
	for i := range got {
		if got[i].End <= last {
			t.Fatalf("record %d ends at %d, not after %d", i, got[i].End, last)
		}
		last = got[i].End
		g := got[i]
		g.End = 0
		if !reflect.DeepEqual(g, want[i]) {
			t.Fatalf("record %d is %q, want %q", i, g.Line, want[i].Line)
		}
	}
}

func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if _, ok := parseSegmentName(e.Name()); ok {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	for _, policy := range []FsyncPolicy{FsyncAlways, FsyncInterval, FsyncNever} {
		t.Run(string(policy), func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Fsync = policy
			s := open(t, cfg)
			want := testRecords(0, 300)
			appendEach(t, s, want[:100])
			if err := s.Append(want[100:]...); err != nil {
				t.Fatal(err)
			}
			got := readAllFrom(t, s, 7)
			sameRecords(t, got, want)
			// 64 records, then 36, then the 200 of one Append together:
			// an Append is never split across segments.
			if n := len(segmentFiles(t, cfg.Dir)); n != 3 {
				t.Errorf("%d segments, want 3", n)
			}
			st := s.Stats()
			if st.Appended != 300 || st.Replayed != 300 || st.Corrupt+st.Torn != 0 {
				t.Errorf("stats %+v", st)
			}
			if st.DiskBytes != 300*frameBytes || st.UnackedBytes != 300*frameBytes {
				t.Errorf("disk %d, unacked %d bytes, want %d", st.DiskBytes, st.UnackedBytes, 300*frameBytes)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
			defer cancel()
			if err := s.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Wait with everything read: %v", err)
			}
		})
	}
}

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

func TestRestartResumesAfterAck(t *testing.T) {
	cfg := testConfig(t)
	want := testRecords(0, 200)
	s := open(t, cfg)
	appendEach(t, s, want)
	got, err := s.Read(70, 1<<20)
	if err != nil || len(got) != 70 {
		t.Fatalf("read %d, %v", len(got), err)
	}
	if err := s.Ack(got[49].End); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Acked != 50 {
		t.Errorf("%d records acked, want 50", st.Acked)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Records 50 and on, none before and none twice; new appends after.
	s = open(t, cfg)
	appendEach(t, s, testRecords(200, 210))
	got = readAllFrom(t, s, 64)
	sameRecords(t, got, append(want[50:], testRecords(200, 210)...))

	// Without an ack, the next restart replays the same again.
	s.Close()
	s = open(t, cfg)
	again := readAllFrom(t, s, 1000)
	sameRecords(t, again, append(want[50:], testRecords(200, 210)...))
	if !slices.Equal(ends(again), ends(got)) {
		t.Errorf("positions changed across a restart")
	}

	// Acknowledge everything: nothing replays, no segment is left.
	if err := s.Ack(again[len(again)-1].End); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if files := segmentFiles(t, cfg.Dir); len(files) != 0 {
		t.Errorf("segments left after everything was acknowledged and closed: %v", files)
	}
	s = open(t, cfg)
	if got := readAllFrom(t, s, 100); len(got) != 0 {
		t.Errorf("%d records replayed after everything was acknowledged", len(got))
	}
	// Positions keep growing after the directory emptied.
	appendEach(t, s, testRecords(300, 301))
	got = readAllFrom(t, s, 100)
	if len(got) != 1 || got[0].End <= again[len(again)-1].End {
		t.Errorf("after emptying: %d records, end %d, last end before %d", len(got), got[0].End, again[len(again)-1].End)
	}
}

func ends(recs []Record) []int64 {
	out := make([]int64, len(recs))
	for i, r := range recs {
		out[i] = r.End
	}
	return out
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

func TestAckDeletesSegments(t *testing.T) {
	cfg := testConfig(t)
	s := open(t, cfg)
	appendEach(t, s, testRecords(0, 64*4+10)) // 4 full segments and one begun
	files := segmentFiles(t, cfg.Dir)
	if len(files) != 5 {
		t.Fatalf("%d segments, want 5", len(files))
	}
	got := readAllFrom(t, s, 100)

	// Inside the second segment: only the first goes.
	if err := s.Ack(got[64+3].End); err != nil {
		t.Fatal(err)
	}
	if left := segmentFiles(t, cfg.Dir); !slices.Equal(left, files[1:]) {
		t.Errorf("after acking into segment 2: %v, want %v", left, files[1:])
	}
	// The end of the fourth: the first four go, exactly at the boundary.
	if err := s.Ack(got[64*4-1].End); err != nil {
		t.Fatal(err)
	}
	if left := segmentFiles(t, cfg.Dir); !slices.Equal(left, files[4:]) {
		t.Errorf("after acking 4 segments: %v, want %v", left, files[4:])
	}
	// All of it: the active segment stays until Close.
	if err := s.Ack(got[len(got)-1].End); err != nil {
		t.Fatal(err)
	}
	if left := segmentFiles(t, cfg.Dir); !slices.Equal(left, files[4:]) {
		t.Errorf("after acking all: %v, want the active one %v", left, files[4:])
	}
	st := s.Stats()
	if st.Segments != 1 || st.DiskBytes != 10*frameBytes || st.UnackedBytes != 0 || st.Acked != int64(len(got)) {
		t.Errorf("stats %+v", st)
	}
	// Acks that go back or past the end are harmless.
	if err := s.Ack(5); err != nil {
		t.Fatal(err)
	}
	if err := s.Ack(1 << 60); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.AckedPosition != got[len(got)-1].End {
		t.Errorf("acked position %d, want %d", st.AckedPosition, got[len(got)-1].End)
	}
	s.Close()
	if left := segmentFiles(t, cfg.Dir); len(left) != 0 {
		t.Errorf("after Close: %v", left)
	}
}

// lastSegment returns the path of the newest segment file.
func lastSegment(t *testing.T, dir string) string {
	t.Helper()
	files := segmentFiles(t, dir)
	if len(files) == 0 {
		t.Fatal("no segment")
	}
	return filepath.Join(dir, files[len(files)-1])
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

func TestDropOldest(t *testing.T) {
	cfg := testConfig(t)
	cfg.SegmentBytes = 8 * frameBytes
	cfg.MaxBytes = 3 * cfg.SegmentBytes
	cfg.Full = DropOldest
	reg := prometheus.NewRegistry()
	s, err := Open(cfg, NewMetrics(reg), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	// 40 records in segments of 8, room for 3: segments 1 and 2 go.
	want := testRecords(0, 40)
	appendEach(t, s, want)
	st := s.Stats()
	if st.Dropped != 16 || st.Segments != 3 || st.DiskBytes != 24*frameBytes {
		t.Fatalf("dropped %d, %d segments of %d bytes; want 16, 3, %d", st.Dropped, st.Segments, st.DiskBytes, 24*frameBytes)
	}
	got := readAllFrom(t, s, 5)
	sameRecords(t, got, want[16:])
	dropped := testutil.ToFloat64(s.metrics.recordsDropped.WithLabelValues(cfg.Dir, ReasonSpoolFull))
	if dropped != 16 {
		t.Errorf("dropped metric %v, want 16", dropped)
	}

	// Partly acknowledged: only what was not acknowledged counts.
	if err := s.Ack(got[2].End); err != nil {
		t.Fatal(err)
	}
	appendEach(t, s, testRecords(40, 48)) // the oldest segment (16..23) goes
	if st := s.Stats(); st.Dropped != 16+5 {
		t.Errorf("dropped %d after a partial ack, want %d", st.Dropped, 16+5)
	}
	// Records read and not acknowledged (24..39) are counted when their
	// segments go: the spool can no longer replay them.
	s.Close()

	// After a restart the counts come from reading the segments.
	s, err = Open(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	appendEach(t, s, testRecords(48, 56)) // segment 24..31 goes
	if st := s.Stats(); st.Dropped != 8 {
		t.Errorf("dropped %d after a restart, want 8", st.Dropped)
	}
	sameRecords(t, readAllFrom(t, s, 100), testRecords(32, 56))
}

func TestDropOldestActiveSegment(t *testing.T) {
	cfg := testConfig(t)
	cfg.SegmentBytes = 8 * frameBytes
	cfg.MaxBytes = 2 * cfg.SegmentBytes
	s := open(t, cfg)
	appendEach(t, s, testRecords(0, 8))
	// One append as large as the whole spool: everything before goes,
	// the active segment too.
	big := testRecords(8, 24)
	if err := s.Append(big...); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Dropped != 8 || st.DiskBytes != 16*frameBytes {
		t.Errorf("stats %+v", st)
	}
	sameRecords(t, readAllFrom(t, s, 100), big)
	if err := s.Append(testRecords(0, 25)...); !errors.Is(err, ErrTooLarge) {
		t.Errorf("append over spool-max-size: %v", err)
	}
}

func TestRefuse(t *testing.T) {
	cfg := testConfig(t)
	cfg.SegmentBytes = 8 * frameBytes
	cfg.MaxBytes = 3 * cfg.SegmentBytes
	cfg.Full = Refuse
	reg := prometheus.NewRegistry()
	s, err := Open(cfg, NewMetrics(reg), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := testRecords(0, 24)
	appendEach(t, s, want)
	for i := 24; i < 29; i++ {
		if err := s.Append(testRecord(i)); !errors.Is(err, ErrFull) {
			t.Fatalf("append %d: %v, want ErrFull", i, err)
		}
	}
	if err := s.Append(testRecords(29, 32)...); !errors.Is(err, ErrFull) {
		t.Fatalf("append of 3: %v, want ErrFull", err)
	}
	st := s.Stats()
	if st.Refused != 8 || st.Dropped != 0 || st.Appended != 24 {
		t.Errorf("refused %d, dropped %d, appended %d; want 8, 0, 24", st.Refused, st.Dropped, st.Appended)
	}
	if v := testutil.ToFloat64(s.metrics.recordsRefused.WithLabelValues(cfg.Dir, ReasonFull)); v != 8 {
		t.Errorf("refused metric %v, want 8", v)
	}
	// Acknowledging the first segment makes room for exactly 8 more.
	got := readAllFrom(t, s, 100)
	sameRecords(t, got, want)
	if err := s.Ack(got[7].End); err != nil {
		t.Fatal(err)
	}
	appendEach(t, s, testRecords(100, 108))
	if err := s.Append(testRecord(108)); !errors.Is(err, ErrFull) {
		t.Errorf("append past the room made: %v", err)
	}
	sameRecords(t, readAllFrom(t, s, 100), testRecords(100, 108))
}

// fullDisk makes segment files that fail like a full filesystem once free
// bytes are used up, and counts fsyncs.
type fullDisk struct {
	mu            sync.Mutex
	free          int64
	truncateFails bool
	syncs         atomic.Int64
}

func (d *fullDisk) create(path string) (segmentFile, error) {
	f, err := createSegment(path)
	if err != nil {
		return nil, err
	}
	return &fullDiskFile{File: f.(*os.File), d: d}, nil
}

func (d *fullDisk) setFree(n int64) {
	d.mu.Lock()
	d.free = n
	d.mu.Unlock()
}

type fullDiskFile struct {
	*os.File
	d *fullDisk
}

func (f *fullDiskFile) Write(p []byte) (int, error) {
	f.d.mu.Lock()
	defer f.d.mu.Unlock()
	if int64(len(p)) <= f.d.free {
		f.d.free -= int64(len(p))
		return f.File.Write(p)
	}
	n, _ := f.File.Write(p[:f.d.free])
	f.d.free = 0
	return n, &fs.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
}

func (f *fullDiskFile) Truncate(size int64) error {
	if f.d.truncateFails {
		return &fs.PathError{Op: "truncate", Path: f.Name(), Err: syscall.EIO}
	}
	return f.File.Truncate(size)
}

func (f *fullDiskFile) Sync() error {
	f.d.syncs.Add(1)
	return f.File.Sync()
}

func TestWriteErrorAndRecovery(t *testing.T) {
	for _, truncateFails := range []bool{false, true} {
		t.Run(fmt.Sprintf("truncate fails %v", truncateFails), func(t *testing.T) {
			cfg := testConfig(t)
			s := open(t, cfg)
			disk := &fullDisk{free: 10*frameBytes + 100, truncateFails: truncateFails}
			s.create = disk.create
			appendEach(t, s, testRecords(0, 10))
			for i := 10; i < 15; i++ {
				err := s.Append(testRecord(i))
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("append on a full disk: %v", err)
				}
				if !strings.Contains(err.Error(), cfg.Dir) {
					t.Errorf("error does not name the file: %v", err)
				}
			}
			st := s.Stats()
			if st.Refused != 5 || !st.WriteFailing || st.Appended != 10 {
				t.Errorf("refused %d, failing %v, appended %d", st.Refused, st.WriteFailing, st.Appended)
			}
			// Space comes back.
			disk.setFree(1 << 30)
			appendEach(t, s, testRecords(15, 20))
			if st := s.Stats(); st.WriteFailing {
				t.Error("still failing after a write worked")
			}
			want := append(testRecords(0, 10), testRecords(15, 20)...)
			sameRecords(t, readAllFrom(t, s, 100), want)
			if st := s.Stats(); st.Corrupt+st.Torn != 0 {
				t.Errorf("damage read in this process: %+v", st)
			}
			s.Close()

			// After a restart, whatever a failed write left is skipped.
			s = open(t, cfg)
			sameRecords(t, readAllFrom(t, s, 100), want)
			st = s.Stats()
			if truncateFails && (st.Torn != 1 || st.TornBytes != 100) {
				t.Errorf("torn %d (%d bytes); want the 100 bytes of the failed write", st.Torn, st.TornBytes)
			}
			if !truncateFails && st.Torn+st.Corrupt != 0 {
				t.Errorf("damage after an undone write: %+v", st)
			}
		})
	}
}

// smallFS is a filesystem of capacity bytes holding only dir's files: its
// free space is what they leave, so deleting a segment gives space back.
type smallFS struct {
	dir      string
	capacity int64
}

func (d *smallFS) create(path string) (segmentFile, error) {
	f, err := createSegment(path)
	if err != nil {
		return nil, err
	}
	return &smallFSFile{File: f.(*os.File), d: d}, nil
}

func (d *smallFS) free() int64 {
	used := int64(0)
	entries, _ := os.ReadDir(d.dir)
	for _, e := range entries {
		if info, err := e.Info(); err == nil {
			used += info.Size()
		}
	}
	return d.capacity - used
}

type smallFSFile struct {
	*os.File
	d *smallFS
}

func (f *smallFSFile) Write(p []byte) (int, error) {
	if free := f.d.free(); int64(len(p)) > free {
		n, _ := f.File.Write(p[:max(free, 0)])
		return n, &fs.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	return f.File.Write(p)
}

// A filesystem that an outage filled, all of it acknowledged since, takes
// new records: the acknowledged segments, the active one included, are
// deleted when a write finds the disk full.
func TestFullDiskOfAcknowledgedRecords(t *testing.T) {
	cfg := testConfig(t)
	s := open(t, cfg)
	disk := &smallFS{dir: cfg.Dir, capacity: 20*frameBytes + 100}
	s.create = disk.create
	appendEach(t, s, testRecords(0, 20))
	if err := s.Append(testRecord(20)); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append on a full disk: %v", err)
	}
	got := readAllFrom(t, s, 100)
	sameRecords(t, got, testRecords(0, 20))
	if err := s.Ack(got[len(got)-1].End); err != nil {
		t.Fatal(err)
	}
	appendEach(t, s, testRecords(21, 35))
	sameRecords(t, readAllFrom(t, s, 100), testRecords(21, 35))
	if st := s.Stats(); st.Refused != 1 || st.WriteFailing {
		t.Errorf("refused %d, failing %v; want the one append made before the ack", st.Refused, st.WriteFailing)
	}
}

func TestSegmentCreateFails(t *testing.T) {
	cfg := testConfig(t)
	s := open(t, cfg)
	s.create = func(path string) (segmentFile, error) {
		return nil, fmt.Errorf("spool segment: %w", &fs.PathError{Op: "open", Path: path, Err: syscall.ENOSPC})
	}
	if err := s.Append(testRecord(0)); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append: %v", err)
	}
	s.create = createSegment
	appendEach(t, s, testRecords(1, 2))
	sameRecords(t, readAllFrom(t, s, 10), testRecords(1, 2))
}

func TestFsyncPolicies(t *testing.T) {
	for _, c := range []struct {
		policy FsyncPolicy
		atLeast,
		atMost int64
	}{
		{FsyncAlways, 20, 1 << 20},
		{FsyncInterval, 1, 1 << 20},
		{FsyncNever, 0, 0},
	} {
		t.Run(string(c.policy), func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Fsync = c.policy
			cfg.FsyncInterval = time.Millisecond
			s := open(t, cfg)
			disk := &fullDisk{free: 1 << 30}
			s.create = disk.create
			appendEach(t, s, testRecords(0, 20))
			if c.policy == FsyncInterval {
				// The background sync, not Close's.
				deadline := time.Now().Add(10 * time.Second)
				for disk.syncs.Load() == 0 {
					if time.Now().After(deadline) {
						t.Fatal("no fsync within 10 s at a 1 ms interval")
					}
					time.Sleep(time.Millisecond)
				}
			}
			s.Close()
			if n := disk.syncs.Load(); n < c.atLeast || n > c.atMost {
				t.Errorf("%d fsyncs, want %d to %d", n, c.atLeast, c.atMost)
			}
		})
	}
}

func TestConcurrentAppend(t *testing.T) {
	cfg := testConfig(t)
	cfg.Fsync = FsyncInterval
	cfg.FsyncInterval = time.Millisecond
	s := open(t, cfg)
	const writers, each = 8, 300
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				r := Record{Stream: fmt.Sprintf(`{writer="%d"}`, w), TimeNano: int64(i), Line: strings.Repeat("x", i%200)}
				if i%10 == 0 {
					if err := s.Append(r, r); err != nil { // a batch: both or none
						t.Error(err)
						return
					}
					continue
				}
				if err := s.Append(r); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	// One reader, acknowledging as it goes, concurrently with the writers.
	total := writers * (each + each/10)
	next := make([]int64, writers)
	dup := make([]bool, writers)
	got := 0
	for got < total {
		if err := s.Wait(ctx); err != nil {
			t.Fatalf("after %d records: %v", got, err)
		}
		recs, err := s.Read(50, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			var w int
			fmt.Sscanf(r.Stream, `{writer="%d"}`, &w)
			switch {
			case r.TimeNano == next[w]:
				dup[w] = r.TimeNano%10 == 0
				next[w]++
			case dup[w] && r.TimeNano == next[w]-1:
				dup[w] = false
			default:
				t.Fatalf("writer %d: record %d after %d", w, r.TimeNano, next[w]-1)
			}
		}
		got += len(recs)
		if len(recs) > 0 {
			if err := s.Ack(recs[len(recs)-1].End); err != nil {
				t.Fatal(err)
			}
		}
	}
	wg.Wait()
	st := s.Stats()
	if st.Appended != int64(total) || st.Acked != int64(total) || st.UnackedBytes != 0 {
		t.Errorf("stats %+v, want %d appended and acked", st, total)
	}
}

func TestOverflow(t *testing.T) {
	s := open(t, testConfig(t))
	var ov loki.Overflow = s
	entries := []loki.Entry{
		{Stream: `{a="1"}`, TimeNano: 5, Line: "one", Metadata: []loki.LabelPairAdapter{{Name: "k", Value: "v"}}, Offset: 99},
		{Stream: `{a="2"}`, TimeNano: 6, Line: "two"},
	}
	if err := ov.Overflow(entries, loki.ReasonQueueFull); err != nil {
		t.Fatal(err)
	}
	recs := readAllFrom(t, s, 10)
	if len(recs) != 2 {
		t.Fatalf("%d records", len(recs))
	}
	for i, r := range recs {
		e := r.Entry()
		want := entries[i]
		want.Offset = r.End
		if !reflect.DeepEqual(e, want) {
			t.Errorf("entry %d: %+v, want %+v", i, e, want)
		}
	}
}

func TestTooLarge(t *testing.T) {
	s := open(t, testConfig(t))
	err := s.Append(testRecord(0), Record{Line: strings.Repeat("x", MaxRecordBytes)})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("append: %v", err)
	}
	if st := s.Stats(); st.Refused != 2 || st.Appended != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestLocked(t *testing.T) {
	cfg := testConfig(t)
	open(t, cfg)
	_, err := Open(cfg, nil, nil)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), cfg.Dir) {
		t.Fatalf("second Open: %v", err)
	}
}

func TestClosed(t *testing.T) {
	s := open(t, testConfig(t))
	s.Close()
	if err := s.Append(testRecord(0)); !errors.Is(err, ErrClosed) {
		t.Errorf("Append: %v", err)
	}
	if _, err := s.Read(1, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("Read: %v", err)
	}
	if err := s.Ack(1); !errors.Is(err, ErrClosed) {
		t.Errorf("Ack: %v", err)
	}
	if err := s.Wait(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Wait: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestCorruptAckFileReplaysAll(t *testing.T) {
	cfg := testConfig(t)
	s := open(t, cfg)
	want := testRecords(0, 10)
	appendEach(t, s, want)
	got := readAllFrom(t, s, 10)
	if err := s.Ack(got[4].End); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.WriteFile(filepath.Join(cfg.Dir, ackFileName), []byte("not an ack file at all!"), 0o600); err != nil {
		t.Fatal(err)
	}
	s = open(t, cfg)
	sameRecords(t, readAllFrom(t, s, 100), want)
}

func TestOpenErrors(t *testing.T) {
	cfg := testConfig(t)
	if err := os.WriteFile(cfg.Dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(cfg, nil, nil); err == nil || !strings.Contains(err.Error(), cfg.Dir) {
		t.Errorf("Open on a file: %v", err)
	}
	cfg.Dir = ""
	if _, err := Open(cfg, nil, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Open without a directory: %v", err)
	}
}

func TestMetrics(t *testing.T) {
	cfg := testConfig(t)
	cfg.SegmentBytes = 8 * frameBytes
	reg := prometheus.NewRegistry()
	s, err := Open(cfg, NewMetrics(reg), nil)
	if err != nil {
		t.Fatal(err)
	}
	appendEach(t, s, testRecords(0, 20))
	got := readAllFrom(t, s, 100)
	if err := s.Ack(got[11].End); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`
# HELP logferry_spool_bytes Bytes in the spool's segment files.
# TYPE logferry_spool_bytes gauge
logferry_spool_bytes{dir=%[1]q} %[2]d
# HELP logferry_spool_bytes_acked_total Spool bytes acknowledged.
# TYPE logferry_spool_bytes_acked_total counter
logferry_spool_bytes_acked_total{dir=%[1]q} %[3]d
# HELP logferry_spool_records_acked_total Records read back in this process and then acknowledged.
# TYPE logferry_spool_records_acked_total counter
logferry_spool_records_acked_total{dir=%[1]q} 12
# HELP logferry_spool_records_appended_total Records written to the spool.
# TYPE logferry_spool_records_appended_total counter
logferry_spool_records_appended_total{dir=%[1]q} 20
# HELP logferry_spool_records_replayed_total Records read back from the spool (again after a rewind).
# TYPE logferry_spool_records_replayed_total counter
logferry_spool_records_replayed_total{dir=%[1]q} 20
# HELP logferry_spool_segments Segment files in the spool.
# TYPE logferry_spool_segments gauge
logferry_spool_segments{dir=%[1]q} 2
# HELP logferry_spool_unacked_bytes Bytes in the spool not yet acknowledged.
# TYPE logferry_spool_unacked_bytes gauge
logferry_spool_unacked_bytes{dir=%[1]q} %[4]d
`, cfg.Dir, 12*frameBytes, 12*frameBytes, 8*frameBytes)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"logferry_spool_bytes", "logferry_spool_bytes_acked_total", "logferry_spool_records_acked_total",
		"logferry_spool_records_appended_total", "logferry_spool_records_replayed_total",
		"logferry_spool_segments", "logferry_spool_unacked_bytes"); err != nil {
		t.Error(err)
	}
	s.Close()
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
		t.Errorf("%d series left after Close (%v)", n, err)
	}
}

func TestFullReclaimsAcknowledgedActiveSegment(t *testing.T) {
	for _, policy := range []FullPolicy{Refuse, DropOldest} {
		t.Run(string(policy), func(t *testing.T) {
			cfg := testConfig(t)
			cfg.SegmentBytes = 8 * frameBytes
			cfg.MaxBytes = 2 * cfg.SegmentBytes
			cfg.Full = policy
			s := open(t, cfg)
			appendEach(t, s, testRecords(0, 12)) // 8, and 4 in the active segment
			got := readAllFrom(t, s, 100)
			if err := s.Ack(got[len(got)-1].End); err != nil {
				t.Fatal(err)
			}
			// As large as the spool: fits once the acknowledged active
			// segment is gone, with nothing refused or dropped.
			if err := s.Append(testRecords(12, 28)...); err != nil {
				t.Fatal(err)
			}
			if st := s.Stats(); st.Refused != 0 || st.Dropped != 0 || st.Segments != 1 {
				t.Errorf("stats %+v", st)
			}
			sameRecords(t, readAllFrom(t, s, 100), testRecords(12, 28))
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
