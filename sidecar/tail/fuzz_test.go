package tail

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzTailer feeds arbitrary bytes as a json-file log. Whatever they are,
// Run drains them and returns, tokens never decrease, and every token maps
// to a line start within the file.
func FuzzTailer(f *testing.F) {
	line := func(stream, log string) string {
		b, _ := json.Marshal(jsonEntry{Log: log, Stream: stream, Time: "2024-05-01T12:00:00.123456789Z"})
		return string(b) + "\n"
	}
	f.Add([]byte(line("stdout", "hello\n") + line("stderr", "world\n")))
	f.Add([]byte(line("stdout", "chunk one ") + line("stderr", "between\n") + line("stdout", "chunk two\n")))
	f.Add([]byte(line("stdout", strings.Repeat("é", 100)+"\n") + "garbage\n\n" + line("stdout", "after\n")))
	f.Add([]byte(line("stdout", strings.Repeat("x", 3000)+"\n") + line("stdout", "torn")[:20]))
	f.Add([]byte(`{"log":"a\n","stream":"stdout","attrs":{"k":"v"},"time":"2024-05-01T12:00:00Z"}` + "\n"))
	f.Add([]byte(line("stdout", "only a first chunk")))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "c-json.log")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		tl, err := New(Config{Path: path, MaxLineSize: 64, MaxRawLine: 1024, ReadBuffer: 512}, nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		tl.Finish()
		var last int64
		complete := 0
		err = tl.Run(context.Background(), func(l Line) error {
			if l.Token < last {
				t.Fatalf("token went backwards: %#x after %#x", l.Token, last)
			}
			last = l.Token
			if len(l.Data) > 64 {
				t.Fatalf("line of %d bytes over MaxLineSize", len(l.Data))
			}
			p, ok := tl.Position(l.Token)
			if !ok {
				t.Fatalf("token %#x has no position", l.Token)
			}
			if p.Offset < 0 || p.Offset > int64(len(data)) || p.Offset > 0 && data[p.Offset-1] != '\n' {
				t.Fatalf("token %#x maps to offset %d, not a line start", l.Token, p.Offset)
			}
			if !l.Partial {
				complete++
			}
			return nil
		})
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
		if nl := bytes.Count(data, []byte{'\n'}); complete > nl {
			t.Fatalf("%d complete lines from %d newlines", complete, nl)
		}
	})
}

// writeBenchLog writes about size bytes of json-file lines shaped like real
// logs: mostly 60-200 byte texts, some with escapes, a few longer, a quarter
// on stderr; long ones (if long is set) are 40 KiB, split as dockerd does.
func writeBenchLog(b *testing.B, size int, long bool) string {
	path := filepath.Join(b.TempDir(), "bench-json.log")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	base := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	words := []string{"GET /api/v1/items", "status=200", "duration=12.5ms", "user=\"alice\"", "path=C:\\temp", "trace_id=4bf92f3577b34da6a3ce929d0e0e4736", "msg=\"request served\"", "level=info"}
	written, i := 0, 0
	for written < size {
		var text string
		switch {
		case long && i%10 == 0:
			text = strings.Repeat(words[i%len(words)]+" ", 40<<10)[:40<<10]
		default:
			n := 2 + i%12
			parts := make([]string, n)
			for k := range parts {
				parts[k] = words[(i+k)%len(words)]
			}
			text = fmt.Sprintf("%d %s", i, strings.Join(parts, " "))
		}
		stream := "stdout"
		if i%4 == 3 {
			stream = "stderr"
		}
		ts := base.Add(time.Duration(i) * time.Millisecond).Format(time.RFC3339Nano)
		for len(text) > dockerChunk {
			bs, _ := json.Marshal(jsonEntry{Log: text[:dockerChunk], Stream: stream, Time: ts})
			w.Write(append(bs, '\n'))
			written += len(bs) + 1
			text = text[dockerChunk:]
		}
		bs, _ := json.Marshal(jsonEntry{Log: text + "\n", Stream: stream, Time: ts})
		w.Write(append(bs, '\n'))
		written += len(bs) + 1
		i++
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return path
}

// BenchmarkTail reads a pre-written json-file log through the tailer, the
// decoder and the joiner: MB/s of file per core.
func BenchmarkTail(b *testing.B) {
	for _, bc := range []struct {
		name string
		long bool
	}{{"typical", false}, {"with-40KiB-lines", true}} {
		b.Run(bc.name, func(b *testing.B) {
			path := writeBenchLog(b, 64<<20, bc.long)
			fi, err := os.Stat(path)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(fi.Size())
			b.ReportAllocs()
			var lines int
			for b.Loop() {
				tl, err := New(Config{Path: path}, nil, nil, nil)
				if err != nil {
					b.Fatal(err)
				}
				tl.Finish()
				lines = 0
				if err := tl.Run(context.Background(), func(l Line) error { lines++; return nil }); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(lines), "lines/op")
		})
	}
}
