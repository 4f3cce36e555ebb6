package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/logferry/logferry/internal/loggen"
	"github.com/logferry/logferry/shared/dockerlog"
)

func TestDaemonChunks(t *testing.T) {
	type piece struct {
		size, ordinal int
		last          bool
	}
	tests := []struct {
		size int
		want []piece
	}{
		{200, []piece{{200, 0, true}}},
		{16 << 10, []piece{{16 << 10, 0, true}}},
		{40 << 10, []piece{{16 << 10, 1, false}, {16 << 10, 2, false}, {8 << 10, 3, true}}},
	}
	for _, tt := range tests {
		var got []piece
		n, err := daemonChunks(make([]byte, tt.size), func(c []byte, ord int, last bool) error {
			got = append(got, piece{len(c), ord, last})
			return nil
		})
		if err != nil || n != len(tt.want) || len(got) != len(tt.want) {
			t.Fatalf("size %d: %d pieces %v (%v), want %v", tt.size, n, got, err, tt.want)
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("size %d: piece %d is %+v, want %+v", tt.size, i, got[i], tt.want[i])
			}
		}
	}
}

// steadyLines are a short and a long line, as the steady workload writes.
func steadyLines(t *testing.T) (streams []string, lines [][]byte) {
	t.Helper()
	g := loggen.Config{ID: "steady-test", Size: 200, LongEvery: 2, LongSize: 40 << 10, StderrShare: 0.5}
	for seq := uint64(1); seq <= 2; seq++ {
		s, l := g.AppendLine(nil, seq)
		streams, lines = append(streams, s), append(lines, l)
	}
	return streams, lines
}

// TestFIFOWriterFrames checks a long line is written as the daemon writes
// it, in partial frames the plugin's joiner puts back together.
func TestFIFOWriterFrames(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "frames"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := &fifoWriter{f: f, name: "steady-test"}
	streams, lines := steadyLines(t)
	writes := 0
	for i := range lines {
		n, err := w.writeLine(streams[i], lines[i])
		if err != nil {
			t.Fatal(err)
		}
		writes += n
	}
	if writes != 4 {
		t.Errorf("%d writes, want 4 (1 + 3 partial frames)", writes)
	}
	if _, err := f.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	dec := dockerlog.NewFrameDecoder(f, 0)
	j := dockerlog.NewJoiner(1 << 20)
	var got []string
	var fr dockerlog.Frame
	for dec.Decode(&fr) == nil {
		if l, ok := j.Push(fr.Source, fr.TimeNano, fr.Line, fr.EndsLine()); ok {
			got = append(got, l.Stream+" "+string(l.Data))
		}
	}
	if len(got) != 2 || got[0] != streams[0]+" "+string(lines[0]) || got[1] != streams[1]+" "+string(lines[1]) {
		t.Errorf("read back %d lines, want the 2 written whole", len(got))
	}
}

// TestJSONFileWriter checks the json-file entries: valid JSON, a long line
// in 16 KiB entries of which only the last ends with a newline.
func TestJSONFileWriter(t *testing.T) {
	w, err := openJSONFileLog(t.TempDir(), ContainerID("steady-test"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	streams, lines := steadyLines(t)
	lines[0] = append(lines[0], `"<&>\`+"\t"...)
	for i := range lines {
		if _, err := w.writeLine(streams[i], lines[i]); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(w.path)
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	entries := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e jsonFileLine
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("entry %d: %v", entries+1, err)
		}
		if e.Stream != streams[min(entries, 1)] || e.Time == "" {
			t.Errorf("entry %d: stream %q time %q", entries+1, e.Stream, e.Time)
		}
		text.WriteString(e.Log)
		entries++
	}
	if entries != 4 {
		t.Errorf("%d entries, want 4", entries)
	}
	if want := string(lines[0]) + "\n" + string(lines[1]) + "\n"; text.String() != want {
		t.Error("the entries' text is not the lines written, each with its newline")
	}
	if !bytes.Contains(b, []byte(`\u003c\u0026\u003e`)) {
		t.Error("<, & and > are not escaped as the daemon escapes them")
	}
}

func TestParseCtxSwitches(t *testing.T) {
	v, iv := parseCtxSwitches([]byte("Name:\tx\nvoluntary_ctxt_switches:\t42\nnonvoluntary_ctxt_switches:\t7\n"))
	if v != 42 || iv != 7 {
		t.Errorf("got %d %d, want 42 7", v, iv)
	}
}
