package logstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/goleak"

	"github.com/logferry/logferry/shared/dockerlog"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testID = "0123456789abcdef"

// base is the time of line 0; line i is i seconds later.
var base = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func lineText(i int) string { return fmt.Sprintf("line %05d", i) }

func lineFrame(i int) *dockerlog.Frame {
	src := dockerlog.SourceStdout
	if i%3 == 0 {
		src = dockerlog.SourceStderr
	}
	return &dockerlog.Frame{Source: src, TimeNano: base.Add(time.Duration(i) * time.Second).UnixNano(), Line: []byte(lineText(i))}
}

// lineRange returns the texts of lines from..to-1.
func lineRange(from, to int) []string {
	out := []string{}
	for i := from; i < to; i++ {
		out = append(out, lineText(i))
	}
	return out
}

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func openWriter(t *testing.T, s *Store, cfg Config) *Writer {
	t.Helper()
	w, err := s.Open(testID, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func writeLines(t testing.TB, w *Writer, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := w.Write(lineFrame(i)); err != nil {
			t.Fatalf("writing line %d: %v", i, err)
		}
	}
}

// decodeAll decodes a ReadLogs body as the daemon would, checking that it
// is nothing but well-formed frames.
func decodeAll(t testing.TB, b []byte) []string {
	t.Helper()
	out, err := decodeFrames(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func decodeFrames(b []byte) ([]string, error) {
	dec := dockerlog.NewFrameDecoder(bytes.NewReader(b), 0)
	out := []string{}
	var f dockerlog.Frame
	for {
		err := dec.Decode(&f)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("the stream is not clean frames: %w", err)
		}
		out = append(out, string(f.Line))
	}
}

func readAll(t testing.TB, s *Store, cfg ReadConfig) []string {
	t.Helper()
	rc, err := s.Read(context.Background(), testID, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return decodeAll(t, b)
}

var all = ReadConfig{Tail: -1}

func entries(s *Store) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.logs)
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		key  string
	}{
		{"defaults", DefaultConfig(), ""},
		{"smallest", Config{MaxSize: MinMaxSize, MaxFile: 1}, ""},
		{"size too small", Config{MaxSize: 100, MaxFile: 5}, "max-size"},
		{"no size", Config{MaxFile: 5}, "max-size"},
		{"no files", Config{MaxSize: DefaultMaxSize}, "max-file"},
		{"negative files", Config{MaxSize: DefaultMaxSize, MaxFile: -1}, "max-file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			if c.key == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.HasPrefix(err.Error(), c.key+":") {
				t.Fatalf("error %v, want one naming %s wrapping ErrInvalidConfig", err, c.key)
			}
		})
	}
	if _, err := newStore(t).Open(testID, Config{}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Open with a bad config: %v", err)
	}
}

func TestInvalidContainerID(t *testing.T) {
	s := newStore(t)
	for _, id := range []string{"", ".", "..", "../x", "a/b", ".hidden", "a b", strings.Repeat("a", 129)} {
		if _, err := s.Open(id, DefaultConfig()); !errors.Is(err, ErrInvalidContainerID) {
			t.Errorf("Open(%q): %v", id, err)
		}
		if _, err := s.Read(context.Background(), id, all); !errors.Is(err, ErrInvalidContainerID) {
			t.Errorf("Read(%q): %v", id, err)
		}
		if err := s.Remove(id); !errors.Is(err, ErrInvalidContainerID) {
			t.Errorf("Remove(%q): %v", id, err)
		}
	}
}

// dirFiles returns the names and sizes of the container's files.
func dirFiles(t *testing.T, s *Store) map[string]int64 {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(s.dir, testID))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = info.Size()
	}
	return out
}

func TestRotationChainAndByteBound(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
	}{
		{"three files", Config{MaxSize: 4 << 10, MaxFile: 3}},
		{"one file", Config{MaxSize: 4 << 10, MaxFile: 1}},
		{"smallest files", Config{MaxSize: MinMaxSize, MaxFile: 7}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newStore(t)
			w := openWriter(t, s, c.cfg)
			const n = 3000
			for i := 0; i < n; i++ {
				writeLines(t, w, i, i+1)
				if i%250 != 0 {
					continue
				}
				total := int64(0)
				for name, size := range dirFiles(t, s) {
					if size > c.cfg.MaxSize {
						t.Fatalf("%s holds %d bytes, max-size %d", name, size, c.cfg.MaxSize)
					}
					total += size
				}
				if total > c.cfg.MaxSize*int64(c.cfg.MaxFile) {
					t.Fatalf("%d bytes on disk, bound %d", total, c.cfg.MaxSize*int64(c.cfg.MaxFile))
				}
			}
			want := []string{currentName}
			for i := 1; i < c.cfg.MaxFile; i++ {
				want = append(want, fmt.Sprintf("%s.%d", currentName, i))
			}
			files := dirFiles(t, s)
			got := slices.Sorted(func(yield func(string) bool) {
				for name := range files {
					if !yield(name) {
						return
					}
				}
			})
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("files %v, want %v", got, want)
			}
			// The chain is ordered: each older file ends where the next starts.
			lines := readAll(t, s, all)
			first := n - len(lines)
			if !slices.Equal(lines, lineRange(first, n)) {
				t.Fatalf("read %d lines, not the contiguous last ones", len(lines))
			}
			if min := int(c.cfg.MaxSize) * (c.cfg.MaxFile - 1) / 40; len(lines) < min {
				t.Fatalf("only %d lines kept, want at least %d", len(lines), min)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if entries(s) != 0 {
				t.Fatalf("%d containers still tracked", entries(s))
			}
		})
	}
}

func TestMaxFileShrinksOnReopen(t *testing.T) {
	s := newStore(t)
	w := openWriter(t, s, Config{MaxSize: MinMaxSize, MaxFile: 6})
	writeLines(t, w, 0, 500)
	w.Close()
	w = openWriter(t, s, Config{MaxSize: MinMaxSize, MaxFile: 2})
	defer w.Close()
	files := dirFiles(t, s)
	if _, ok := files[currentName+".2"]; ok || len(files) != 2 {
		t.Fatalf("files %v, want container.log and .1", files)
	}
	writeLines(t, w, 500, 600)
	lines := readAll(t, s, all)
	if got := lines[len(lines)-1]; got != lineText(599) {
		t.Fatalf("last line %q", got)
	}
}

func TestReopenAppends(t *testing.T) {
	s := newStore(t)
	w := openWriter(t, s, DefaultConfig())
	writeLines(t, w, 0, 10)
	w.Close()
	if err := w.Write(lineFrame(10)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
	w = openWriter(t, s, DefaultConfig())
	writeLines(t, w, 10, 20)
	w.Close()
	if got := readAll(t, s, all); !slices.Equal(got, lineRange(0, 20)) {
		t.Fatalf("got %v", got)
	}
	if st := s.Stats(); st != (Stats{}) {
		t.Fatalf("a clean reopen counted %+v", st)
	}
}

// A restarted container's new stream can start before the old one has
// drained its FIFO: both write, and followers end when the last closes.
func TestOverlappingWriters(t *testing.T) {
	s := newStore(t)
	old := openWriter(t, s, DefaultConfig())
	writeLines(t, old, 0, 5)
	fl := follow(t, context.Background(), s, ReadConfig{Tail: -1, Follow: true})
	next := openWriter(t, s, DefaultConfig())
	writeLines(t, old, 5, 10)
	old.Close()
	writeLines(t, next, 10, 15)
	fl.expect(t, lineRange(0, 15))
	next.Close()
	fl.expectEnd(t, io.EOF)
}

func TestRemoveAndPrune(t *testing.T) {
	s := newStore(t)
	ids := []string{"aaaa", "bbbb", "cccc"}
	var ws []*Writer
	for _, id := range ids {
		w, err := s.Open(id, DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(lineFrame(1)); err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "not-a-dir"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove("aaaa"); !errors.Is(err, ErrWriterOpen) {
		t.Fatalf("Remove with an open writer: %v", err)
	}
	for _, w := range ws {
		w.Close()
	}
	if err := s.Remove("aaaa"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove("never-existed"); err != nil {
		t.Fatal(err)
	}
	if err := s.Prune(func(id string) bool { return id == "cccc" }); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"cccc", "not-a-dir"}) {
		t.Fatalf("left %v", names)
	}
	if entries(s) != 0 {
		t.Fatalf("%d entries left", entries(s))
	}
}

func TestTornAndCorruptData(t *testing.T) {
	dir := t.TempDir()
	s1, _ := New(dir)
	w := openWriter(t, s1, DefaultConfig())
	writeLines(t, w, 0, 10)
	w.Close()
	name := filepath.Join(dir, testID, currentName)
	full := dockerlog.AppendFrame(nil, lineFrame(10))
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	torn := len(full) / 2
	if _, err := f.Write(full[:torn]); err != nil { // killed mid-write
		t.Fatal(err)
	}
	f.Close()

	// A restarted plugin reads before any writer reopens the file.
	s2, _ := New(dir)
	if got := readAll(t, s2, all); !slices.Equal(got, lineRange(0, 10)) {
		t.Fatalf("got %v", got)
	}
	if got := readAll(t, s2, ReadConfig{Tail: 2}); !slices.Equal(got, lineRange(8, 10)) {
		t.Fatalf("tail got %v", got)
	}
	if st := s2.Stats(); st.TornTails != 2 || st.SkippedBytes != uint64(2*torn) {
		t.Fatalf("stats %+v", st)
	}

	// The next Open cuts the torn frame off before appending.
	w = openWriter(t, s2, DefaultConfig())
	if st := s2.Stats(); st.RepairedBytes != uint64(torn) {
		t.Fatalf("stats %+v", st)
	}
	writeLines(t, w, 10, 15)
	w.Close()
	if got := readAll(t, s2, all); !slices.Equal(got, lineRange(0, 15)) {
		t.Fatalf("after repair got %v", got)
	}
	if st := s2.Stats(); st.TornTails != 2 || st.CorruptFrames != 0 {
		t.Fatalf("stats %+v", st)
	}

	// Garbage in the middle of a file costs only the frames it hits.
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	cut := len(dockerlog.AppendFrame(nil, lineFrame(0))) * 3
	garbage := append(slices.Clone(b[:cut]), []byte{0xff, 0xff, 0xff, 0x00, 1, 2, 3, 4, 5}...)
	garbage = append(garbage, b[cut:]...)
	if err := os.WriteFile(name, garbage, 0o640); err != nil {
		t.Fatal(err)
	}
	s3, _ := New(dir)
	if got := readAll(t, s3, all); !slices.Equal(got, lineRange(0, 15)) {
		t.Fatalf("around garbage got %v", got)
	}
	if st := s3.Stats(); st.CorruptFrames == 0 || st.SkippedBytes != 9 {
		t.Fatalf("stats %+v", st)
	}
}

func TestLongLineIsCut(t *testing.T) {
	cases := []struct {
		name    string
		maxSize int64
		line    string
	}{
		{"over max-size", MinMaxSize, strings.Repeat("é", 3000)},
		{"over the frame cap", DefaultMaxSize, strings.Repeat("x", 3<<20)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newStore(t)
			w := openWriter(t, s, Config{MaxSize: c.maxSize, MaxFile: 2})
			orig := []byte(c.line)
			if err := w.Write(&dockerlog.Frame{Source: "stdout", TimeNano: 1, Line: orig}); err != nil {
				t.Fatal(err)
			}
			writeLines(t, w, 0, 1)
			w.Close()
			if string(orig) != c.line {
				t.Fatal("Write modified the caller's line")
			}
			got := readAll(t, s, all)
			if len(got) != 2 || got[1] != lineText(0) {
				t.Fatalf("got %d lines", len(got))
			}
			if !strings.HasPrefix(c.line, got[0]) || !utf8.ValidString(got[0]) || len(got[0]) < 900 ||
				int64(len(got[0])) > min(c.maxSize, maxFrame) {
				t.Fatalf("cut line of %d bytes", len(got[0]))
			}
			if s.Stats().TruncatedLines != 1 {
				t.Fatalf("stats %+v", s.Stats())
			}
		})
	}
}

// Run with -race: one writer rotating quickly, followers started at
// different moments, and readers taking tails, all at once.
func TestConcurrentWriterAndReaders(t *testing.T) {
	s := newStore(t)
	w := openWriter(t, s, Config{MaxSize: 4 << 10, MaxFile: 1000})
	const n = 3000
	var followers []*follower
	ctx := context.Background()
	followers = append(followers, follow(t, ctx, s, ReadConfig{Tail: -1, Follow: true}))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				rc, err := s.Read(ctx, testID, ReadConfig{Tail: 20})
				if err != nil {
					errs <- err
					return
				}
				b, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					errs <- err
					return
				}
				got, err := decodeFrames(b)
				if err != nil {
					errs <- err
					return
				}
				if len(got) == 0 {
					continue
				}
				var first int
				fmt.Sscanf(got[0], "line %d", &first)
				if !slices.Equal(got, lineRange(first, first+len(got))) {
					errs <- fmt.Errorf("a tail is not contiguous: %v", got)
					return
				}
			}
		}()
	}
	for i := 0; i < n; i += 100 {
		writeLines(t, w, i, i+100)
		if i == 1000 || i == 2000 {
			followers = append(followers, follow(t, ctx, s, ReadConfig{Tail: -1, Follow: true}))
		}
	}
	w.Close()
	for _, fl := range followers {
		fl.expect(t, lineRange(0, n))
		fl.expectEnd(t, io.EOF)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := s.Stats(); st != (Stats{}) {
		t.Fatalf("stats %+v", st)
	}
}

func BenchmarkWrite(b *testing.B) {
	s, err := New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	w, err := s.Open(testID, DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	f := &dockerlog.Frame{Source: "stdout", TimeNano: base.UnixNano(), Line: bytes.Repeat([]byte("x"), 120)}
	b.SetBytes(int64(len(dockerlog.AppendFrame(nil, f))))
	b.ReportAllocs()
	for b.Loop() {
		if err := w.Write(f); err != nil {
			b.Fatal(err)
		}
	}
}
