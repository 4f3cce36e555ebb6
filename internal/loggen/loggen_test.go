package loggen

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestFormatParseRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		id      string
		seq     uint64
		stream  string
		size    int
		unicode bool
		wantLen int // 0: size, or the header's length if longer
	}{
		{name: "typical", id: "run-1", seq: 1, stream: Stdout, size: 100},
		{name: "stderr", id: "run-1", seq: 2, stream: Stderr, size: 100},
		{name: "shorter than header", id: "r", seq: 7, stream: Stdout, size: 0, wantLen: 51},
		{name: "len digits step 99 to 100", id: "abcdefghijklmnopqrstuvwxyz", seq: 1, stream: Stdout, size: 99},
		{name: "len digits step 100", id: "abcdefghijklmnopqrstuvwxyz", seq: 1, stream: Stdout, size: 100},
		{name: "exactly 16 KiB", id: "x", seq: 16, stream: Stdout, size: 16 << 10},
		{name: "one over 16 KiB", id: "x", seq: 17, stream: Stdout, size: 16<<10 + 1},
		{name: "long", id: "long.run_2", seq: 123456, stream: Stderr, size: DefaultLongSize},
		{name: "unicode typical", id: "u", seq: 3, stream: Stdout, size: 120, unicode: true},
		{name: "unicode odd sizes", id: "u", seq: 4, stream: Stdout, size: 121, unicode: true},
		{name: "unicode long", id: "u", seq: 5, stream: Stderr, size: DefaultLongSize + 3, unicode: true},
		{name: "unicode 1 MiB", id: "u", seq: 6, stream: Stdout, size: 1 << 20, unicode: true},
		{name: "max seq", id: "m", seq: ^uint64(0), stream: Stdout, size: 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line := Format(tt.id, tt.seq, tt.stream, tt.size, tt.unicode)
			wantLen := tt.wantLen
			if wantLen == 0 {
				// The header alone is the shortest a line gets.
				wantLen = max(tt.size, len(Format(tt.id, tt.seq, tt.stream, 0, tt.unicode)))
			}
			if len(line) != wantLen {
				t.Fatalf("len(line) = %d, want %d: %q", len(line), wantLen, line)
			}
			if !utf8.ValidString(line) {
				t.Fatalf("line is not valid UTF-8")
			}
			if strings.ContainsAny(line, "\n\r") || strings.HasSuffix(line, " ") {
				t.Fatalf("line has a newline or ends in a space: %q", line)
			}
			hasNonASCII := strings.IndexFunc(line, func(r rune) bool { return r >= utf8.RuneSelf }) >= 0
			if hasNonASCII != tt.unicode {
				t.Errorf("line has non-ASCII text: %v, want %v", hasNonASCII, tt.unicode)
			}
			rec, err := Parse(line)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := Record{ID: tt.id, Seq: tt.seq, Stream: tt.stream, Len: len(line), Unicode: tt.unicode}
			if rec != want {
				t.Errorf("Parse = %+v, want %+v", rec, want)
			}
		})
	}
}

func TestFormatHeader(t *testing.T) {
	got := Format("run-1", 42, Stdout, 0, false)
	const want = "loggen id=run-1 seq=42 stream=stdout len=56 text=ascii "
	if !strings.HasPrefix(got, want) || len(got) != len(want)+1 {
		t.Errorf("Format = %q, want %q plus one byte of padding", got, want)
	}
}

func TestPaddingDependsOnSeq(t *testing.T) {
	for _, unicode := range []bool{false, true} {
		a := Format("x", 1, Stdout, 200, unicode)
		b := Format("x", 2, Stdout, 200, unicode)
		pa := a[strings.LastIndexByte(a[:60], ' ')+1:]
		pb := b[strings.LastIndexByte(b[:60], ' ')+1:]
		if pa == pb {
			t.Errorf("unicode=%v: lines 1 and 2 have the same padding", unicode)
		}
		if again := Format("x", 1, Stdout, 200, unicode); again != a {
			t.Errorf("unicode=%v: Format is not deterministic", unicode)
		}
	}
}

func TestAppendReusesBuffer(t *testing.T) {
	buf := make([]byte, 0, 512)
	buf = Append(buf, "x", 1, Stdout, 100, false)
	first := string(buf)
	buf = Append(buf[:0], "x", 2, Stdout, 100, false)
	if string(buf) == first || string(buf) != Format("x", 2, Stdout, 100, false) {
		t.Errorf("Append into a reused buffer = %q", buf)
	}
	prefixed := Append([]byte("prefix:"), "x", 3, Stdout, 100, false)
	if string(prefixed) != "prefix:"+Format("x", 3, Stdout, 100, false) {
		t.Errorf("Append after existing bytes = %q", prefixed)
	}
}

func TestParseErrors(t *testing.T) {
	good := Format("run", 9, Stdout, 300, true)
	long := Format("run", 10, Stderr, DefaultLongSize, false)
	corrupt := []byte(good)
	corrupt[200] ^= 0x01
	tests := []struct {
		name string
		line string
		want error
	}{
		{name: "empty", line: "", want: ErrNotLoggen},
		{name: "other text", line: "hello world", want: ErrNotLoggen},
		{name: "header only", line: "loggen ", want: ErrMalformed},
		{name: "missing field", line: "loggen id=a seq=1 stream=stdout text=ascii x", want: ErrMalformed},
		{name: "bad id", line: "loggen id=a/b seq=1 stream=stdout len=45 text=ascii x", want: ErrMalformed},
		{name: "bad seq", line: "loggen id=a seq=-1 stream=stdout len=45 text=ascii x", want: ErrMalformed},
		{name: "bad stream", line: "loggen id=a seq=1 stream=tty len=45 text=ascii x", want: ErrMalformed},
		{name: "bad len", line: "loggen id=a seq=1 stream=stdout len=x text=ascii x", want: ErrMalformed},
		{name: "bad text", line: "loggen id=a seq=1 stream=stdout len=45 text=ebcdic x", want: ErrMalformed},
		{name: "truncated", line: good[:len(good)-1], want: ErrLength},
		{name: "first 16 KiB chunk of a long line", line: long[:16<<10], want: ErrLength},
		{name: "two lines joined", line: good + good, want: ErrLength},
		{name: "trailing newline", line: good + "\n", want: ErrLength},
		{name: "one bit flipped", line: string(corrupt), want: ErrContent},
		{name: "wrong seq in header", line: strings.Replace(good, "seq=9", "seq=8", 1), want: ErrContent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.line)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Parse error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestParseReportsRecordOfDamagedLine(t *testing.T) {
	line := Format("run", 77, Stderr, 500, false)
	rec, err := Parse(line[:400])
	if !errors.Is(err, ErrLength) {
		t.Fatalf("Parse error = %v, want ErrLength", err)
	}
	if rec.Seq != 77 || rec.Stream != Stderr || rec.Len != 500 {
		t.Errorf("Parse record = %+v, want seq 77 on stderr with len 500", rec)
	}
}

func TestValidID(t *testing.T) {
	for id, want := range map[string]bool{
		"":                       false,
		"a":                      true,
		"run-1.2_3":              true,
		"has space":              false,
		"a=b":                    false,
		"é":                      false,
		strings.Repeat("a", 64):  true,
		strings.Repeat("a", 65):  false,
		"UPPER-lower-0123456789": true,
	} {
		if got := ValidID(id); got != want {
			t.Errorf("ValidID(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestFormatPanicsOnBadInput(t *testing.T) {
	for _, tt := range []struct{ id, stream string }{{"bad id", Stdout}, {"ok", "tty"}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Format(%q, %q) did not panic", tt.id, tt.stream)
				}
			}()
			Format(tt.id, 1, tt.stream, 10, false)
		}()
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Format("seed", 1, Stdout, 100, false))
	f.Add(Format("seed", 2, Stderr, 300, true))
	f.Add("loggen id=a seq=1 stream=stdout len=45 text=ascii x")
	f.Add("")
	f.Fuzz(func(t *testing.T, line string) {
		rec, err := Parse(line)
		if err != nil {
			return
		}
		if got := Format(rec.ID, rec.Seq, rec.Stream, rec.Len, rec.Unicode); got != line {
			t.Fatalf("Parse accepted %q, which Format writes as %q", line, got)
		}
	})
}

func BenchmarkAppend(b *testing.B) {
	for _, bm := range []struct {
		name    string
		size    int
		unicode bool
	}{
		{"ascii-100", 100, false},
		{"ascii-40KiB", DefaultLongSize, false},
		{"unicode-100", 100, true},
		{"unicode-40KiB", DefaultLongSize, true},
	} {
		b.Run(bm.name, func(b *testing.B) {
			buf := make([]byte, 0, bm.size+64)
			b.SetBytes(int64(bm.size))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				buf = Append(buf[:0], "bench", uint64(i), Stdout, bm.size, bm.unicode)
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	line := Format("bench", 1, Stdout, 1000, false)
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Parse(line); err != nil {
			b.Fatal(err)
		}
	}
}

func TestAppendJSON(t *testing.T) {
	for _, unicode := range []bool{false, true} {
		cfg := Config{ID: "j", Lines: 20, Size: 200, StderrShare: 0.3, JSON: true, Unicode: unicode}
		for seq := uint64(1); seq <= cfg.Lines; seq++ {
			stream, line := cfg.Line(seq)
			var obj struct {
				Level  string `json:"level"`
				Seq    uint64 `json:"seq"`
				Stream string `json:"stream"`
				Msg    string `json:"msg"`
			}
			if err := json.Unmarshal([]byte(line), &obj); err != nil {
				t.Fatalf("unicode=%v seq %d: %q is not a JSON object: %v", unicode, seq, line, err)
			}
			if obj.Seq != seq || obj.Stream != stream || obj.Level == "" {
				t.Errorf("unicode=%v seq %d: got %+v", unicode, seq, obj)
			}
			if stream == Stderr && obj.Level != "error" {
				t.Errorf("seq %d on stderr has level %q, want error", seq, obj.Level)
			}
			rec, err := Parse(obj.Msg)
			if err != nil {
				t.Fatalf("unicode=%v seq %d: msg: %v", unicode, seq, err)
			}
			if rec.Seq != seq || rec.Stream != stream || rec.ID != "j" {
				t.Errorf("seq %d: msg says %+v", seq, rec)
			}
			if !unicode && len(line) != cfg.Size {
				t.Errorf("seq %d: %d bytes, want %d", seq, len(line), cfg.Size)
			}
		}
	}
}
