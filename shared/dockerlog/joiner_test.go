package dockerlog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

type push struct {
	stream string
	time   int64
	chunk  string
	ends   bool
}

type wantLine struct {
	stream    string
	time      int64
	data      string
	truncated bool
	chunks    int
}

func lineOf(l Line) wantLine {
	return wantLine{l.Stream, l.TimeNano, string(l.Data), l.Truncated, l.Chunks}
}

func TestJoiner(t *testing.T) {
	tests := []struct {
		name    string
		maxLine int
		pushes  []push
		want    []wantLine // lines returned by Push, in order
		flushed []wantLine // lines emitted by a final Flush, in order
	}{
		{
			name:   "whole lines pass through",
			pushes: []push{{"stdout", 1, "a", true}, {"stderr", 2, "b", true}, {"stdout", 3, "", true}},
			want:   []wantLine{{"stdout", 1, "a", false, 1}, {"stderr", 2, "b", false, 1}, {"stdout", 3, "", false, 1}},
		},
		{
			name:   "chunks joined, first time kept",
			pushes: []push{{"stdout", 1, "ab", false}, {"stdout", 2, "cd", false}, {"stdout", 3, "ef", true}},
			want:   []wantLine{{"stdout", 1, "abcdef", false, 3}},
		},
		{
			name: "streams interleave",
			pushes: []push{
				{"stdout", 1, "o1", false}, {"stderr", 2, "e1", false}, {"stdout", 3, "o2", false},
				{"stderr", 4, "e2", true}, {"stdout", 5, "o3", true}, {"stderr", 6, "whole", true},
			},
			want: []wantLine{{"stderr", 2, "e1e2", false, 2}, {"stdout", 1, "o1o2o3", false, 3}, {"stderr", 6, "whole", false, 1}},
		},
		{
			name:    "flush pending partial lines",
			pushes:  []push{{"stdout", 1, "never", false}, {"stdout", 2, " ends", false}, {"stderr", 3, "x", false}},
			flushed: []wantLine{{"stdout", 1, "never ends", false, 2}, {"stderr", 3, "x", false, 1}},
		},
		{
			name:    "whole line cut at maxLine",
			maxLine: 4,
			pushes:  []push{{"stdout", 1, "abcdefgh", true}, {"stdout", 2, "abcd", true}},
			want:    []wantLine{{"stdout", 1, "abcd", true, 1}, {"stdout", 2, "abcd", false, 1}},
		},
		{
			name:    "joined line cut at maxLine, rest discarded",
			maxLine: 5,
			pushes:  []push{{"stdout", 1, "abc", false}, {"stdout", 2, "def", false}, {"stdout", 3, "ghi", false}, {"stdout", 4, "jkl", true}, {"stdout", 5, "next", true}},
			want:    []wantLine{{"stdout", 1, "abcde", true, 4}, {"stdout", 5, "next", false, 1}},
		},
		{
			name:    "exactly maxLine is not truncated",
			maxLine: 6,
			pushes:  []push{{"stdout", 1, "abc", false}, {"stdout", 2, "def", true}},
			want:    []wantLine{{"stdout", 1, "abcdef", false, 2}},
		},
		{
			name:    "cut before a split rune",
			maxLine: 5,
			pushes:  []push{{"stdout", 1, "abcd€", true}}, // € is 3 bytes at 4..6
			want:    []wantLine{{"stdout", 1, "abcd", true, 1}},
		},
		{
			name:    "cut after a whole rune",
			maxLine: 7,
			pushes:  []push{{"stdout", 1, "abcd€x", true}},
			want:    []wantLine{{"stdout", 1, "abcd€", true, 1}},
		},
		{
			name:    "rune split across chunks and the cut",
			maxLine: 6,
			pushes:  []push{{"stdout", 1, "abcde\xf0\x9f", false}, {"stdout", 2, "\x98\x80z", true}}, // 😀 at 5..8
			want:    []wantLine{{"stdout", 1, "abcde", true, 2}},
		},
		{
			name:    "cut inside the buffered part",
			maxLine: 6,
			pushes:  []push{{"stdout", 1, "abcde\xf0", false}, {"stdout", 2, "\x9f\x98\x80", true}},
			want:    []wantLine{{"stdout", 1, "abcde", true, 2}},
		},
		{
			name:    "invalid UTF-8 cut at maxLine",
			maxLine: 4,
			pushes:  []push{{"stdout", 1, "a\x80\x80\x80\x80\x80", true}},
			want:    []wantLine{{"stdout", 1, "a\x80\x80\x80", true, 1}},
		},
		{
			name:    "stray continuation bytes do not move the cut",
			maxLine: 3,
			pushes:  []push{{"stdout", 1, "ab\x80\x80", true}},
			want:    []wantLine{{"stdout", 1, "ab\x80", true, 1}},
		},
		{
			name:    "truncated partial line flushed",
			maxLine: 3,
			pushes:  []push{{"stdout", 1, "abcdef", false}, {"stdout", 2, "gh", false}},
			flushed: []wantLine{{"stdout", 1, "abc", true, 2}},
		},
		{
			name: "too many streams: extra chunks pass through",
			pushes: []push{
				{"a", 1, "a1", false}, {"b", 2, "b1", false}, {"c", 3, "c1", false}, {"d", 4, "d1", false},
				{"e", 5, "e1", false}, {"e", 6, "e2", true}, {"a", 7, "a2", true}, {"e", 8, "e3", false},
			},
			want:    []wantLine{{"e", 5, "e1", false, 1}, {"e", 6, "e2", false, 1}, {"a", 1, "a1a2", false, 2}},
			flushed: []wantLine{{"e", 8, "e3", false, 1}, {"b", 2, "b1", false, 1}, {"c", 3, "c1", false, 1}, {"d", 4, "d1", false, 1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := NewJoiner(tt.maxLine)
			var got []wantLine
			for _, p := range tt.pushes {
				if l, ok := j.Push(p.stream, p.time, []byte(p.chunk), p.ends); ok {
					got = append(got, lineOf(l))
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("pushed lines\n got %+v\nwant %+v", got, tt.want)
			}
			var flushed []wantLine
			j.Flush(func(l Line) { flushed = append(flushed, lineOf(l)) })
			if fmt.Sprint(flushed) != fmt.Sprint(tt.flushed) {
				t.Errorf("flushed lines\n got %+v\nwant %+v", flushed, tt.flushed)
			}
			if n := j.Pending(); n != 0 {
				t.Errorf("%d pending after Flush", n)
			}
		})
	}
}

func TestJoinerDefaultMaxLine(t *testing.T) {
	j := NewJoiner(0)
	chunk := bytes.Repeat([]byte("x"), 16<<10)
	for range DefaultMaxLine/len(chunk) + 3 {
		if _, ok := j.Push("stdout", 1, chunk, false); ok {
			t.Fatal("line ended early")
		}
	}
	l, ok := j.Push("stdout", 1, []byte("end"), true)
	if !ok || len(l.Data) != DefaultMaxLine || !l.Truncated || l.Chunks != DefaultMaxLine/len(chunk)+4 {
		t.Fatalf("got %d bytes truncated=%v chunks=%d", len(l.Data), l.Truncated, l.Chunks)
	}
	if c := cap(j.pending[0].buf); c > DefaultMaxLine {
		t.Fatalf("buffer grew to %d, past maxLine", c)
	}
}

// TestJoinerDoesNotAliasChunks checks that a pending line owns its bytes:
// callers reuse their read buffers between pushes.
func TestJoinerDoesNotAliasChunks(t *testing.T) {
	j := NewJoiner(64)
	buf := []byte("first-")
	j.Push("stdout", 1, buf[:0], false) // an empty first chunk too
	j.Push("stdout", 1, buf, false)
	copy(buf, "XXXXXX")
	l, _ := j.Push("stdout", 1, []byte("last"), true)
	if string(l.Data) != "first-last" {
		t.Fatalf("got %q", l.Data)
	}
}

func TestJoinerAllocs(t *testing.T) {
	j := NewJoiner(0)
	whole := []byte("a whole line")
	chunk := bytes.Repeat([]byte("c"), 16<<10)
	run := func() {
		j.Push("stdout", 1, whole, true)
		j.Push("stderr", 2, chunk, false)
		j.Push("stdout", 3, chunk, false)
		j.Push("stderr", 4, chunk, true)
		j.Push("stdout", 5, whole, true)
		j.Flush(func(Line) {})
	}
	run()
	if a := testing.AllocsPerRun(50, run); a != 0 {
		t.Fatalf("%v allocs per run, want 0", a)
	}
}

// FuzzJoiner drives the joiner with a script of pushes and compares with a
// model that keeps every chunk.
func FuzzJoiner(f *testing.F) {
	f.Add(uint8(8), []byte("\x01abc\x02def\x81ghi\x83x\x00"))
	f.Add(uint8(3), []byte("\x05a€b\x85😀😀"))
	f.Add(uint8(0), []byte("\x00\x01\x02\x03\x04\x05\x84\x80"))
	f.Fuzz(func(t *testing.T, maxLine uint8, script []byte) {
		streams := []string{"stdout", "stderr", "a", "b", "c", "d"}
		limit := int(maxLine)
		if limit == 0 {
			limit = DefaultMaxLine
		}
		j := NewJoiner(int(maxLine))
		type modelLine struct {
			full   []byte
			time   int64
			chunks int
		}
		model := map[string]*modelLine{}

		check := func(l Line, m *modelLine, stream string) {
			t.Helper()
			if l.Stream != stream || l.TimeNano != m.time || l.Chunks != m.chunks {
				t.Fatalf("got stream %q time %d chunks %d; want %q %d %d", l.Stream, l.TimeNano, l.Chunks, stream, m.time, m.chunks)
			}
			if l.Truncated != (len(m.full) > limit) || len(l.Data) > limit || !bytes.HasPrefix(m.full, l.Data) {
				t.Fatalf("got %q truncated=%v from %q (limit %d)", l.Data, l.Truncated, m.full, limit)
			}
			if l.Truncated {
				if len(l.Data) < limit-3 {
					t.Fatalf("cut %q at %d, more than 3 bytes before the limit %d", m.full, len(l.Data), limit)
				}
				// On valid UTF-8 the cut is the last rune boundary.
				if utf8.Valid(m.full) {
					want := limit
					for !utf8.RuneStart(m.full[want]) {
						want--
					}
					if len(l.Data) != want {
						t.Fatalf("cut %q at %d, want %d", m.full, len(l.Data), want)
					}
				}
			}
		}

		for step := 0; len(script) > 0; step++ {
			op := script[0]
			n := min(int(op>>4)&7, len(script)-1)
			chunk := script[1 : 1+n]
			script = script[1+n:]
			stream := streams[int(op&0x0f)%len(streams)]
			ends := op&0x80 != 0

			m := model[stream]
			passThrough := m == nil && !ends && len(model) == maxPendingStreams
			if m == nil {
				m = &modelLine{time: int64(step)}
			}
			m.full = append(m.full, chunk...)
			m.chunks++
			if !ends && !passThrough {
				model[stream] = m
			}

			l, ok := j.Push(stream, int64(step), chunk, ends)
			if ok != (ends || passThrough) {
				t.Fatalf("step %d: Push returned %v", step, ok)
			}
			if ok {
				check(l, m, stream)
				delete(model, stream)
			}
			if j.Pending() != len(model) {
				t.Fatalf("step %d: %d pending, model has %d", step, j.Pending(), len(model))
			}
			for i := range j.pending {
				if c := cap(j.pending[i].buf); c > limit {
					t.Fatalf("buffer capacity %d past maxLine %d", c, limit)
				}
			}
		}
		j.Flush(func(l Line) {
			m := model[l.Stream]
			if m == nil {
				t.Fatalf("flushed unknown stream %q", l.Stream)
			}
			check(l, m, l.Stream)
			delete(model, l.Stream)
		})
		if len(model) != 0 {
			t.Fatalf("not flushed: %v", model)
		}
	})
}

func BenchmarkJoiner(b *testing.B) {
	// Mostly whole lines, one in eight split in three 16 KiB chunks on
	// alternating streams, like a json-file with an occasional huge line.
	whole := []byte(strings.Repeat("x", 200))
	chunk := bytes.Repeat([]byte("y"), 16<<10)
	j := NewJoiner(0)
	b.SetBytes(int64(7*len(whole) + 3*len(chunk)))
	b.ReportAllocs()
	for b.Loop() {
		for i := range 7 {
			j.Push(SourceStdout, int64(i), whole, true)
		}
		j.Push(SourceStderr, 7, chunk, false)
		j.Push(SourceStdout, 8, whole[:10], true)
		j.Push(SourceStderr, 9, chunk, false)
		if l, ok := j.Push(SourceStderr, 10, chunk, true); !ok || len(l.Data) != 3*len(chunk) {
			b.Fatal("bad join")
		}
	}
}

// TestJoinerWithDecoders joins a 40 KiB line the way each source delivers it:
// json-file entries of 16 KiB chunks, and logs-stream messages.
func TestJoinerWithDecoders(t *testing.T) {
	long := strings.Repeat("0123456789abcdef", 2560) // 40 KiB
	chunks := []string{long[:16<<10], long[16<<10 : 32<<10], long[32<<10:]}

	t.Run("json-file", func(t *testing.T) {
		var file []byte
		for i, c := range chunks {
			if i == len(chunks)-1 {
				c += "\n"
			}
			entry, _ := json.Marshal(map[string]string{"log": c, "stream": "stderr", "time": t1})
			file = append(append(file, entry...), '\n')
		}
		short, _ := json.Marshal(map[string]string{"log": "short\n", "stream": "stdout", "time": t2})
		file = append(append(file, short...), '\n')

		var d JSONDecoder
		j := NewJoiner(0)
		var got []wantLine
		for _, raw := range bytes.SplitAfter(file, []byte("\n")) {
			if len(raw) == 0 {
				continue
			}
			var l JSONLine
			if err := d.Decode(raw, &l); err != nil {
				t.Fatal(err)
			}
			if line, ok := j.Push(l.Stream, l.TimeNano, l.Text(), l.EndsLine()); ok {
				got = append(got, lineOf(line))
			}
		}
		want := []wantLine{{"stderr", t1Nano, long, false, 3}, {"stdout", t2Nano, "short", false, 1}}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("got %.200v", got)
		}
	})

	t.Run("logs stream", func(t *testing.T) {
		for _, tty := range []bool{false, true} {
			var stream []byte
			for i, c := range chunks {
				msg := t1 + " " + c
				if i == len(chunks)-1 {
					msg += "\n"
				}
				if tty {
					stream = append(stream, msg...)
				} else {
					stream = append(stream, muxFrame(1, msg)...)
				}
			}
			d := NewLogStreamDecoder(bytes.NewReader(stream), tty, 0)
			j := NewJoiner(0)
			var got []wantLine
			for {
				var m StreamMessage
				err := d.Next(&m)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if line, ok := j.Push(m.Stream, m.TimeNano, m.Line, !m.Partial); ok {
					got = append(got, lineOf(line))
				}
			}
			want := []wantLine{{"stdout", t1Nano, long, false, 3}}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("tty=%v: got %.200v", tty, got)
			}
		}
	})
}
