package tail

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/logferry/logferry/sidecar/positions"
)

// dockerChunk is where dockerd splits a long line.
const dockerChunk = 16 << 10

// dockerWriter writes a json-file log the way dockerd does
// (daemon/logger/jsonfilelog and loggerutils.LogFile): one JSON object per
// write, a line longer than 16 KiB as several objects of which only the last
// has "\n" in "log", and rotation checked before each write.
type dockerWriter struct {
	t        testing.TB
	path     string
	maxSize  int64 // 0: never rotate
	maxFiles int
	compress bool
	// truncate makes max-file=1 truncate the file in place (Docker 20.10)
	// instead of removing and recreating it.
	truncate bool
	// deferCompress leaves .1 uncompressed until compressNow, like the
	// daemon's compression goroutine that runs after the rotation.
	deferCompress bool

	f         *os.File
	size      int64
	base      time.Time
	seq       int
	rotations int
}

func newDockerWriter(t testing.TB, dir string) *dockerWriter {
	t.Helper()
	id := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	cdir := filepath.Join(dir, id)
	if err := os.MkdirAll(cdir, 0o755); err != nil {
		t.Fatal(err)
	}
	w := &dockerWriter{t: t, path: filepath.Join(cdir, id+"-json.log"), maxFiles: 1,
		base: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)}
	w.open()
	t.Cleanup(func() { w.f.Close() })
	return w
}

func (w *dockerWriter) open() {
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		w.t.Fatal(err)
	}
	w.f, w.size = f, 0
}

type jsonEntry struct {
	Log    string            `json:"log"`
	Stream string            `json:"stream"`
	Attrs  map[string]string `json:"attrs,omitempty"`
	Time   string            `json:"time"`
}

func (w *dockerWriter) entryBytes(stream, log string, attrs map[string]string) []byte {
	w.seq++
	ts := w.base.Add(time.Duration(w.seq) * time.Microsecond).Format(time.RFC3339Nano)
	b, err := json.Marshal(jsonEntry{Log: log, Stream: stream, Attrs: attrs, Time: ts})
	if err != nil {
		w.t.Fatal(err)
	}
	return append(b, '\n')
}

// entry writes one json-file object (a whole line when log ends in "\n").
func (w *dockerWriter) entry(stream, log string, attrs map[string]string) {
	w.raw(w.entryBytes(stream, log, attrs))
}

// raw writes bytes as one entry, rotating first when the file is full.
func (w *dockerWriter) raw(b []byte) {
	if w.maxSize > 0 && w.size >= w.maxSize {
		w.rotate()
	}
	n, err := w.f.Write(b)
	if err != nil {
		w.t.Fatal(err)
	}
	w.size += int64(n)
}

// line writes text as dockerd does: in 16 KiB chunks.
func (w *dockerWriter) line(stream, text string) {
	for len(text) > dockerChunk {
		w.entry(stream, text[:dockerChunk], nil)
		text = text[dockerChunk:]
	}
	w.entry(stream, text+"\n", nil)
}

func (w *dockerWriter) gzExt() string {
	if w.compress {
		return ".gz"
	}
	return ""
}

// rotate does what loggerutils.LogFile.rotate does.
func (w *dockerWriter) rotate() {
	w.rotations++
	if w.compress && w.deferCompress {
		// The daemon's next rotation waits for the last compression.
		w.compressNow()
	}
	if err := w.f.Close(); err != nil {
		w.t.Fatal(err)
	}
	switch {
	case w.maxFiles < 2 && w.truncate:
	case w.maxFiles < 2:
		if err := os.Remove(w.path); err != nil {
			w.t.Fatal(err)
		}
	default:
		ext := w.gzExt()
		if err := os.Remove(fmt.Sprintf("%s.%d%s", w.path, w.maxFiles-1, ext)); err != nil && !errors.Is(err, os.ErrNotExist) {
			w.t.Fatal(err)
		}
		for i := w.maxFiles - 1; i > 1; i-- {
			err := os.Rename(fmt.Sprintf("%s.%d%s", w.path, i-1, ext), fmt.Sprintf("%s.%d%s", w.path, i, ext))
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				w.t.Fatal(err)
			}
		}
		if err := os.Rename(w.path, w.path+".1"); err != nil {
			w.t.Fatal(err)
		}
	}
	w.open()
	if w.compress && w.maxFiles > 1 && !w.deferCompress {
		w.compressNow()
	}
}

// compressNow does what loggerutils.compressFile does to .1.
func (w *dockerWriter) compressNow() {
	src := w.path + ".1"
	in, err := os.Open(src)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		w.t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(src+".gz", os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o640)
	if err != nil {
		w.t.Fatal(err)
	}
	zw := gzip.NewWriter(out)
	zw.Header.Extra = []byte(`{"lastTime":"2024-05-01T12:00:00Z"}`)
	if _, err := io.Copy(zw, in); err != nil {
		w.t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		w.t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		w.t.Fatal(err)
	}
	if err := os.Remove(src); err != nil {
		w.t.Fatal(err)
	}
}

// numbered returns the text of test line n; pad makes it longer.
func numbered(n, pad int) string {
	return fmt.Sprintf("line-%06d %s", n, strings.Repeat("x", pad))
}

// got is a delivered line, copied.
type got struct {
	Stream    string
	Text      string
	TimeNano  int64
	Attrs     map[string]string
	Partial   bool
	Truncated bool
	Token     int64
}

// run is a Tailer running in a goroutine that the test owns.
type run struct {
	t     *testing.T
	tl    *Tailer
	lines chan got
	done  chan error
	stop  context.CancelFunc
	// gate, when set, blocks delivery until a value is received.
	gate chan struct{}
	// holdReq asks a callback blocked at the gate to call HoldRotated; it
	// closes the channel it received when done.
	holdReq chan chan struct{}
	mu      sync.Mutex
	last    int64
	// entered counts calls of the callback, delivered those that returned.
	entered, delivered atomic.Int64
	// idle receives the delivered count each time Run waits for a change.
	idle chan int64
	// readOff is the file offset the last read reached.
	readOff atomic.Int64
}

func (r *run) lastToken() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

func startTailer(t *testing.T, cfg Config, w *Watcher, m *Metrics, gate chan struct{}) *run {
	t.Helper()
	var log *slog.Logger
	if os.Getenv("TAIL_DEBUG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	tl, err := New(cfg, w, m, log)
	if err != nil {
		t.Fatal(err)
	}
	return startRun(t, tl, gate)
}

func startRun(t *testing.T, tl *Tailer, gate chan struct{}) *run {
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{t: t, tl: tl, lines: make(chan got, 1<<16), done: make(chan error, 1), stop: cancel, gate: gate,
		idle: make(chan int64, 1<<10), holdReq: make(chan chan struct{})}
	tl.rd.afterRead = func(off int64) { r.readOff.Store(off) }
	tl.beforeWait = func() {
		select {
		case r.idle <- r.delivered.Load():
		default:
		}
	}
	go func() {
		r.done <- tl.Run(ctx, func(l Line) error {
			r.entered.Add(1)
			defer r.delivered.Add(1)
			r.mu.Lock()
			gate := r.gate
			r.mu.Unlock()
		wait:
			for gate != nil {
				select {
				case <-gate:
					break wait
				case done := <-r.holdReq:
					tl.HoldRotated()
					close(done)
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			r.mu.Lock()
			if l.Token < r.last {
				t.Errorf("token went backwards: %#x after %#x", l.Token, r.last)
			}
			r.last = l.Token
			r.mu.Unlock()
			g := got{Stream: l.Stream, Text: string(l.Data), TimeNano: l.TimeNano, Partial: l.Partial, Truncated: l.Truncated, Token: l.Token}
			if len(l.Attrs) > 0 {
				g.Attrs = map[string]string{}
				for _, a := range l.Attrs {
					g.Attrs[string(a.Key)] = string(a.Value)
				}
			}
			select {
			case r.lines <- g:
			case <-ctx.Done():
				return ctx.Err()
			}
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

// hold makes the callback, blocked at the gate, call HoldRotated.
func (r *run) hold() {
	done := make(chan struct{})
	r.holdReq <- done
	<-done
}

// setGate makes delivery wait for a value from gate (nil: no waiting).
func (r *run) setGate(gate chan struct{}) {
	r.mu.Lock()
	r.gate = gate
	r.mu.Unlock()
}

// waitIdle waits until Run waits for a change with n lines delivered.
func (r *run) waitIdle(n int64) {
	r.t.Helper()
	timeout := time.NewTimer(20 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case d := <-r.idle:
			if d == n {
				return
			}
		case <-timeout.C:
			r.t.Fatalf("the tailer did not go idle after %d lines (delivered %d)", n, r.delivered.Load())
		}
	}
}

// manualWatcher is a Watcher that is not running: tailers wake only when the
// test calls wake, so that the test decides what they see.
func manualWatcher(t *testing.T, m *Metrics) *Watcher {
	w, err := NewWatcher(nil, WatcherConfig{PollInterval: time.Hour, Resync: time.Hour}, m)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// expect receives n lines or fails.
func (r *run) expect(n int) []got {
	r.t.Helper()
	out := make([]got, 0, n)
	timeout := time.NewTimer(20 * time.Second)
	defer timeout.Stop()
	for len(out) < n {
		select {
		case g := <-r.lines:
			out = append(out, g)
		case err := <-r.done:
			r.done <- err
			r.t.Fatalf("Run returned %v after %d of %d lines", err, len(out), n)
		case <-timeout.C:
			r.t.Fatalf("got %d of %d lines; last: %+v", len(out), n, last(out))
		}
	}
	return out
}

func last(gs []got) any {
	if len(gs) == 0 {
		return nil
	}
	g := gs[len(gs)-1]
	if len(g.Text) > 40 {
		g.Text = g.Text[:40] + "..."
	}
	return g
}

// finish calls Finish and waits for Run to return nil; it returns the lines
// delivered meanwhile.
func (r *run) finish() []got {
	r.t.Helper()
	r.tl.Finish()
	var out []got
	timeout := time.NewTimer(20 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case g := <-r.lines:
			out = append(out, g)
		case err := <-r.done:
			r.done <- err
			if err != nil {
				r.t.Fatalf("Run after Finish = %v", err)
			}
			for {
				select {
				case g := <-r.lines:
					out = append(out, g)
				default:
					return out
				}
			}
		case <-timeout.C:
			r.t.Fatal("Run did not return after Finish")
		}
	}
}

// checkSeq checks that gs are the numbered lines from, from+1, ...
func checkSeq(t *testing.T, gs []got, from, pad int) {
	t.Helper()
	for i, g := range gs {
		if want := numbered(from+i, pad); g.Text != want {
			t.Fatalf("line %d: got %.40q, want %.40q", i, g.Text, want)
		}
	}
}

// startWatcher runs a Watcher until the test ends.
func startWatcher(t *testing.T, cfg WatcherConfig, m *Metrics) *Watcher {
	t.Helper()
	w, err := NewWatcher(nil, cfg, m)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return w
}

func counter(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }

// waitFor polls cond until it holds (for state with no event to wait on).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

func identityOf(t *testing.T, path string) positions.Identity {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	var id positions.Identity
	id.Dev, id.Inode = fileID(fi)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	id.SetFingerprint(b)
	return id
}
