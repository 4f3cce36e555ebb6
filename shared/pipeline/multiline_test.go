package pipeline

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// feed pushes lines of one source (tokens from first on, one second
// apart) then flushes everything, and returns the entries' lines.
func feed(t *testing.T, cfg *MultilineConfig, lines []string) []string {
	t.Helper()
	ml := NewMultiline(cfg, nil)
	var out []Joined
	for i, l := range lines {
		out = ml.Push(out, t0.Add(time.Duration(i)*time.Millisecond), "stdout", int64(i), l, int64(i))
	}
	out = ml.FlushAll(out)
	checkCoverage(t, lines, out)
	got := make([]string, len(out))
	for i, j := range out {
		got[i] = j.Line
	}
	return got
}

// checkCoverage checks that the entries hold every line once, in order,
// with consistent tokens, for a single source whose tokens are indexes.
func checkCoverage(t *testing.T, lines []string, out []Joined) {
	t.Helper()
	next := 0
	for _, j := range out {
		if j.First != int64(next) || j.Last != int64(next+j.Lines-1) {
			t.Fatalf("entry %+v does not start at line %d", j, next)
		}
		if want := strings.Join(lines[next:next+j.Lines], "\n"); j.Line != want {
			t.Fatalf("entry %q, want %q", j.Line, want)
		}
		if !j.AckOK || j.Ack != j.Last {
			t.Fatalf("single source: ack %d/%v, want %d", j.Ack, j.AckOK, j.Last)
		}
		next += j.Lines
	}
	if next != len(lines) {
		t.Fatalf("entries hold %d lines of %d", next, len(lines))
	}
}

func preset(t *testing.T, name string) *MultilineConfig {
	t.Helper()
	c, err := MultilinePreset(name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestMultilinePresets(t *testing.T) {
	cases := []struct {
		preset string
		lines  string
		want   []string
	}{{
		preset: PresetJava,
		lines: `2024-01-15 10:30:00 INFO starting
2024-01-15 10:30:01 ERROR request failed
java.lang.IllegalStateException: boom
	at com.example.Foo.bar(Foo.java:10)
	at com.example.Main.main(Main.java:5)
Caused by: java.io.IOException: disk
	at com.example.Disk.read(Disk.java:3)
	... 2 more
2024-01-15 10:30:02 INFO next
Exception in thread "main" java.lang.NullPointerException
    at Main.main(Main.java:1)
at Unindented.frame(X.java:1)
...
1 normal`,
		want: []string{
			"2024-01-15 10:30:00 INFO starting",
			"2024-01-15 10:30:01 ERROR request failed",
			"java.lang.IllegalStateException: boom\n\tat com.example.Foo.bar(Foo.java:10)\n\tat com.example.Main.main(Main.java:5)\nCaused by: java.io.IOException: disk\n\tat com.example.Disk.read(Disk.java:3)\n\t... 2 more",
			"2024-01-15 10:30:02 INFO next",
			"Exception in thread \"main\" java.lang.NullPointerException\n    at Main.main(Main.java:1)\nat Unindented.frame(X.java:1)\n...",
			"1 normal",
		},
	}, {
		preset: PresetPython,
		lines: `INFO ok
Traceback (most recent call last):
  File "/app/main.py", line 10, in <module>
    main()
  File "/app/main.py", line 6, in main
    raise ValueError("bad")
ValueError: bad
INFO next
Traceback (most recent call last):
  File "a.py", line 2, in <module>
    int("x")
ValueError: invalid literal for int() with base 10: 'x'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "a.py", line 4, in <module>
    raise RuntimeError("wrapped")
RuntimeError: wrapped
INFO after
Traceback (most recent call last):
  File "b.py", line 1, in <module>
KeyboardInterrupt
Traceback (most recent call last):
  File "c.py", line 1, in <module>
2024-01-01 not an exception line`,
		want: []string{
			"INFO ok",
			"Traceback (most recent call last):\n  File \"/app/main.py\", line 10, in <module>\n    main()\n  File \"/app/main.py\", line 6, in main\n    raise ValueError(\"bad\")\nValueError: bad",
			"INFO next",
			"Traceback (most recent call last):\n  File \"a.py\", line 2, in <module>\n    int(\"x\")\nValueError: invalid literal for int() with base 10: 'x'\n\nDuring handling of the above exception, another exception occurred:\n\nTraceback (most recent call last):\n  File \"a.py\", line 4, in <module>\n    raise RuntimeError(\"wrapped\")\nRuntimeError: wrapped",
			"INFO after",
			"Traceback (most recent call last):\n  File \"b.py\", line 1, in <module>\nKeyboardInterrupt",
			"Traceback (most recent call last):\n  File \"c.py\", line 1, in <module>",
			"2024-01-01 not an exception line",
		},
	}, {
		preset: PresetGo,
		lines: `starting server
panic: runtime error: index out of range [5] with length 3

goroutine 1 [running]:
main.main()
	/app/main.go:12 +0x1d
main.(*T).m(0xc000010000, {0x6c6a58, 0xc00009e0c0})
	/app/t.go:3 +0x2
created by main.start in goroutine 1
	/app/main.go:20 +0x5
exit status 2
next line
2024/01/01 12:00:00 http: panic serving 1.2.3.4:5678: boom
goroutine 34 [running]:
net/http.(*conn).serve.func1()
	/usr/local/go/src/net/http/server.go:1868 +0xb9
after`,
		want: []string{
			"starting server",
			"panic: runtime error: index out of range [5] with length 3\n\ngoroutine 1 [running]:\nmain.main()\n\t/app/main.go:12 +0x1d\nmain.(*T).m(0xc000010000, {0x6c6a58, 0xc00009e0c0})\n\t/app/t.go:3 +0x2\ncreated by main.start in goroutine 1\n\t/app/main.go:20 +0x5\nexit status 2",
			"next line",
			"2024/01/01 12:00:00 http: panic serving 1.2.3.4:5678: boom\ngoroutine 34 [running]:\nnet/http.(*conn).serve.func1()\n\t/usr/local/go/src/net/http/server.go:1868 +0xb9",
			"after",
		},
	}, {
		preset: PresetNodeJS,
		lines: `listening on 3000
/app/index.js:10
    throw new Error('boom');
    ^

Error: boom
    at Object.<anonymous> (/app/index.js:10:11)
    at Module._compile (node:internal/modules/cjs/loader:1256:14)

Node.js v18.17.0
Error: fail
    at foo (/app/x.js:1:2)
    at bar (/app/x.js:3:4) {
  code: 'E_FAIL'
}
next`,
		want: []string{
			"listening on 3000",
			"/app/index.js:10\n    throw new Error('boom');\n    ^\n\nError: boom\n    at Object.<anonymous> (/app/index.js:10:11)\n    at Module._compile (node:internal/modules/cjs/loader:1256:14)\n\nNode.js v18.17.0",
			"Error: fail\n    at foo (/app/x.js:1:2)\n    at bar (/app/x.js:3:4) {\n  code: 'E_FAIL'\n}",
			"next",
		},
	}}
	for _, c := range cases {
		t.Run(c.preset, func(t *testing.T) {
			got := feed(t, preset(t, c.preset), strings.Split(c.lines, "\n"))
			if !slices.Equal(got, c.want) {
				t.Errorf("got %d entries:\n%s\nwant %d:\n%s", len(got), strings.Join(got, "\n----\n"), len(c.want), strings.Join(c.want, "\n----\n"))
			}
		})
	}
	if _, err := MultilinePreset("cobol"); err == nil {
		t.Error("unknown preset accepted")
	}
}

func TestMultilineFirstline(t *testing.T) {
	// The multiline stage documentation's flask example.
	lines := strings.Split(`[2020-12-03 11:36:20] "GET /hello HTTP/1.1" 200 -
[2020-12-03 11:36:23] ERROR in app: Exception on /error [GET]
Traceback (most recent call last):
  File "/home/pallets/.pyenv/versions/3.8.5/lib/python3.8/site-packages/flask/app.py", line 2447, in wsgi_app
    response = self.full_dispatch_request()
  File "/home/pallets/src/deployment_tools/hello.py", line 10, in error
    raise Exception("Sorry, this route always breaks")
Exception: Sorry, this route always breaks
[2020-12-03 11:36:23] "GET /error HTTP/1.1" 500 -
[2020-12-03 11:36:26] "GET /hello HTTP/1.1" 200 -`, "\n")
	cfg, err := NewMultilineConfig(`^\[\d{4}-\d{2}-\d{2} \d{1,2}:\d{2}:\d{2}\]`, 3*time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := feed(t, cfg, lines)
	if len(got) != 4 || got[1] != strings.Join(lines[1:8], "\n") {
		t.Errorf("got %q", got)
	}
	for _, bad := range []string{"", "(", strings.Repeat("a", MaxRegexBytes+1)} {
		if _, err := NewMultilineConfig(bad, 0, 0); err == nil {
			t.Errorf("firstline %q accepted", bad)
		}
	}
}

func TestMultilineBounds(t *testing.T) {
	cfg := preset(t, PresetJava)
	cfg.MaxLines = 3
	lines := []string{"head", "\tat 1", "\tat 2", "\tat 3", "\tat 4", "next"}
	got := feed(t, cfg, lines)
	want := []string{"head\n\tat 1\n\tat 2", "\tat 3\n\tat 4", "next"}
	if !slices.Equal(got, want) {
		t.Errorf("max_lines: got %q, want %q", got, want)
	}

	cfg = preset(t, PresetJava)
	cfg.MaxBytes = 12
	lines = []string{"head", "\tat 1", "\tat 22", "\tat 3", "a line longer than max", "\tat 4"}
	got = feed(t, cfg, lines)
	want = []string{"head\n\tat 1", "\tat 22\n\tat 3", "a line longer than max", "\tat 4"}
	if !slices.Equal(got, want) {
		t.Errorf("max bytes: got %q, want %q", got, want)
	}
	for _, g := range got[:2] {
		if len(g) > cfg.MaxBytes {
			t.Errorf("entry of %d bytes", len(g))
		}
	}
}

func TestMultilineFlush(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	cfg := preset(t, PresetJava)
	ml := NewMultiline(cfg, m)
	if _, ok := ml.Deadline(); ok {
		t.Error("deadline with nothing open")
	}
	var out []Joined
	out = ml.Push(out, t0, "stdout", 1, "java.lang.Error: x", 10)
	out = ml.Push(out, t0.Add(time.Second), "stdout", 2, "\tat a", 11)
	if len(out) != 0 || ml.Pending() != 2 {
		t.Fatalf("emitted early: %+v", out)
	}
	d, ok := ml.Deadline()
	if !ok || !d.Equal(t0.Add(time.Second+cfg.MaxWait)) {
		t.Errorf("deadline %v %v", d, ok)
	}
	// Not yet due.
	if out = ml.Flush(out, d.Add(-time.Nanosecond)); len(out) != 0 {
		t.Fatalf("flushed before max_wait: %+v", out)
	}
	out = ml.Flush(out, d)
	if len(out) != 1 || out[0].Line != "java.lang.Error: x\n\tat a" || out[0].Reason != FlushMaxWait ||
		out[0].TimeNano != 1 || out[0].First != 10 || out[0].Last != 11 || out[0].Ack != 11 || !out[0].AckOK {
		t.Fatalf("flush at max_wait: %+v", out)
	}
	// A continuation after the flush starts its own entry.
	out = ml.Push(out[:0], d, "stdout", 3, "\tat late", 12)
	out = ml.FlushAll(out)
	if len(out) != 1 || out[0].Line != "\tat late" || out[0].Reason != FlushEnd || ml.Pending() != 0 {
		t.Fatalf("flush at end: %+v", out)
	}
	if got := testutil.ToFloat64(m.mlEntries.WithLabelValues("max_wait")); got != 1 {
		t.Errorf("max_wait entries counted %v", got)
	}
	if got := testutil.ToFloat64(m.mlLines); got != 3 {
		t.Errorf("lines counted %v", got)
	}
}

// TestMultilineInterleaved: stdout and stderr interleave; an entry of one
// source is complete while the other still holds an earlier line, so the
// Ack stays behind that line.
func TestMultilineInterleaved(t *testing.T) {
	ml := NewMultiline(preset(t, PresetJava), nil)
	type in struct {
		src, line string
	}
	input := []in{
		{"stdout", "out 1"},                 // 0
		{"stderr", "java.lang.Error: boom"}, // 1
		{"stdout", "out 2"},                 // 2: emits "out 1": ack 0
		{"stderr", "\tat a"},                // 3
		{"stdout", "out 3"},                 // 4: emits "out 2": stderr open since 1, ack 0
		{"stderr", "Caused by: x"},          // 5
		{"stderr", "err head"},              // 6: emits the trace 1,3,5: oldest open is out 3 (4): ack 3
		{"stdout", "out 4"},                 // 7: emits "out 3": oldest open is err head (6): ack 5
	}
	var out []Joined
	for i, x := range input {
		out = ml.Push(out, t0, x.src, int64(i), x.line, int64(i))
	}
	out = ml.FlushAll(out) // err head (6), out 4 (7): acks 6, 7
	type want struct {
		line  string
		first int64
		last  int64
		ack   int64
	}
	wants := []want{
		{"out 1", 0, 0, 0},
		{"out 2", 2, 2, 0},
		{"java.lang.Error: boom\n\tat a\nCaused by: x", 1, 5, 3},
		{"out 3", 4, 4, 5},
		{"err head", 6, 6, 6},
		{"out 4", 7, 7, 7},
	}
	if len(out) != len(wants) {
		t.Fatalf("got %d entries: %+v", len(out), out)
	}
	for i, w := range wants {
		j := out[i]
		if j.Line != w.line || j.First != w.first || j.Last != w.last || j.Ack != w.ack || !j.AckOK {
			t.Errorf("entry %d = %+v, want %+v", i, j, w)
		}
	}
	// The first entry emitted while an earlier line of the other source
	// is open has no Ack.
	ml = NewMultiline(preset(t, PresetJava), nil)
	out = ml.Push(nil, t0, "stderr", 0, "held", 100)
	out = ml.Push(out, t0, "stdout", 0, "a", 101)
	out = ml.Push(out, t0, "stdout", 0, "b", 102)
	if len(out) != 1 || out[0].AckOK {
		t.Errorf("ack while an earlier line is open: %+v", out)
	}
}

func TestMultilineManySources(t *testing.T) {
	ml := NewMultiline(preset(t, PresetJava), nil)
	var out []Joined
	for i := range maxSources + 2 {
		out = ml.Push(out, t0, string(rune('a'+i)), 0, "line", int64(i))
	}
	if len(out) != 2 || out[0].Source != "a" || out[0].Reason != FlushSources {
		t.Errorf("got %+v", out)
	}
	out = ml.FlushAll(out[:0])
	if len(out) != maxSources {
		t.Errorf("flushed %d", len(out))
	}
}
