package spool

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/logferry/logferry/shared/loki"
)

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
