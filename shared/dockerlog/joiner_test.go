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
			// Each invalid byte becomes three once repaired: "a" and one
			// of them make 4.
			name:    "invalid UTF-8 cut where its repair reaches maxLine",
			maxLine: 4,
			pushes:  []push{{"stdout", 1, "a\x80\x80\x80\x80\x80", true}},
			want:    []wantLine{{"stdout", 1, "a\x80", true, 1}},
		},
		{
			name:    "stray continuation bytes do not move the cut",
			maxLine: 5,
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

// TestJoinerCutAfterRepair checks that max-line-size bounds the line as it
// is sent: callers replace each invalid byte with U+FFFD (ValidUTF8), three
// bytes, after the Joiner, and Loki refuses (400) a line longer than its
// max_line_size. Each line is checked as callers use it: Data repaired must
// be valid, at most maxLine bytes, and the cut is reported once.
func TestJoinerCutAfterRepair(t *testing.T) {
	ff := func(n int) string { return strings.Repeat("\xff", n) }
	tests := []struct {
		name    string
		maxLine int
		pushes  []push
		flush   bool // the line is still pending and comes out of Flush
		want    wantLine
	}{
		{
			name:    "invalid bytes exactly at the cap",
			maxLine: 16,
			pushes:  []push{{"stdout", 1, ff(16), true}},
			want:    wantLine{"stdout", 1, ff(5), true, 1}, // 15 bytes repaired
		},
		{
			name:   "invalid bytes at the default cap",
			pushes: []push{{"stdout", 1, ff(DefaultMaxLine), true}},
			want:   wantLine{"stdout", 1, ff(DefaultMaxLine / 3), true, 1},
		},
		{
			name:    "a third of the cap is never cut",
			maxLine: 15,
			pushes:  []push{{"stdout", 1, ff(5), true}},
			want:    wantLine{"stdout", 1, ff(5), false, 1},
		},
		{
			name:    "invalid line that fits once repaired",
			maxLine: 8,
			pushes:  []push{{"stdout", 1, "a\xffb\xff", true}},
			want:    wantLine{"stdout", 1, "a\xffb\xff", false, 1},
		},
		{
			name:    "one byte over once repaired",
			maxLine: 7,
			pushes:  []push{{"stdout", 1, "a\xffb\xff", true}},
			want:    wantLine{"stdout", 1, "a\xffb", true, 1},
		},
		{
			name:    "a valid rune after an invalid byte is not split",
			maxLine: 7,
			pushes:  []push{{"stdout", 1, "ab\xff€", true}}, // 2+3, then € (3) would make 8
			want:    wantLine{"stdout", 1, "ab\xff", true, 1},
		},
		{
			name:    "valid runes around an invalid byte",
			maxLine: 9,
			pushes:  []push{{"stdout", 1, "€\xff€x", true}},
			want:    wantLine{"stdout", 1, "€\xff€", true, 1},
		},
		{
			name:    "truncated sequence counts per byte, like ValidUTF8",
			maxLine: 6,
			pushes:  []push{{"stdout", 1, "\xe2\x82\xe2\x82", true}}, // four invalid bytes
			want:    wantLine{"stdout", 1, "\xe2\x82", true, 1},
		},
		{
			name:    "joined chunks under the cap as read, over it repaired",
			maxLine: 10,
			pushes:  []push{{"stdout", 1, ff(2), false}, {"stderr", 2, "x", false}, {"stdout", 3, ff(2), true}},
			want:    wantLine{"stdout", 1, ff(3), true, 2},
		},
		{
			name:    "joined chunks cut as read, then again repaired",
			maxLine: 6,
			pushes:  []push{{"stdout", 1, "\xffab", false}, {"stdout", 2, "cdefgh", true}},
			want:    wantLine{"stdout", 1, "\xffabc", true, 2},
		},
		{
			name:    "a rune split across chunks is whole again and kept",
			maxLine: 7,
			pushes:  []push{{"stdout", 1, "\xffa\xe2", false}, {"stdout", 2, "\x82\xacz", true}},
			want:    wantLine{"stdout", 1, "\xffa€", true, 2},
		},
		{
			name:    "flushed partial line",
			maxLine: 8,
			pushes:  []push{{"stdout", 1, ff(4), false}},
			flush:   true,
			want:    wantLine{"stdout", 1, ff(2), true, 1},
		},
		{
			name:    "chunk of a fifth stream passes through, cut",
			maxLine: 6,
			pushes: []push{
				{"a", 1, "1", false}, {"b", 2, "2", false}, {"c", 3, "3", false}, {"d", 4, "4", false},
				{"e", 5, ff(6), false},
			},
			want: wantLine{"e", 5, ff(2), true, 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := NewJoiner(tt.maxLine)
			limit := tt.maxLine
			if limit <= 0 {
				limit = DefaultMaxLine
			}
			var got []Line
			keep := func(l Line) {
				if l.Stream == tt.want.stream {
					l.Data = bytes.Clone(l.Data)
					got = append(got, l)
				}
			}
			for _, p := range tt.pushes {
				if l, ok := j.Push(p.stream, p.time, []byte(p.chunk), p.ends); ok {
					keep(l)
				}
			}
			if tt.flush {
				j.Flush(keep)
			} else {
				j.Flush(func(Line) {})
			}
			if len(got) != 1 {
				t.Fatalf("got %d lines of %s, want 1", len(got), tt.want.stream)
			}
			if w := lineOf(got[0]); w != tt.want {
				t.Errorf("got  %q %d %q %v %d\nwant %q %d %q %v %d", w.stream, w.time, w.data, w.truncated, w.chunks,
					tt.want.stream, tt.want.time, tt.want.data, tt.want.truncated, tt.want.chunks)
			}
			sent := ValidUTF8(string(got[0].Data))
			if len(sent) > limit || !utf8.ValidString(sent) {
				t.Errorf("sent %d bytes (valid %v), over the cap %d", len(sent), utf8.ValidString(sent), limit)
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
			// The limit applies to the line once repaired, as it is sent.
			sent, whole := ValidUTF8(string(l.Data)), ValidUTF8(string(m.full))
			if l.Truncated != (len(whole) > limit) || len(sent) > limit || !bytes.HasPrefix(m.full, l.Data) {
				t.Fatalf("got %q truncated=%v from %q (limit %d)", l.Data, l.Truncated, m.full, limit)
			}
			if l.Truncated {
				if len(sent) < limit-3 {
					t.Fatalf("cut %q at %d (%d repaired), more than 3 bytes before the limit %d", m.full, len(l.Data), len(sent), limit)
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

// FuzzJoinerCut checks the cut on what is sent: any bytes, split into any
// chunks, come out of the Joiner and ValidUTF8 (as the plugin and the
// sidecar ship them) as valid UTF-8 of at most maxLine bytes, a prefix of
// the line, reported truncated exactly when the repaired line was longer.
func FuzzJoinerCut(f *testing.F) {
	f.Add(uint16(16), uint8(0), []byte(strings.Repeat("\xff", 16)))
	f.Add(uint16(7), uint8(3), []byte("ab\xff€\xff"))
	f.Add(uint16(9), uint8(1), []byte("€\xff€x\xe2\x82"))
	f.Add(uint16(12), uint8(2), []byte("\xf0\x9f\x98\x80\xf0\x9f\x98\xc0\x80"))
	f.Add(uint16(0), uint8(5), []byte("plain ascii that fits"))
	f.Fuzz(func(t *testing.T, maxLine uint16, chunk uint8, line []byte) {
		limit := int(maxLine)
		if limit == 0 {
			limit = DefaultMaxLine
		}
		j := NewJoiner(int(maxLine))
		// chunk 0: the line arrives whole; otherwise in chunks of that
		// many bytes, a partial line Flush emits when chunk is odd.
		var l Line
		var ok bool
		switch {
		case chunk == 0:
			l, ok = j.Push("stdout", 1, line, true)
		default:
			rest := line
			for len(rest) > int(chunk) {
				if _, done := j.Push("stdout", 1, rest[:chunk], false); done {
					t.Fatal("line ended early")
				}
				rest = rest[chunk:]
			}
			if chunk%2 == 0 {
				l, ok = j.Push("stdout", 1, rest, true)
			} else {
				j.Push("stdout", 1, rest, false)
				j.Flush(func(fl Line) { l, ok = fl, true })
			}
		}
		if !ok {
			t.Fatal("no line")
		}
		sent := ValidUTF8(string(l.Data))
		if !utf8.ValidString(sent) || len(sent) > limit {
			t.Fatalf("sent %q: %d bytes, valid %v; limit %d", sent, len(sent), utf8.ValidString(sent), limit)
		}
		if !bytes.HasPrefix(line, l.Data) {
			t.Fatalf("%q is not a prefix of %q", l.Data, line)
		}
		if whole := ValidUTF8(string(line)); l.Truncated != (len(whole) > limit) {
			t.Fatalf("truncated=%v for %d bytes repaired, limit %d", l.Truncated, len(whole), limit)
		}
		if l.Truncated && len(sent) < limit-3 {
			t.Fatalf("cut to %d bytes repaired, more than 3 before the limit %d", len(sent), limit)
		}
		// A valid sequence is never split: what was kept decodes as it did
		// inside the whole line.
		if want := ValidUTF8(string(line)); !strings.HasPrefix(want, sent) {
			t.Fatalf("repaired cut %q is not a prefix of the repaired line %q", sent, want)
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

// BenchmarkJoinerNearCap pushes whole lines longer than a third of the cap,
// the only ones the Joiner checks for growth once repaired: valid ones cost
// a utf8.Valid pass, invalid ones a count of what their repair takes.
func BenchmarkJoinerNearCap(b *testing.B) {
	for _, tc := range []struct {
		name string
		line []byte
	}{
		{"valid", bytes.Repeat([]byte("x"), DefaultMaxLine*3/4)},
		{"invalid", bytes.Repeat([]byte("x\xff"), DefaultMaxLine*3/8)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			j := NewJoiner(0)
			b.SetBytes(int64(len(tc.line)))
			b.ReportAllocs()
			for b.Loop() {
				j.Push(SourceStdout, 1, tc.line, true)
			}
		})
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
