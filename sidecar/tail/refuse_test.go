package tail

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/logferry/logferry/sidecar/positions"
)

// refuseID is a container id as Docker writes them.
const refuseID = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

// jsonLines returns json-file lines whose texts are prefix-0, prefix-1, ...
func jsonLines(prefix string, n int) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, `{"log":"%s-%d\n","stream":"stdout","time":"2024-05-01T12:00:00.%06dZ"}`+"\n", prefix, i, i)
	}
	return b.Bytes()
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
}

// secretFile is a host file outside the containers directory that would
// be shipped if it were read: it holds json-file lines, SECRET-0, ...
func secretFile(t *testing.T, gz bool) string {
	t.Helper()
	b := jsonLines("SECRET", 5)
	name := "shadow"
	if gz {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(b)
		zw.Close()
		b, name = z.Bytes(), "shadow.gz"
	}
	path := filepath.Join(t.TempDir(), name)
	writeFile(t, path, b)
	return path
}

// containerDir makes <containers>/<id>/ and returns the log's live path.
func containerDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "containers", refuseID)
	if err := os.MkdirAll(dir, 0o710); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, refuseID+"-json.log")
}

// firstIdle returns how many lines had been delivered when Run first
// waited for a change.
func (r *run) firstIdle() int64 {
	r.t.Helper()
	timeout := time.NewTimer(20 * time.Second)
	defer timeout.Stop()
	select {
	case d := <-r.idle:
		return d
	case err := <-r.done:
		r.done <- err
		r.t.Fatalf("Run returned %v", err)
	case <-timeout.C:
		r.t.Fatal("the tailer never waited for a change (blocked opening the log?)")
	}
	return 0
}

// unblockFIFO lets a tailer blocked opening a FIFO (the bug this file
// tests) return, after a failure: a writer comes and goes.
func unblockFIFO(t *testing.T, path string) {
	if fi, err := os.Lstat(path); !t.Failed() || err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		return
	}
	if f, err := os.OpenFile(path, os.O_RDWR, 0); err == nil { // never blocks on Linux
		f.Close()
	}
}

// refusals is a slog.Handler that keeps the refusal warnings.
type refusals struct {
	mu   sync.Mutex
	recs []map[string]string
}

func (h *refusals) Enabled(context.Context, slog.Level) bool { return true }
func (h *refusals) WithGroup(string) slog.Handler            { return h }

func (h *refusals) WithAttrs(as []slog.Attr) slog.Handler {
	return &withAttrs{h, as}
}

func (h *refusals) Handle(_ context.Context, r slog.Record) error { return h.handle(r, nil) }

func (h *refusals) handle(r slog.Record, pre []slog.Attr) error {
	if !strings.HasPrefix(r.Message, "refusing") {
		return nil
	}
	rec := map[string]string{}
	for _, a := range pre {
		rec[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool { rec[a.Key] = a.Value.String(); return true })
	h.mu.Lock()
	h.recs = append(h.recs, rec)
	h.mu.Unlock()
	return nil
}

func (h *refusals) get() []map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]map[string]string(nil), h.recs...)
}

type withAttrs struct {
	h  *refusals
	as []slog.Attr
}

func (w *withAttrs) Enabled(context.Context, slog.Level) bool { return true }
func (w *withAttrs) WithGroup(string) slog.Handler            { return w }
func (w *withAttrs) WithAttrs(as []slog.Attr) slog.Handler {
	return &withAttrs{w.h, append(append([]slog.Attr(nil), w.as...), as...)}
}
func (w *withAttrs) Handle(_ context.Context, r slog.Record) error { return w.h.handle(r, w.as) }

// checkRefused checks that one file was refused, for reason, counted and
// logged once with the container id and the file.
func checkRefused(t *testing.T, m *Metrics, logs *refusals, reason, file string) {
	t.Helper()
	for _, r := range []string{RefusedSymlink, RefusedNotRegular} {
		want := 0.0
		if r == reason {
			want = 1
		}
		if got := counter(m.refused.WithLabelValues(r)); got != want {
			t.Errorf("refused{reason=%q} = %v, want %v", r, got, want)
		}
	}
	recs := logs.get()
	if len(recs) != 1 {
		t.Fatalf("%d refusal warnings, want 1: %v", len(recs), recs)
	}
	if r := recs[0]; r["container_id"] != refuseID || r["file"] != file || r["reason"] != reason {
		t.Errorf("refusal warning %v, want container_id %s, file %s, reason %s", r, refuseID, file, reason)
	}
}

// startLogged is startTailer with the refusal warnings kept.
func startLogged(t *testing.T, cfg Config, w *Watcher, m *Metrics) (*run, *refusals) {
	t.Helper()
	logs := &refusals{}
	tl, err := New(cfg, w, m, slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	return startRun(t, tl, nil), logs
}

// noSecret fails when a delivered line came from the secret file.
func noSecret(t *testing.T, gs []got) {
	t.Helper()
	for _, g := range gs {
		if strings.Contains(g.Text, "SECRET") {
			t.Fatalf("a line of the host's secret file was delivered: %q", g.Text)
		}
	}
}

// What is at <id>-json.log, or the container directory itself, is not a
// regular file of that directory: nothing is read from it and it does not
// block; once a real log file takes its place, that one is tailed. Every
// way of starting is tried: from the live file, from the oldest file, and
// from a saved position that names the secret file's content.
func TestRefusedLiveFile(t *testing.T) {
	type setup func(t *testing.T, path string) (fix func())
	cases := []struct {
		name   string
		reason string
		setup  setup
	}{
		{"symlinked live file", RefusedSymlink, func(t *testing.T, path string) func() {
			if err := os.Symlink(secretFile(t, false), path); err != nil {
				t.Fatal(err)
			}
			return func() { os.Remove(path) }
		}},
		{"symlinked container directory", RefusedSymlink, func(t *testing.T, path string) func() {
			dir := filepath.Dir(path)
			outside := t.TempDir()
			if err := os.Rename(secretFile(t, false), filepath.Join(outside, filepath.Base(path))); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, dir); err != nil {
				t.Fatal(err)
			}
			return func() {
				if err := os.Remove(dir); err != nil {
					t.Fatal(err)
				}
				if err := os.Mkdir(dir, 0o710); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"FIFO", RefusedNotRegular, func(t *testing.T, path string) func() {
			mkfifo(t, path)
			return func() { os.Remove(path) }
		}},
		{"directory", RefusedNotRegular, func(t *testing.T, path string) func() {
			if err := os.Mkdir(path, 0o710); err != nil {
				t.Fatal(err)
			}
			return func() { os.Remove(path) }
		}},
	}
	for _, tc := range cases {
		for _, start := range []string{"live", "oldest", "resume"} {
			t.Run(tc.name+"/"+start, func(t *testing.T) {
				path := containerDir(t)
				fix := tc.setup(t, path)
				cfg := Config{Path: path}
				switch start {
				case "oldest":
					cfg.FromOldest = true
				case "resume":
					// A saved position in the secret's content, as a
					// positions file written by someone else could hold.
					var id positions.Identity
					id.SetFingerprint(jsonLines("SECRET", 5))
					cfg.Start = &positions.Position{File: id}
				}
				m := NewMetrics(nil)
				// A short resync: the Watcher's inotify watch stays on the
				// directory a replaced symlink pointed to.
				w := startWatcher(t, WatcherConfig{Resync: 20 * time.Millisecond}, m)
				r, logs := startLogged(t, cfg, w, m)
				t.Cleanup(func() { unblockFIFO(t, path) }) // before the tailer's cleanup waits for Run
				if d := r.firstIdle(); d != 0 {
					noSecret(t, r.expect(int(d)))
					t.Fatalf("%d lines delivered", d)
				}
				checkRefused(t, m, logs, tc.reason, path)
				fix()
				writeFile(t, path, jsonLines("ok", 3))
				gs := r.expect(3)
				noSecret(t, gs)
				for i, g := range gs {
					if want := fmt.Sprintf("ok-%d", i); g.Text != want {
						t.Errorf("line %d: %q, want %q", i, g.Text, want)
					}
				}
				checkRefused(t, m, logs, tc.reason, path) // still once
			})
		}
	}
}

// A rotated file that is a symlink is never read, and the log goes on past
// it to the newer files.
func TestRefusedRotatedSymlink(t *testing.T) {
	for _, gz := range []bool{false, true} {
		t.Run(fmt.Sprint("gz=", gz), func(t *testing.T) {
			path := containerDir(t)
			writeFile(t, path+".2", jsonLines("old", 3))
			rotated := path + ".1"
			if gz {
				rotated += ".gz"
			}
			if err := os.Symlink(secretFile(t, gz), rotated); err != nil {
				t.Fatal(err)
			}
			writeFile(t, path, jsonLines("new", 3))
			m := NewMetrics(nil)
			r, logs := startLogged(t, Config{Path: path, FromOldest: true, PollInterval: 5 * time.Millisecond}, nil, m)
			gs := r.expect(6)
			noSecret(t, gs)
			for i, g := range gs {
				want := fmt.Sprintf("old-%d", i)
				if i >= 3 {
					want = fmt.Sprintf("new-%d", i-3)
				}
				if g.Text != want {
					t.Errorf("line %d: %q, want %q", i, g.Text, want)
				}
			}
			r.waitIdle(6)
			checkRefused(t, m, logs, RefusedSymlink, rotated)
		})
	}
}

// The opening layer itself refuses a symlink, whatever a listing said: a
// rotated file swapped for a symlink after it was listed, and the positions
// search that reads files' first bytes.
func TestOpenSourceRefusesSymlink(t *testing.T) {
	path := containerDir(t)
	writeFile(t, path, jsonLines("live", 1))
	rotated := path + ".1"
	if err := os.Symlink(secretFile(t, false), rotated); err != nil {
		t.Fatal(err)
	}
	f := logFile{path: rotated, index: 1} // as listed before the swap, identity unknown
	src, _, _, err := openSource(f, 0)
	if err == nil {
		src.close()
		t.Fatal("openSource opened a symlink")
	}
	if !errors.Is(err, ErrSymlink) || !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), rotated) {
		t.Errorf("openSource: %v, want ErrSymlink naming %s", err, rotated)
	}
	if p, err := f.prefix(); !errors.Is(err, ErrSymlink) {
		t.Fatalf("prefix through a symlink: %q, %v", p, err)
	}
}

// fanotify follows no symlink at the container directory: such a log is
// not kept (its files are refused anyway). A symlink above it, at the
// containers directory, is the operator's and still works
// (TestKeeperThroughSymlinkedDir).
func TestKeeperRefusesSymlinkedContainerDir(t *testing.T) {
	needFanotify(t)
	base := t.TempDir()
	real := filepath.Join(base, "real")
	if err := os.Mkdir(real, 0o710); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, refuseID)
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	w := manualWatcher(t, NewMetrics(nil))
	if l := w.keep(filepath.Join(link, refuseID+"-json.log"), 1<<30, nil); l != nil {
		w.unkeep(l)
		t.Fatal("a log in a symlinked container directory is kept")
	}
}

// NewMetricsWithRefusals counts in the caller's counter, which the caller
// registers: the tail's own series register beside it.
func TestRefusalsCountedInGivenCounter(t *testing.T) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "logferry_sidecar_files_refused_total", Help: "h"}, []string{"reason"})
	reg := prometheus.NewRegistry()
	reg.MustRegister(vec)
	m := NewMetricsWithRefusals(reg, vec)
	path := containerDir(t)
	if err := os.Symlink(secretFile(t, false), path); err != nil {
		t.Fatal(err)
	}
	r := startTailer(t, Config{Path: path}, nil, m, nil)
	r.waitIdle(0)
	if got := counter(vec.WithLabelValues(RefusedSymlink)); got != 1 {
		t.Errorf("refused{reason=symlink} = %v, want 1", got)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	if !names["logferry_sidecar_files_refused_total"] || !names["logferry_sidecar_tail_rotations_total"] {
		t.Errorf("registered: %v", names)
	}
}
