package spool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
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

func ends(recs []Record) []int64 {
	out := make([]int64, len(recs))
	for i, r := range recs {
		out[i] = r.End
	}
	return out
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
