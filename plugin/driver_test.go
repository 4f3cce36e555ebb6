package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/logferry/logferry/shared/dockerlog"
	"github.com/logferry/logferry/shared/logopts"
	"github.com/logferry/logferry/shared/loki"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// sink is a Loki push endpoint that records every line per stream.
type sink struct {
	srv   *httptest.Server
	mu    sync.Mutex
	lines map[string][]string
	ts    map[string][]int64
	down  bool
	// discard makes the sink take pushes without reading them (benchmarks
	// wait on acknowledgements instead).
	discard bool
}

func newSink(t testing.TB) *sink {
	s := &sink{lines: map[string][]string{}, ts: map[string][]int64{}}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		down, discard := s.down, s.discard
		s.mu.Unlock()
		if down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if discard {
			w.WriteHeader(204)
			return
		}
		raw, err := snappy.Decode(nil, body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		var req loki.PushRequest
		if err := req.Unmarshal(raw); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		s.mu.Lock()
		for _, st := range req.Streams {
			for _, e := range st.Entries {
				s.lines[st.Labels] = append(s.lines[st.Labels], e.Line)
				s.ts[st.Labels] = append(s.ts[st.Labels], e.Timestamp.Seconds*1e9+int64(e.Timestamp.Nanos))
			}
		}
		s.mu.Unlock()
		w.WriteHeader(204)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sink) url() string { return s.srv.URL + "/loki/api/v1/push" }

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, l := range s.lines {
		n += len(l)
	}
	return n
}

// down makes the sink answer 503 while set.
func (s *sink) setDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

type env struct {
	t      testing.TB
	dir    string
	driver *Driver
	pool   *loki.Pool
	sink   *sink
	reg    *prometheus.Registry
}

func newEnv(t testing.TB, stateDir string, s *sink) *env {
	return newEnvStore(t, stateDir, s, false)
}

func newEnvStore(t testing.TB, stateDir string, s *sink, withStore bool) *env {
	t.Helper()
	if s == nil {
		s = newSink(t)
	}
	reg := prometheus.NewRegistry()
	pool := loki.NewPool(loki.NewMetrics(reg), nil, time.Minute)
	state, err := NewState(filepath.Join(stateDir, "streams"))
	if err != nil {
		t.Fatal(err)
	}
	defaults := logopts.Defaults()
	defaults.Loki.BatchWait = 20 * time.Millisecond
	var store LocalStore
	if withStore {
		fs, err := NewFileStore(filepath.Join(stateDir, "logs"), nil)
		if err != nil {
			t.Fatal(err)
		}
		store = fs
	}
	d := NewDriver(Config{Defaults: defaults, Host: "testhost"}, pool, state, store, NewMetrics(reg), nil)
	return &env{t: t, dir: stateDir, driver: d, pool: pool, sink: s, reg: reg}
}

func (e *env) info(id string, opts map[string]string) Info {
	if opts == nil {
		opts = map[string]string{}
	}
	if _, ok := opts["loki-url"]; !ok {
		opts["loki-url"] = e.sink.url()
	}
	return Info{Config: opts, ContainerID: strings.Repeat(id, 64/len(id)), ContainerName: "/" + id,
		ContainerImageName: "loggen:test", ContainerImageID: "sha256:" + strings.Repeat("a", 64)}
}

// start starts a stream for container id, with the daemon's end of its
// FIFO open.
func (e *env) start(t *testing.T, id string) (fifo string, daemon *os.File) {
	t.Helper()
	fifo = mkfifo(t, t.TempDir(), id)
	if err := e.driver.StartLogging(fifo, e.info(id, nil)); err != nil {
		t.Fatal(err)
	}
	return fifo, daemonEnd(t, fifo)
}

// finish stops the stream as the daemon does (StopLogging, then its end
// closed), waits for it to end and shuts the driver down.
func (e *env) finish(t *testing.T, fifo string, daemon *os.File) {
	t.Helper()
	if err := e.driver.StopLogging(fifo); err != nil {
		t.Fatal(err)
	}
	daemon.Close()
	waitFor(t, "the stream to end", func() bool { return e.driver.Active() == 0 })
	e.driver.Shutdown(context.Background())
}

func mkfifo(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// daemonEnd opens the FIFO's write end the way dockerd does (after
// StartLogging, non-blocking).
func daemonEnd(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Blocking writes, like the daemon's: a full pipe waits for the reader.
	if err := syscall.SetNonblock(int(f.Fd()), false); err != nil {
		t.Fatal(err)
	}
	return f
}

// writeLine writes a line as the daemon does: in 16 KiB chunks sharing a
// partial id when longer.
func writeLine(t *testing.T, w io.Writer, source string, ts int64, line []byte, id string) {
	t.Helper()
	var buf []byte
	if len(line) <= 16<<10 {
		buf = dockerlog.AppendFrame(buf, &dockerlog.Frame{Source: source, TimeNano: ts, Line: line})
	} else {
		for ord := int32(1); len(line) > 0; ord++ {
			n := min(len(line), 16<<10)
			buf = dockerlog.AppendFrame(buf, &dockerlog.Frame{Source: source, TimeNano: ts, Line: line[:n], Partial: true,
				HasPartialMetadata: true, PartialID: id, PartialOrdinal: ord, PartialLast: n == len(line)})
			line = line[n:]
		}
	}
	if _, err := w.Write(buf); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestStartStopDeliversEverythingWhole(t *testing.T) {
	e := newEnv(t, t.TempDir(), nil)
	fifo, w := e.start(t, "c1")
	long := bytes.Repeat([]byte("L"), 40<<10)
	const n = 3000
	for i := 0; i < n; i++ {
		src := "stdout"
		if i%4 == 0 {
			src = "stderr"
		}
		line := []byte(fmt.Sprintf("line %d é日本", i))
		if i%500 == 0 {
			line = append(line, long...)
		}
		writeLine(t, w, src, int64(1700000000000000000+i), line, fmt.Sprint("p", i))
	}
	writeLine(t, w, "stdout", 1800000000000000000, []byte("bad utf8 \xff\xfe end"), "x")
	// StopLogging answers while the daemon still holds its end open: it
	// does not wait for the stream to drain.
	if err := e.driver.StopLogging(fifo); err != nil {
		t.Fatal(err)
	}
	w.Close()
	waitFor(t, "the stream to end", func() bool { return e.driver.Active() == 0 })
	e.driver.Shutdown(context.Background())

	stdout := `{container_name="c1", host="testhost", source="stdout"}`
	stderr := `{container_name="c1", host="testhost", source="stderr"}`
	if got := e.sink.count(); got != n+1 {
		t.Fatalf("Loki got %d lines, want %d (streams %v)", got, n+1, keys(e.sink.lines))
	}
	for _, st := range []string{stdout, stderr} {
		for _, l := range e.sink.lines[st] {
			var i int
			fmt.Sscanf(l, "line %d", &i)
			if strings.HasPrefix(l, "line") && i%500 == 0 && len(l) != len(fmt.Sprintf("line %d é日本", i))+len(long) {
				t.Fatalf("long line %d arrived with %d bytes", i, len(l))
			}
		}
	}
	last := e.sink.lines[stdout][len(e.sink.lines[stdout])-1]
	if last != "bad utf8 \uFFFD\uFFFD end" {
		t.Fatalf("invalid UTF-8 line arrived as %q", last)
	}
	if _, err := os.Stat(e.driver.state.path(fifo)); !os.IsNotExist(err) {
		t.Fatalf("state record left after the stream ended: %v", err)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestStartLoggingRejectsBadOptions(t *testing.T) {
	e := newEnv(t, t.TempDir(), nil)
	tests := []struct {
		opts map[string]string
		want string
	}{
		{map[string]string{"loki-batch-wait": "soon"}, "loki-batch-wait"},
		{map[string]string{"loki-url": ""}, "loki-url"},
		{map[string]string{"loki-pipeline-stages": "x"}, "loki-pipeline-stages"},
		{map[string]string{"lokiurl": "x"}, "lokiurl"},
		{map[string]string{"loki-external-labels": "a={{.Nope}}"}, "loki-external-labels"},
	}
	for _, tt := range tests {
		fifo := mkfifo(t, t.TempDir(), "c")
		err := e.driver.StartLogging(fifo, e.info("bad", tt.opts))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("options %v: error %v does not name %s", tt.opts, err, tt.want)
		}
	}
	if e.driver.Active() != 0 || e.pool.Len() != 0 {
		t.Fatalf("a refused start left %d streams, %d dispatchers", e.driver.Active(), e.pool.Len())
	}
	e.driver.Shutdown(context.Background())
}

func TestStartAndStopAreIdempotent(t *testing.T) {
	e := newEnv(t, t.TempDir(), nil)
	fifo := mkfifo(t, t.TempDir(), "c")
	for i := 0; i < 3; i++ {
		if err := e.driver.StartLogging(fifo, e.info("c2", nil)); err != nil {
			t.Fatal(err)
		}
	}
	if e.driver.Active() != 1 {
		t.Fatalf("%d streams for one FIFO", e.driver.Active())
	}
	if err := e.driver.StopLogging("/no/such/fifo"); err != nil {
		t.Fatal(err)
	}
	w := daemonEnd(t, fifo)
	for i := 0; i < 3; i++ {
		_ = e.driver.StopLogging(fifo)
	}
	w.Close()
	waitFor(t, "the stream to end", func() bool { return e.driver.Active() == 0 })
	e.driver.Shutdown(context.Background())
}

// TestNewFIFOEndsTheOldStream: a daemon restarted with live-restore
// starts a new FIFO for a running container and never stops the old one,
// whose writer died with the previous process. The old stream reads what
// that process left in its pipe and ends; the new one carries on; every
// line arrives once.
func TestNewFIFOEndsTheOldStream(t *testing.T) {
	e := newEnv(t, t.TempDir(), nil)
	dir := t.TempDir()
	info := e.info("c3", nil)
	oldFIFO, newFIFO := mkfifo(t, dir, "old"), mkfifo(t, dir, "new")
	if err := e.driver.StartLogging(oldFIFO, info); err != nil {
		t.Fatal(err)
	}
	w := daemonEnd(t, oldFIFO)
	ts := int64(1700000000000000000)
	for i := 0; i < 100; i++ {
		writeLine(t, w, "stdout", ts+int64(i), []byte(fmt.Sprintf("line %d", i)), "")
	}
	w.Close() // the previous daemon exits: no StopLogging
	if err := e.driver.StartLogging(newFIFO, info); err != nil {
		t.Fatal(err)
	}
	w = daemonEnd(t, newFIFO)
	for i := 100; i < 200; i++ {
		writeLine(t, w, "stdout", ts+int64(i), []byte(fmt.Sprintf("line %d", i)), "")
	}
	waitFor(t, "the old FIFO's stream to end", func() bool { return e.driver.Active() == 1 })
	if _, err := os.Stat(e.driver.state.path(oldFIFO)); !os.IsNotExist(err) {
		t.Fatalf("the old FIFO's state record is left: %v", err)
	}
	_ = e.driver.StopLogging(newFIFO)
	w.Close()
	waitFor(t, "the stream to end", func() bool { return e.driver.Active() == 0 })
	e.driver.Shutdown(context.Background())
	if got := e.sink.count(); got != 200 {
		t.Fatalf("Loki got %d lines, want 200", got)
	}
}

// TestManyStreamsShareOneDispatcher: streams with the same endpoint
// configuration share one dispatcher.
func TestManyStreamsShareOneDispatcher(t *testing.T) {
	e := newEnv(t, t.TempDir(), nil)
	dir := t.TempDir()
	var ends []*os.File
	var fifos []string
	for i := 0; i < 50; i++ {
		fifo := mkfifo(t, dir, fmt.Sprint("c", i))
		if err := e.driver.StartLogging(fifo, e.info(fmt.Sprintf("s%02d", i), nil)); err != nil {
			t.Fatal(err)
		}
		fifos = append(fifos, fifo)
		ends = append(ends, daemonEnd(t, fifo))
	}
	if e.pool.Len() != 1 {
		t.Fatalf("%d dispatchers for one endpoint", e.pool.Len())
	}
	for i, w := range ends {
		writeLine(t, w, "stdout", 1700000000000000000, []byte("hello"), "")
		_ = e.driver.StopLogging(fifos[i])
		w.Close()
	}
	waitFor(t, "every stream to end", func() bool { return e.driver.Active() == 0 })
	e.driver.Shutdown(context.Background())
	if e.sink.count() != 50 {
		t.Fatalf("%d of 50 lines", e.sink.count())
	}
	// No per-container series is left.
	families, _ := e.reg.Gather()
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), "logferry_plugin_entries_read") && len(f.GetMetric()) != 0 {
			t.Fatalf("%s keeps %d series after every stream ended", f.GetName(), len(f.GetMetric()))
		}
	}
}

// TestRestartReattaches: a new Driver on the same state directory re-opens
// the FIFO of a stream the old one had, and reads what is in the pipe.
func TestRestartReattaches(t *testing.T) {
	stateDir := t.TempDir()
	s := newSink(t)
	e1 := newEnv(t, stateDir, s)
	fifo := mkfifo(t, t.TempDir(), "c")
	if err := e1.driver.StartLogging(fifo, e1.info("re", nil)); err != nil {
		t.Fatal(err)
	}
	w := daemonEnd(t, fifo)
	writeLine(t, w, "stdout", 1700000000000000001, []byte("before restart"), "")
	waitFor(t, "the first line", func() bool { return s.count() == 1 })
	// The plugin goes away (its streams stop reading; records stay). The
	// daemon keeps its end open, as it does while the container runs.
	e1.driver.Shutdown(context.Background())

	e2 := newEnv(t, stateDir, s)
	n, err := e2.driver.Restore()
	if err != nil || n != 1 {
		t.Fatalf("Restore: %d, %v", n, err)
	}
	writeLine(t, w, "stdout", 1700000000000000002, []byte("after restart"), "")
	waitFor(t, "the second line", func() bool { return s.count() == 2 })
	_ = e2.driver.StopLogging(fifo)
	w.Close()
	waitFor(t, "the stream to end", func() bool { return e2.driver.Active() == 0 })
	e2.driver.Shutdown(context.Background())
	// A record whose FIFO is gone is dropped.
	e3 := newEnv(t, stateDir, s)
	if err := e3.driver.state.Save(record{File: filepath.Join(t.TempDir(), "gone"), Info: e3.info("gone", nil)}); err != nil {
		t.Fatal(err)
	}
	// It only re-sends its local copy (none here), then is forgotten.
	if n, err := e3.driver.Restore(); n != 1 || err != nil {
		t.Fatalf("Restore of a gone FIFO: %d, %v", n, err)
	}
	waitFor(t, "the replay-only stream to end", func() bool { return e3.driver.Active() == 0 })
	if recs, _ := e3.driver.state.Load(); len(recs) != 0 {
		t.Fatalf("%d records left", len(recs))
	}
	e3.driver.Shutdown(context.Background())
}

func TestHTTPProtocol(t *testing.T) {
	e := newEnv(t, t.TempDir(), nil)
	h := NewHandler(e.driver)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	srv := &http.Server{Handler: h}
	go func() { defer close(served); _ = srv.Serve(ln) }()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	base := "http://" + ln.Addr().String()
	post := func(path string, body any) (int, map[string]any) {
		b, _ := json.Marshal(body)
		resp, err := client.Post(base+path, "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	if _, out := post("/Plugin.Activate", nil); fmt.Sprint(out["Implements"]) != "[LogDriver]" {
		t.Fatalf("Activate: %v", out)
	}
	if _, out := post("/LogDriver.Capabilities", nil); fmt.Sprint(out["Cap"]) != "map[ReadLogs:true]" {
		t.Fatalf("Capabilities: %v", out)
	}
	fifo := mkfifo(t, t.TempDir(), "c")
	info := e.info("h1", map[string]string{"loki-retries": "lots"})
	if code, out := post("/LogDriver.StartLogging", StartLoggingRequest{File: fifo, Info: info}); code == 200 || !strings.Contains(fmt.Sprint(out["Err"]), "loki-retries") {
		t.Fatalf("bad option: %d %v", code, out)
	}
	info = e.info("h1", nil)
	if code, out := post("/LogDriver.StartLogging", StartLoggingRequest{File: fifo, Info: info}); code != 200 || out["Err"] != "" {
		t.Fatalf("StartLogging: %d %v", code, out)
	}
	w := daemonEnd(t, fifo)
	if code, out := post("/LogDriver.StopLogging", StopLoggingRequest{File: fifo}); code != 200 || out["Err"] != "" {
		t.Fatalf("StopLogging: %d %v", code, out)
	}
	w.Close()
	waitFor(t, "the stream to end", func() bool { return e.driver.Active() == 0 })
	ln.Close()
	<-served
	e.driver.Shutdown(context.Background())
}

// TestRestartResendsWhatLokiDidNotAccept: lines read while Loki was down
// and lost with the process are re-sent from the local copy by the next
// process; lines Loki had accepted are not sent again.
func TestRestartResendsWhatLokiDidNotAccept(t *testing.T) {
	stateDir := t.TempDir()
	s := newSink(t)
	e1 := newEnvStore(t, stateDir, s, true)
	fifo := mkfifo(t, t.TempDir(), "c")
	if err := e1.driver.StartLogging(fifo, e1.info("rs", map[string]string{"loki-retries": "0"})); err != nil {
		t.Fatal(err)
	}
	w := daemonEnd(t, fifo)
	base := time.Now().UnixNano()
	for i := 0; i < 10; i++ {
		writeLine(t, w, "stdout", base+int64(i), []byte(fmt.Sprint("accepted ", i)), "")
	}
	waitFor(t, "the first lines", func() bool { return s.count() == 10 })
	// The positions file must hold the acknowledgement before the crash.
	waitFor(t, "the position to be saved", func() bool {
		return e1.driver.state.LoadPositions()[fifo] == base+9
	})
	s.setDown(true)
	for i := 0; i < 20; i++ {
		writeLine(t, w, "stdout", base+int64(100+i), []byte(fmt.Sprint("during outage ", i)), "")
	}
	waitFor(t, "the outage lines to reach the local copy", func() bool {
		return testCounter(e1.reg, "logferry_plugin_frames_read_total") == 30
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	e1.driver.Shutdown(ctx) // Loki is down: the 20 lines are not delivered
	cancel()
	if s.count() != 10 {
		t.Fatalf("%d lines delivered while Loki was down", s.count())
	}

	s.setDown(false)
	e2 := newEnvStore(t, stateDir, s, true)
	if n, err := e2.driver.Restore(); n != 1 || err != nil {
		t.Fatalf("Restore: %d, %v", n, err)
	}
	writeLine(t, w, "stdout", base+200, []byte("after restart"), "")
	_ = e2.driver.StopLogging(fifo)
	w.Close()
	waitFor(t, "the stream to end", func() bool { return e2.driver.Active() == 0 })
	e2.driver.Shutdown(context.Background())
	lines := s.lines[`{container_name="rs", host="testhost", source="stdout"}`]
	seen := map[string]int{}
	for _, l := range lines {
		seen[l]++
	}
	for i := 0; i < 20; i++ {
		if seen[fmt.Sprint("during outage ", i)] != 1 {
			t.Fatalf("outage line %d delivered %d times; all: %q", i, seen[fmt.Sprint("during outage ", i)], lines)
		}
	}
	if seen["after restart"] != 1 {
		t.Fatalf("the line after the restart arrived %d times", seen["after restart"])
	}
	// Lines Loki had accepted are not re-sent: Loki would store them twice
	// (its log queries hide that, its metric queries count both).
	if got := testCounter(e2.reg, "logferry_plugin_lines_replayed_total"); got != 20 {
		t.Fatalf("re-sent %v lines, want exactly the 20 of the outage", got)
	}
	if len(lines) != 31 {
		t.Fatalf("Loki got %d lines, want 31", len(lines))
	}
}

func testCounter(reg *prometheus.Registry, name string) float64 {
	families, _ := reg.Gather()
	sum := 0.0
	for _, f := range families {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
