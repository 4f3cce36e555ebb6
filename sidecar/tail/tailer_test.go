package tail

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/logferry/logferry/sidecar/positions"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestTailBasic(t *testing.T) {
	m := NewMetrics(nil)
	w := startWatcher(t, WatcherConfig{}, m)
	dw := newDockerWriter(t, t.TempDir())
	for i := range 100 {
		dw.line("stdout", numbered(i, 10))
	}
	dw.entry("stderr", "with attrs\n", map[string]string{"com.example.team": "a", "env": "x=y"})

	r := startTailer(t, Config{Path: dw.path}, w, m, nil)
	gs := r.expect(101)
	checkSeq(t, gs[:100], 0, 10)
	if g := gs[100]; g.Stream != "stderr" || g.Text != "with attrs" || g.Attrs["com.example.team"] != "a" || g.Attrs["env"] != "x=y" {
		t.Errorf("attrs line: %+v", g)
	}
	if want := dw.base.Add(time.Microsecond).UnixNano(); gs[0].TimeNano != want || gs[0].Stream != "stdout" {
		t.Errorf("first line %+v, want time %d", gs[0], want)
	}

	// Lines written while it waits arrive through the watcher.
	for i := 100; i < 200; i++ {
		dw.line("stdout", numbered(i, 10))
	}
	checkSeq(t, r.expect(100), 100, 10)

	// The last token maps to the end of the file.
	p, ok := r.tl.Position(r.lastToken())
	fi, _ := os.Stat(dw.path)
	if !ok || p.Offset != fi.Size() || p.File.FingerprintLen != positions.FingerprintSize {
		t.Errorf("Position(last) = %+v, %v; file size %d", p, ok, fi.Size())
	}
	if rest := r.finish(); len(rest) != 0 {
		t.Errorf("Finish delivered %d more lines", len(rest))
	}
}

func TestWithoutWatcherPolls(t *testing.T) {
	dw := newDockerWriter(t, t.TempDir())
	r := startTailer(t, Config{Path: dw.path, PollInterval: 5 * time.Millisecond}, nil, nil, nil)
	for i := range 10 {
		dw.line("stdout", numbered(i, 0))
	}
	checkSeq(t, r.expect(10), 0, 0)
}

// The live file does not exist yet when the tailer starts.
func TestFileAppearsLater(t *testing.T) {
	w := startWatcher(t, WatcherConfig{}, nil)
	path := filepath.Join(t.TempDir(), "abc-json.log")
	r := startTailer(t, Config{Path: path}, w, nil, nil)
	r.waitIdle(0)
	dw := &dockerWriter{t: t, path: path, maxFiles: 1, base: time.Now()}
	dw.open()
	defer dw.f.Close()
	dw.line("stdout", numbered(1, 0))
	checkSeq(t, r.expect(1), 1, 0)
}

func TestFromEnd(t *testing.T) {
	w := startWatcher(t, WatcherConfig{}, nil)
	dw := newDockerWriter(t, t.TempDir())
	for i := range 50 {
		dw.line("stdout", numbered(i, 0))
	}
	// A line the daemon is writing right now is skipped, quietly.
	half := dw.entryBytes("stdout", numbered(50, 0)+"\n", nil)
	dw.raw(half[:20])
	m := NewMetrics(nil)
	r := startTailer(t, Config{Path: dw.path, FromEnd: true}, w, m, nil)
	r.waitIdle(0)
	dw.raw(half[20:])
	dw.line("stdout", numbered(51, 0))
	checkSeq(t, r.expect(1), 51, 0)
	if n := counter(m.skipped.WithLabelValues(reasonBadPosition)); n != 0 {
		t.Errorf("bad positions counted: %v", n)
	}
}

// Rotation by renaming, max-file=3, with and without compression: many
// rotations while the tailer follows, then two while it is blocked in the
// middle of a file, which is .2 or .2.gz when it gets to read on.
func TestRotationRenameChain(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		compress, deferCompress bool
	}{
		{"plain", false, false},
		{"compress", true, false},
		{"compression pending", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMetrics(nil)
			w := startWatcher(t, WatcherConfig{}, m)
			dw := newDockerWriter(t, t.TempDir())
			dw.maxSize, dw.maxFiles, dw.compress, dw.deferCompress = 4096, 3, tc.compress, tc.deferCompress

			// Following: batches of 1.5 files, so that rotations happen
			// while it reads but it is never more than two files behind
			// (with max-file=3, older files are deleted).
			r := startTailer(t, Config{Path: dw.path}, w, m, nil)
			r.waitIdle(0) // it has opened the live file: it starts there
			n := 0
			for n < 2000 {
				start := n
				for ; n < start+60; n++ { // ~6 KB: at most two rotations
					dw.line("stdout", numbered(n, 20))
					if tc.deferCompress && n%30 == 0 {
						dw.compressNow()
					}
				}
				checkSeq(t, r.expect(n-start), start, 20)
			}

			gate := make(chan struct{})
			r.setGate(gate)
			lagStart := n
			dw.line("stdout", numbered(n, 20))
			n++
			waitFor(t, "the tailer to block", func() bool { return r.entered.Load() == int64(n) })
			rot := dw.rotations
			for dw.rotations < rot+2 || dw.size < 1000 {
				dw.line("stdout", numbered(n, 20))
				n++
			}
			if tc.deferCompress {
				// .1 is complete; .1.gz is being written (here: not yet).
				if _, err := os.Stat(dw.path + ".1"); err != nil {
					t.Fatal(err)
				}
			}
			close(gate)
			checkSeq(t, r.expect(n-lagStart), lagStart, 20)
			if got := counter(m.rotations); got < 20 {
				t.Errorf("rotations counted: %v", got)
			}
			if got := counter(m.skipped.WithLabelValues(reasonTorn)); got != 0 {
				t.Errorf("torn lines: %v", got)
			}
		})
	}
}

// max-file=1 in current Docker: the file is removed and recreated.
func TestRotationRemoveRecreate(t *testing.T) {
	m := NewMetrics(nil)
	w := startWatcher(t, WatcherConfig{}, m)
	dw := newDockerWriter(t, t.TempDir())
	dw.maxSize, dw.maxFiles = 4096, 1

	// Batches of less than a file: with max-file=1, a file the tailer has
	// not opened when the next rotation removes it is lost.
	r := startTailer(t, Config{Path: dw.path}, w, m, nil)
	r.waitIdle(0)
	n := 0
	for n < 1000 {
		start := n
		for ; n < start+30; n++ { // ~3 KB: at most one rotation
			dw.line("stdout", numbered(n, 20))
		}
		checkSeq(t, r.expect(n-start), start, 20)
	}

	// Blocked in the middle of a file that is then removed and replaced:
	// the open handle still reads it to its end.
	gate := make(chan struct{})
	r.setGate(gate)
	lagStart := n
	dw.line("stdout", numbered(n, 20))
	n++
	waitFor(t, "the tailer to block", func() bool { return r.entered.Load() == int64(n) })
	rot := dw.rotations
	for dw.rotations < rot+1 || dw.size < 1000 {
		dw.line("stdout", numbered(n, 20))
		n++
	}
	close(gate)
	checkSeq(t, r.expect(n-lagStart), lagStart, 20)
	if got := counter(m.truncations); got != 0 {
		t.Errorf("truncations: %v", got)
	}
	if got := counter(m.rotations); got < 10 {
		t.Errorf("rotations: %v", got)
	}
}

// max-file=1 in Docker 20.10 truncates the file in place. The tailer is
// woken by hand, so that each truncation happens while it waits, as it does
// when it keeps up; lines between its last read and a truncation would be
// lost (not here: it has read everything).
func TestRotationTruncateInPlace(t *testing.T) {
	m := NewMetrics(nil)
	w := manualWatcher(t, m)
	dw := newDockerWriter(t, t.TempDir())
	dw.maxSize, dw.maxFiles, dw.truncate = 4096, 1, true
	r := startTailer(t, Config{Path: dw.path}, w, m, nil)
	n := 0
	writeUntil := func(size int64) {
		start := n
		for first := true; first || dw.size < size; first = false {
			dw.line("stdout", numbered(n, 20))
			n++
		}
		w.wake(true)
		checkSeq(t, r.expect(n-start), start, 20)
		r.waitIdle(int64(n))
	}
	writeUntil(4096)
	for round := range 5 {
		if dw.size < 4096 {
			writeUntil(4096)
		}
		// The first write truncates. Odd rounds leave the file shorter than
		// the offset read; even ones write past it (the fingerprint tells).
		if round%2 == 1 {
			writeUntil(300)
		} else {
			writeUntil(4096)
		}
	}
	if got := counter(m.truncations); got != 5 {
		t.Errorf("truncations: %v", got)
	}
	if got := counter(m.skipped.WithLabelValues(reasonCorrupt)); got != 0 {
		t.Errorf("corrupt lines: %v", got)
	}
}

func TestTruncationDetected(t *testing.T) {
	cases := []struct {
		name    string
		rewrite int // lines written after the truncation, before the tailer looks
	}{
		{"shorter than before", 2},
		{"rewritten past the old offset", 40},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMetrics(nil)
			w := manualWatcher(t, m)
			dw := newDockerWriter(t, t.TempDir())
			for i := range 20 {
				dw.line("stdout", numbered(i, 20))
			}
			r := startTailer(t, Config{Path: dw.path}, w, m, nil)
			checkSeq(t, r.expect(20), 0, 20)
			r.waitIdle(20)
			if err := dw.f.Truncate(0); err != nil {
				t.Fatal(err)
			}
			dw.size = 0
			for i := range tc.rewrite {
				dw.line("stdout", numbered(1000+i, 20))
			}
			w.wake(true)
			gs := r.expect(tc.rewrite)
			checkSeq(t, gs, 1000, 20)
			if got := counter(m.truncations); got != 1 {
				t.Errorf("truncations: %v", got)
			}
			if got := counter(m.skipped.WithLabelValues(reasonCorrupt)); got != 0 {
				t.Errorf("corrupt lines read after truncation: %v", got)
			}
			// Tokens after the truncation belong to a new generation and
			// map to the new content.
			b, _ := os.ReadFile(dw.path)
			p, ok := r.tl.Position(gs[0].Token)
			if !ok || p.Offset != int64(strings.IndexByte(string(b), '\n')+1) || p.File != identityOf(t, dw.path) {
				t.Errorf("Position after truncation: %+v %v", p, ok)
			}
		})
	}
}

// Resume after a restart from a saved position, while the file it names was
// rotated (and compressed) during the stop.
func TestResume(t *testing.T) {
	cases := []struct {
		name          string
		maxFiles      int
		compress      bool
		deferCompress bool
		rotations     int   // while stopped
		shift         int64 // added to the saved offset
		lost          bool  // the file is rotated away
	}{
		{name: "live file", maxFiles: 3, rotations: 0},
		{name: ".1", maxFiles: 3, rotations: 1},
		{name: ".2", maxFiles: 3, rotations: 2},
		{name: ".1.gz", maxFiles: 3, compress: true, rotations: 1},
		{name: ".2.gz", maxFiles: 3, compress: true, rotations: 2},
		{name: ".1 before compression", maxFiles: 3, compress: true, deferCompress: true, rotations: 1},
		{name: "not at a line start", maxFiles: 3, rotations: 1, shift: -5},
		{name: "rotated away", maxFiles: 2, rotations: 3, lost: true},
		{name: "rotated away compressed", maxFiles: 3, compress: true, rotations: 4, lost: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dw := newDockerWriter(t, t.TempDir())
			dw.maxSize, dw.maxFiles, dw.compress, dw.deferCompress = 4096, tc.maxFiles, tc.compress, tc.deferCompress
			// Less than two files, so that the first run reads all.
			n := 0
			for ; n < 60; n++ {
				dw.line("stdout", numbered(n, 20))
			}
			first := positions.Position{File: identityOf(t, oldest(t, dw))}
			r := startTailer(t, Config{Path: dw.path, Start: &first}, nil, nil, nil)
			gs := r.expect(n)
			checkSeq(t, gs, 0, 20)
			pos, ok := r.tl.Position(gs[n-1].Token)
			if !ok {
				t.Fatal("no position for the last token")
			}
			r.stop()
			<-r.done
			r.done <- nil

			saved, rot := n, dw.rotations
			for dw.rotations < rot+tc.rotations || dw.size < 300 {
				dw.line("stdout", numbered(n, 20))
				n++
			}
			pos.Offset += tc.shift
			m := NewMetrics(nil)
			r2 := startTailer(t, Config{Path: dw.path, Start: &pos}, nil, m, nil)
			rest := r2.finish()
			if tc.lost {
				if got := counter(m.positionsLost); got != 1 {
					t.Errorf("positions lost: %v", got)
				}
				if len(rest) == 0 || rest[len(rest)-1].Text != numbered(n-1, 20) {
					t.Fatalf("after a lost position: %d lines, last %+v", len(rest), last(rest))
				}
				var k int
				fmt.Sscanf(strings.TrimPrefix(rest[0].Text, "line-"), "%d", &k)
				if k <= saved {
					t.Errorf("started at line %d, before the oldest file", k)
				}
				checkSeq(t, rest, k, 20)
				return
			}
			if got := counter(m.positionsLost); got != 0 {
				t.Errorf("positions lost: %v", got)
			}
			if len(rest) != n-saved {
				t.Fatalf("resumed with %d lines, want %d (first %+v)", len(rest), n-saved, rest[0])
			}
			checkSeq(t, rest, saved, 20)
			wantBad := 0.0
			if tc.shift != 0 {
				wantBad = 1
			}
			if got := counter(m.skipped.WithLabelValues(reasonBadPosition)); got != wantBad {
				t.Errorf("bad positions: %v, want %v", got, wantBad)
			}
		})
	}
}

// A json line the daemon is still writing is not consumed until its
// newline arrives.
func TestTornLineCompletedLater(t *testing.T) {
	m := NewMetrics(nil)
	w := startWatcher(t, WatcherConfig{}, m)
	dw := newDockerWriter(t, t.TempDir())
	dw.line("stdout", numbered(0, 0))
	b := dw.entryBytes("stdout", numbered(1, 0)+"\n", nil)
	dw.raw(b[:30])
	r := startTailer(t, Config{Path: dw.path}, w, m, nil)
	checkSeq(t, r.expect(1), 0, 0)
	waitFor(t, "the torn bytes to be read", func() bool { return r.readOff.Load() == dw.size })
	dw.raw(b[30:])
	checkSeq(t, r.expect(1), 1, 0)
	if got := counter(m.skipped.WithLabelValues(reasonCorrupt)); got != 0 {
		t.Errorf("corrupt: %v", got)
	}
}

func TestCorruptAndOversizeLines(t *testing.T) {
	dw := newDockerWriter(t, t.TempDir())
	dw.line("stdout", numbered(0, 0))
	dw.raw([]byte("not json\n"))
	dw.raw([]byte(`{"log":"no time\n","stream":"stdout"}` + "\n"))
	dw.raw([]byte("\n"))
	dw.line("stdout", numbered(1, 0))
	dw.raw([]byte(strings.Repeat("x", 3<<20) + "\n")) // over MaxRawLine
	dw.raw([]byte("{\"log\":\"bad \xff utf8\\n\",\"stream\":\"stderr\",\"time\":\"2024-05-01T12:00:00Z\"}\n"))
	dw.line("stdout", numbered(2, 0))

	m := NewMetrics(nil)
	r := startTailer(t, Config{Path: dw.path}, nil, m, nil)
	gs := r.finish()
	if len(gs) != 4 || gs[0].Text != numbered(0, 0) || gs[1].Text != numbered(1, 0) || gs[2].Text != "bad \uFFFD utf8" || gs[3].Text != numbered(2, 0) {
		t.Fatalf("lines: %+v", gs)
	}
	for reason, want := range map[string]float64{reasonCorrupt: 3, reasonTooLong: 1, reasonTorn: 0} {
		if got := counter(m.skipped.WithLabelValues(reason)); got != want {
			t.Errorf("%s: %v, want %v", reason, got, want)
		}
	}
	if counter(m.invalidUTF8) != 1 {
		t.Errorf("invalid UTF-8: %v", counter(m.invalidUTF8))
	}
}

// Finish reads what is left, including a file rotated away meanwhile, then
// Run returns nil.
func TestFinishDrains(t *testing.T) {
	w := startWatcher(t, WatcherConfig{}, nil)
	dw := newDockerWriter(t, t.TempDir())
	dw.maxSize, dw.maxFiles = 4096, 3
	n := 0
	for ; n < 10; n++ {
		dw.line("stdout", numbered(n, 20))
	}
	gate := make(chan struct{}, 1)
	r := startTailer(t, Config{Path: dw.path}, w, nil, gate)
	waitFor(t, "the tailer to block", func() bool { return r.entered.Load() == 1 })
	rot := dw.rotations
	for dw.rotations < rot+1 || dw.size < 1000 {
		dw.line("stdout", numbered(n, 20))
		n++
	}
	r.tl.Finish()
	close(gate)
	gs := r.finish()
	checkSeq(t, gs, 0, 20)
	if len(gs) != n {
		t.Fatalf("drained %d lines, want %d", len(gs), n)
	}
}

// A saved position for a container whose files are all gone: counted, and
// the live file is read from its start when it appears.
func TestResumeNoFiles(t *testing.T) {
	m := NewMetrics(nil)
	w := startWatcher(t, WatcherConfig{}, m)
	path := filepath.Join(t.TempDir(), "gone-json.log")
	start := positions.Position{File: positions.Identity{Dev: 1, Inode: 2}, Offset: 100}
	start.File.SetFingerprint([]byte("old content"))
	r := startTailer(t, Config{Path: path, Start: &start}, w, m, nil)
	r.waitIdle(0)
	if got := counter(m.positionsLost); got != 1 {
		t.Errorf("positions lost: %v", got)
	}
	dw := &dockerWriter{t: t, path: path, maxFiles: 1, base: time.Now()}
	dw.open()
	defer dw.f.Close()
	dw.line("stdout", numbered(0, 0))
	checkSeq(t, r.expect(1), 0, 0)
}

func TestFromOldest(t *testing.T) {
	for _, compress := range []bool{false, true} {
		t.Run(fmt.Sprintf("compress=%v", compress), func(t *testing.T) {
			dw := newDockerWriter(t, t.TempDir())
			dw.maxSize, dw.maxFiles, dw.compress = 4096, 5, compress
			for n := range 120 {
				dw.line("stdout", numbered(n, 20))
			}
			if dw.rotations < 2 {
				t.Fatalf("%d rotations", dw.rotations)
			}
			m := NewMetrics(nil)
			r := startTailer(t, Config{Path: dw.path, FromOldest: true}, nil, m, nil)
			gs := r.finish()
			if len(gs) != 120 || counter(m.positionsLost) != 0 {
				t.Fatalf("%d lines, %v positions lost", len(gs), counter(m.positionsLost))
			}
			checkSeq(t, gs, 0, 20)
		})
	}
}

func TestRunTwiceAndConfig(t *testing.T) {
	if _, err := New(Config{Path: "x", FromEnd: true, FromOldest: true}, nil, nil, nil); err == nil {
		t.Error("FromEnd with FromOldest accepted")
	}
	if _, err := New(Config{}, nil, nil, nil); err == nil {
		t.Error("no Path accepted")
	}
	if _, err := New(Config{Path: "x", MaxRawLine: 10}, nil, nil, nil); err == nil {
		t.Error("tiny MaxRawLine accepted")
	}
	if _, err := NewWatcher(nil, WatcherConfig{PollInterval: time.Nanosecond}, nil); err == nil {
		t.Error("tiny PollInterval accepted")
	}
	dw := newDockerWriter(t, t.TempDir())
	r := startTailer(t, Config{Path: dw.path}, nil, nil, nil)
	r.waitIdle(0)
	if err := r.tl.Run(t.Context(), nil); err != ErrRunTwice {
		t.Errorf("second Run = %v", err)
	}
	r.finish()
}
