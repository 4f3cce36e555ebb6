package logstore

import (
	"context"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/logferry/logferry/shared/dockerlog"
)

// follower reads a stream on a goroutine the test owns, handing over each
// line; done is closed with err set when the stream ends.
type follower struct {
	rc    io.ReadCloser
	lines chan string
	done  chan struct{}
	err   error
}

func follow(t *testing.T, ctx context.Context, s *Store, cfg ReadConfig) *follower {
	t.Helper()
	rc, err := s.Read(ctx, testID, cfg)
	if err != nil {
		t.Fatal(err)
	}
	fl := &follower{rc: rc, lines: make(chan string, 100000), done: make(chan struct{})}
	go func() {
		defer close(fl.done)
		dec := dockerlog.NewFrameDecoder(rc, 0)
		var f dockerlog.Frame
		for {
			if err := dec.Decode(&f); err != nil {
				fl.err = err
				return
			}
			fl.lines <- string(f.Line)
		}
	}()
	t.Cleanup(func() {
		rc.Close()
		<-fl.done
	})
	return fl
}

// expect waits for exactly the lines want, in order.
func (fl *follower) expect(t *testing.T, want []string) {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for i, w := range want {
		var got string
		select {
		case got = <-fl.lines:
		case <-fl.done:
			// Lines sent before the end are still queued.
			select {
			case got = <-fl.lines:
			default:
				t.Fatalf("stream ended (%v) before line %d (%q)", fl.err, i, w)
			}
		case <-timeout.C:
			t.Fatalf("timed out waiting for line %d (%q)", i, w)
		}
		if got != w {
			t.Fatalf("line %d: got %q, want %q", i, got, w)
		}
	}
}

// expectEnd waits for the stream to end with want and checks no line was
// left over.
func (fl *follower) expectEnd(t *testing.T, want error) {
	t.Helper()
	select {
	case <-fl.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not end")
	}
	if !errors.Is(fl.err, want) {
		t.Fatalf("stream ended with %v, want %v", fl.err, want)
	}
	if len(fl.lines) > 0 {
		t.Fatalf("%d unexpected lines, first %q", len(fl.lines), <-fl.lines)
	}
}

func TestFollow(t *testing.T) {
	cases := []struct {
		name     string
		tail     int
		existing []string
	}{
		{"all", -1, lineRange(0, 10)},
		{"tail", 3, lineRange(7, 10)},
		{"only new", 0, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newStore(t)
			w := openWriter(t, s, DefaultConfig())
			writeLines(t, w, 0, 10)
			fl := follow(t, context.Background(), s, ReadConfig{Tail: c.tail, Follow: true})
			fl.expect(t, c.existing)
			for i := 10; i < 20; i++ {
				writeLines(t, w, i, i+1)
				fl.expect(t, lineRange(i, i+1)) // each line as it is written
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			fl.expectEnd(t, io.EOF)
		})
	}
}

func TestFollowUntilEndsStream(t *testing.T) {
	s := newStore(t)
	w := openWriter(t, s, DefaultConfig())
	defer w.Close()
	fl := follow(t, context.Background(), s, ReadConfig{Tail: -1, Follow: true, Until: base.Add(4 * time.Second)})
	writeLines(t, w, 0, 10)
	fl.expect(t, lineRange(0, 5))
	fl.expectEnd(t, io.EOF)
}

func TestFollowAcrossRotation(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
	}{
		{"rename chain", Config{MaxSize: MinMaxSize, MaxFile: 1000}},
		// With one file the old one is removed; the follower still holds it.
		{"single file", Config{MaxSize: MinMaxSize, MaxFile: 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newStore(t)
			w := openWriter(t, s, c.cfg)
			writeLines(t, w, 0, 5)
			fl := follow(t, context.Background(), s, ReadConfig{Tail: -1, Follow: true})
			// Lock-step: the follower must cross every rotation on its own.
			for i := 5; i < 400; i++ {
				writeLines(t, w, i, i+1)
				if i == 5 {
					fl.expect(t, lineRange(0, 5))
				}
				fl.expect(t, lineRange(i, i+1))
			}
			w.cl.mu.Lock()
			rotations := w.cl.pos.rotation
			w.cl.mu.Unlock()
			if rotations < 10 {
				t.Fatalf("only %d rotations", rotations)
			}
			w.Close()
			fl.expectEnd(t, io.EOF)
			if st := s.Stats(); st.MissedFiles != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestLaggingFollowerReadsRotatedFiles(t *testing.T) {
	cases := []struct {
		name    string
		maxFile int
		missed  bool
	}{
		{"files still there", 100, false},
		{"files rotated away", 2, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newStore(t)
			w := openWriter(t, s, Config{MaxSize: MinMaxSize, MaxFile: c.maxFile})
			writeLines(t, w, 0, 5)
			rc, err := s.Read(context.Background(), testID, ReadConfig{Tail: -1, Follow: true})
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			buf := make([]byte, 16)
			if _, err := io.ReadFull(rc, buf); err != nil { // the follower has started
				t.Fatal(err)
			}
			writeLines(t, w, 5, 300) // many rotations before it reads on
			w.Close()
			rest, err := io.ReadAll(rc)
			if err != nil {
				t.Fatal(err)
			}
			got := decodeAll(t, append(buf, rest...))
			if !c.missed {
				if !slices.Equal(got, lineRange(0, 300)) {
					t.Fatalf("got %d lines", len(got))
				}
				return
			}
			if s.Stats().MissedFiles == 0 || len(got) >= 300 {
				t.Fatalf("expected missed files: %d lines, stats %+v", len(got), s.Stats())
			}
			if !slices.IsSorted(got) || got[len(got)-1] != lineText(299) {
				t.Fatalf("lines out of order or not up to the end: %v", got)
			}
		})
	}
}

func TestFollowEndsWithReaderCloseAndContext(t *testing.T) {
	for _, how := range []string{"close", "cancel"} {
		t.Run(how, func(t *testing.T) {
			s := newStore(t)
			w := openWriter(t, s, DefaultConfig())
			defer w.Close()
			writeLines(t, w, 0, 3)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			fl := follow(t, ctx, s, ReadConfig{Tail: -1, Follow: true})
			fl.expect(t, lineRange(0, 3)) // now blocked waiting for the writer
			want := ErrClosed
			if how == "close" {
				fl.rc.Close()
			} else {
				cancel()
				want = context.Canceled
			}
			fl.expectEnd(t, want)
			fl.rc.Close()
			if n := entries(s); n != 1 { // only the writer's
				t.Fatalf("%d entries", n)
			}
			if _, err := fl.rc.Read(make([]byte, 10)); !errors.Is(err, ErrClosed) {
				t.Fatalf("Read after Close: %v", err)
			}
		})
	}
}

func TestFollowWithoutWriterEndsAfterExistingLines(t *testing.T) {
	dir := t.TempDir()
	s1, _ := New(dir)
	w := openWriter(t, s1, DefaultConfig())
	writeLines(t, w, 0, 20)
	w.Close()
	// A restarted plugin: a new Store over the same files, no Writer yet.
	s2, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	fl := follow(t, context.Background(), s2, ReadConfig{Tail: -1, Follow: true})
	fl.expect(t, lineRange(0, 20))
	fl.expectEnd(t, io.EOF)
}
