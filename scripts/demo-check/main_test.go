package main

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/logferry/logferry/internal/loggen"
)

// splitLine returns a long unicode generator line whose first 16 KiB cut
// falls inside a multi-byte character.
func splitLine(t *testing.T) string {
	t.Helper()
	for seq := uint64(1); seq < 100; seq++ {
		line := loggen.Format("demo", seq, loggen.Stderr, 40<<10, true)
		if !utf8.RuneStart(line[loggen.DockerChunk]) {
			return line
		}
	}
	t.Fatal("no generator line has a character across the 16 KiB cut")
	return ""
}

func TestParse(t *testing.T) {
	split := splitLine(t)
	stored := loggen.JSONFileView(split)
	if stored == split || !strings.ContainsRune(stored, utf8.RuneError) {
		t.Fatal("jsonFileView left a line with a cut character unchanged")
	}
	ascii := loggen.Format("demo", 7, loggen.Stdout, 40<<10, false)
	damaged := []byte(stored)
	damaged[len(damaged)-1] = 'Z'
	tests := []struct {
		name      string
		line      string
		wantSplit bool
		wantErr   bool
	}{
		{"whole long line", split, false, false},
		{"as json-file stored it", stored, true, false},
		{"ascii long line, unchanged by json-file", loggen.JSONFileView(ascii), false, false},
		{"json-file's damage and more", string(damaged), false, true},
		{"not a generator line", "hello", false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, gotSplit, err := parse(tc.line)
			if (err != nil) != tc.wantErr || gotSplit != tc.wantSplit {
				t.Fatalf("parse: split %v, err %v; want split %v, error %v", gotSplit, err, tc.wantSplit, tc.wantErr)
			}
		})
	}
}

func TestCompare(t *testing.T) {
	mk := func(mode string, sets ...string) *run {
		r := &run{mode: mode, streams: map[string]*runStream{}, metaKeys: map[string]bool{"container_id": true}}
		for _, s := range sets {
			r.streams[s] = &runStream{labels: s, lines: 1}
		}
		return r
	}
	out, errOut := `{container_name="web", source="stdout"}`, `{container_name="web", source="stderr"}`
	tests := []struct {
		name    string
		runs    []*run
		wantErr bool
	}{
		{"same", []*run{mk("sidecar", out, errOut), mk("plugin", errOut, out)}, false},
		{"a stream fewer", []*run{mk("sidecar", out, errOut), mk("plugin", out)}, true},
		{"another label", []*run{mk("sidecar", out), mk("plugin", `{container_name="web", host="h", source="stdout"}`)}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := compare(tc.runs); (err != nil) != tc.wantErr {
				t.Fatalf("compare: %v, want error %v", err, tc.wantErr)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	r := &run{mode: "plugin", id: "x", lines: 3, streams: map[string]*runStream{"s": {lines: 3}}}
	for _, tc := range []struct {
		name    string
		seen    map[uint64]int
		wantErr bool
	}{
		{"each once", map[uint64]int{1: 1, 2: 1, 3: 1}, false},
		{"one missing", map[uint64]int{1: 1, 3: 1}, true},
		{"one twice", map[uint64]int{1: 1, 2: 2, 3: 1}, true},
		{"one too many", map[uint64]int{1: 1, 2: 1, 3: 1, 4: 1}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.seen = tc.seen
			if err := r.verify(); (err != nil) != tc.wantErr {
				t.Fatalf("verify: %v, want error %v", err, tc.wantErr)
			}
		})
	}
}
