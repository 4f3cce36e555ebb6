package spool

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/logferry/logferry/shared/atomicfile"
)

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

// An ack write a crash interrupted leaves a temporary file: Open removes
// it, in package atomicfile's naming and in the one of earlier versions,
// and keeps the acknowledged position.
func TestOpenRemovesInterruptedAckWrites(t *testing.T) {
	cfg := testConfig(t)
	s := open(t, cfg)
	appendEach(t, s, testRecords(0, 10))
	got, err := s.Read(4, 1<<20)
	if err != nil || len(got) != 4 {
		t.Fatalf("read %d, %v", len(got), err)
	}
	if err := s.Ack(got[3].End); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	temps := []string{legacyAckTempName, atomicfile.TempPrefix + ackFileName + "-123456.tmp"}
	for _, name := range temps {
		if err := os.WriteFile(filepath.Join(cfg.Dir, name), []byte("half an ack"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s = open(t, cfg)
	for _, name := range temps {
		if _, err := os.Stat(filepath.Join(cfg.Dir, name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left after Open: %v", name, err)
		}
	}
	sameRecords(t, readAllFrom(t, s, 3), testRecords(4, 10))
}

// The ack file is written through package atomicfile: no temporary file
// stays beside it.
func TestAckLeavesNoTemporaryFile(t *testing.T) {
	for _, policy := range []FsyncPolicy{FsyncAlways, FsyncNever} {
		t.Run(string(policy), func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Fsync = policy
			s := open(t, cfg)
			appendEach(t, s, testRecords(0, 3))
			got, err := s.Read(3, 1<<20)
			if err != nil || len(got) != 3 {
				t.Fatalf("read %d, %v", len(got), err)
			}
			if err := s.Ack(got[2].End); err != nil {
				t.Fatal(err)
			}
			acked, err := readAck(cfg.Dir)
			if err != nil || acked != got[2].End {
				t.Fatalf("ack file says %d (%v), want %d", acked, err, got[2].End)
			}
			temps, _ := filepath.Glob(filepath.Join(cfg.Dir, atomicfile.TempPrefix+"*"))
			if len(temps) > 0 {
				t.Fatalf("temporary files left: %v", temps)
			}
		})
	}
}
