package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/logferry/logferry/internal/loggen"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// countingWriter records how many Write calls it got, to check that each
// line is one write.
type countingWriter struct {
	bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	return w.Buffer.Write(p)
}

func TestRunWritesEveryLineOnceInOrder(t *testing.T) {
	tests := []struct {
		name string
		args []string
		cfg  loggen.Config
	}{
		{
			name: "defaults",
			args: []string{"-n", "20"},
			cfg:  loggen.Config{ID: "loggen", Lines: 20, Size: 100, LongSize: loggen.DefaultLongSize},
		},
		{
			name: "mixed streams, long and unicode lines",
			args: []string{"-n", "200", "-size", "150", "-stderr", "0.3", "-long-every", "25", "-unicode", "-id", "e2e-7"},
			cfg: loggen.Config{ID: "e2e-7", Lines: 200, Size: 150, StderrShare: 0.3, LongEvery: 25,
				LongSize: loggen.DefaultLongSize, Unicode: true},
		},
		{
			name: "all stderr, custom long size",
			args: []string{"-n", "10", "-stderr", "1", "-long-every", "2", "-long-size", "20000"},
			cfg:  loggen.Config{ID: "loggen", Lines: 10, Size: 100, StderrShare: 1, LongEvery: 2, LongSize: 20000},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr countingWriter
			if code := run(context.Background(), tt.args, &stdout, &stderr); code != 0 {
				t.Fatalf("run exit code %d, stderr: %s", code, stderr.String())
			}
			want := map[string][]string{}
			for seq := uint64(1); seq <= tt.cfg.Lines; seq++ {
				stream, line := tt.cfg.Line(seq)
				want[stream] = append(want[stream], line)
			}
			for stream, w := range map[string]*countingWriter{loggen.Stdout: &stdout, loggen.Stderr: &stderr} {
				got := readLines(t, &w.Buffer)
				if len(got) != len(want[stream]) {
					t.Fatalf("%s: %d lines, want %d", stream, len(got), len(want[stream]))
				}
				if w.writes != len(got) {
					t.Errorf("%s: %d writes for %d lines, want one write per line", stream, w.writes, len(got))
				}
				var last uint64
				for i, line := range got {
					rec, err := loggen.Parse(line)
					if err != nil {
						t.Fatalf("%s line %d: %v", stream, i, err)
					}
					if rec.Stream != stream || rec.Seq <= last || line != want[stream][i] {
						t.Fatalf("%s line %d = %+v after seq %d, want %q", stream, i, rec, last, want[stream][i][:60])
					}
					last = rec.Seq
				}
			}
		})
	}
}

func readLines(t *testing.T, r io.Reader) []string {
	t.Helper()
	var lines []string
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

func TestRunRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-stderr", "1.5"},
		{"-stderr", "-0.1"},
		{"-rate", "-1"},
		{"-id", "has space"},
		{"-id", ""},
		{"-size", "-1"},
		{"-long-every", "3", "-long-size", "0"},
		{"-sleep-after", "-1s"},
		{"-nosuchflag"},
		{"extra-argument"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), args, &stdout, &stderr)
		if code != 2 {
			t.Errorf("run(%q) exit code %d, want 2", args, code)
		}
		if stdout.Len() != 0 || stderr.Len() == 0 {
			t.Errorf("run(%q): stdout %q, stderr %q; want an error on stderr only", args, stdout.String(), stderr.String())
		}
	}
}

func TestRunPacesToRate(t *testing.T) {
	var stdout, stderr bytes.Buffer
	start := time.Now()
	// 6 lines at 100/s: the last is due 50 ms after the first.
	if code := run(context.Background(), []string{"-n", "6", "-rate", "100"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit code %d: %s", code, stderr.String())
	}
	if elapsed := time.Since(start); elapsed < 50*time.Millisecond {
		t.Errorf("6 lines at 100/s took %v, want at least 50ms", elapsed)
	}
	if n := strings.Count(stdout.String(), "\n"); n != 6 {
		t.Errorf("%d lines, want 6", n)
	}
}

func TestRunStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var stdout, stderr bytes.Buffer
	// Would take ~3 hours, then sleep for another.
	code := run(ctx, []string{"-n", "10000", "-rate", "1", "-sleep-after", "1h"}, &stdout, &stderr)
	if code != 0 {
		t.Errorf("exit code %d, want 0 after a signal: %s", code, stderr.String())
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr %q, want nothing", stderr.String())
	}
}

// notifyingWriter signals each write on a channel.
type notifyingWriter struct{ wrote chan struct{} }

func (w notifyingWriter) Write(p []byte) (int, error) {
	w.wrote <- struct{}{}
	return len(p), nil
}

func TestRunSleepAfterEndsOnSignal(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := notifyingWriter{wrote: make(chan struct{}, 3)}
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"-n", "3", "-sleep-after", "1h"}, out, &stderr) }()
	for range 3 {
		<-out.wrote
	}
	select {
	case code := <-done:
		t.Fatalf("run returned %d before the signal, want it to sleep", code)
	default:
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code %d, want 0", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return within 10s of the signal")
	}
}

func TestRunInvalidUTF8Line(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"-n", "2", "-id", "x", "-invalid-utf8", "5"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	if len(lines) != 3 || lines[2] != "\xff\xff\xff\xff\xff" {
		t.Fatalf("stdout lines %q: want 2 numbered lines and 5 bytes of 0xFF", lines)
	}
}
