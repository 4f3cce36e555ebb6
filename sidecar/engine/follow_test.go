package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/logferry/logferry/shared/dockerlog"
	"github.com/logferry/logferry/shared/metadata"
)

func TestFormatSince(t *testing.T) {
	for _, tc := range []struct {
		ns   int64
		want string
	}{
		{0, "0.000000000"},
		{1, "0.000000001"},
		{999_999_999, "0.999999999"},
		{1_000_000_000, "1.000000000"},
		{1_700_000_000_123_456_789, "1700000000.123456789"},
		{1_700_000_000_000_000_010, "1700000000.000000010"},
		{-5, "0.000000000"},
	} {
		if got := FormatSince(tc.ns); got != tc.want {
			t.Errorf("FormatSince(%d) = %q, want %q", tc.ns, got, tc.want)
		}
	}
}

// logMsg is one message of a fake container's log, text with its '\n'
// unless it is a chunk of a longer line.
type logMsg struct {
	stream string
	ns     int64
	text   string
}

// want is the message Follow delivers for m: a chunk of a split line is
// partial; the daemon's chunks but the last are 16 KiB, and Docker 20.10's
// local driver writes no '\n' after the last.
func (m logMsg) want() dockerlog.StreamMessage {
	line, whole := strings.CutSuffix(m.text, "\n")
	return dockerlog.StreamMessage{Stream: m.stream, TimeNano: m.ns, Line: []byte(line), Partial: !whole && len(line) >= 16<<10}
}

// sinceRE is the only since form the fake accepts: what FormatSince makes.
var sinceRE = regexp.MustCompile(`^[0-9]+\.[0-9]{9}$`)

// parseSince parses since as dockerd does (seconds, nanoseconds).
func parseSince(s string) (int64, error) {
	if !sinceRE.MatchString(s) {
		return 0, fmt.Errorf("since %q is not seconds.nanoseconds", s)
	}
	sec, frac, _ := strings.Cut(s, ".")
	a, _ := strconv.ParseInt(sec, 10, 64)
	b, _ := strconv.ParseInt(frac, 10, 64)
	return a*1e9 + b, nil
}

// cut is how one logs request of a fakeLog ends: after the messages of the
// log before index upTo (those the request's since lets through), with a
// clean end of the stream (eof) or a connection cut inside the next message.
type cut struct {
	upTo int
	eof  bool
}

// fakeLog serves a container's log through /containers/{id}/logs as dockerd
// does (since inclusive, in the log's order), ending the requests as its
// plan says and then serving everything; inspect reports the container
// running until the last request began.
type fakeLog struct {
	t        *testing.T
	tty      bool
	msgs     []logMsg
	plan     []cut
	requests atomic.Int32

	mu     sync.Mutex
	sinces []string // of every request
}

func (l *fakeLog) since(i int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sinces[i]
}

func (l *fakeLog) install(f *fakeEngine, id string) {
	f.handle("/containers/{id}/logs", func(w http.ResponseWriter, r *http.Request, attempt int) {
		l.requests.Add(1)
		q := r.URL.Query()
		if r.PathValue("id") != id || q.Get("follow") != "1" || q.Get("timestamps") != "1" || q.Get("stdout") != "1" || q.Get("stderr") != "1" {
			l.t.Errorf("logs request %s: want follow, timestamps, stdout, stderr of %s", r.URL, id)
		}
		l.mu.Lock()
		l.sinces = append(l.sinces, q.Get("since"))
		l.mu.Unlock()
		var since int64
		if s := q.Get("since"); s != "" {
			var err error
			if since, err = parseSince(s); err != nil {
				l.t.Error(err)
			}
		}
		c := cut{upTo: len(l.msgs), eof: true}
		if attempt <= len(l.plan) {
			c = l.plan[attempt-1]
		}
		w.WriteHeader(http.StatusOK)
		for i, m := range l.msgs {
			if m.ns < since {
				continue
			}
			b := l.encode(m)
			if i >= c.upTo {
				if !c.eof {
					_, _ = w.Write(b[:len(b)/2])
					flush(w)
					abort()
				}
				break
			}
			_, _ = w.Write(b)
		}
		flush(w)
	})
	f.handle("/containers/{id}/json", func(w http.ResponseWriter, r *http.Request, attempt int) {
		running := int(l.requests.Load()) <= len(l.plan)
		writeJSON(w, http.StatusOK, container.InspectResponse{
			ID:         id,
			Name:       "/fake",
			Created:    "2025-01-02T03:04:05.123456789Z",
			State:      &container.State{Running: running, StartedAt: "2025-01-02T03:04:06Z", FinishedAt: "0001-01-01T00:00:00Z"},
			Config:     &container.Config{Tty: l.tty},
			HostConfig: &container.HostConfig{LogConfig: container.LogConfig{Type: "local"}},
		})
	})
}

func (l *fakeLog) encode(m logMsg) []byte {
	if l.tty {
		return ttyMessage(m.ns, m.text)
	}
	return muxFrame(m.stream, m.ns, m.text)
}

// collect returns an out that copies every message into *got.
func collect(got *[]dockerlog.StreamMessage) func(dockerlog.StreamMessage) error {
	return func(m dockerlog.StreamMessage) error {
		m.Line = bytes.Clone(m.Line)
		*got = append(*got, m)
		return nil
	}
}

// testLog has what makes resuming hard: several messages in one nanosecond
// on both streams, a message stamped before the one logged ahead of it (the
// daemon stamps stdout and stderr in separate goroutines), the same line
// twice in one nanosecond, and lines the daemon split into chunks that share
// a timestamp (16 KiB each but the last), the second as the local driver of
// Docker 20.10 sends it, without a '\n' after the last chunk.
func testLog(tty bool) []logMsg {
	const t0 = int64(1_735_787_045_000_000_000)
	out, errs, nl, localEnd := "stdout", "stderr", "\n", "z"
	chunk := strings.Repeat("x", 16<<10)
	if tty {
		// TTY lines keep the terminal's '\r'. (The TTY form cannot
		// tell where a chunk without a newline ends: no local-driver
		// case here.)
		errs, nl, localEnd = out, "\r\n", "z\r\n"
	}
	return []logMsg{
		{out, t0, "a" + nl},
		{out, t0 + 1, "b" + nl},
		{errs, t0 + 1, "c" + nl},
		{out, t0 + 1, "d" + nl},
		{out, t0 + 5, "e" + nl},
		{errs, t0 + 4, "f" + nl},
		{out, t0 + 6, "g" + nl},
		{out, t0 + 6, "g" + nl},
		{out, t0 + 7, chunk},
		{out, t0 + 7, "y" + nl},
		{errs, t0 + 8, "h" + nl},
		{errs, t0 + 9, chunk},
		{errs, t0 + 9, chunk},
		{errs, t0 + 9, localEnd},
		{out, t0 + 1_000_000_009, "i" + nl},
	}
}

// TestFollowResumesExactlyOnce cuts the logs stream at every message, once
// and twice, with a cut connection or a clean end while the container still
// runs, and checks that Follow delivers the whole log exactly once, in order.
func TestFollowResumesExactlyOnce(t *testing.T) {
	for _, tty := range []bool{false, true} {
		msgs := testLog(tty)
		var plans [][]cut
		for i := 0; i < len(msgs); i++ {
			plans = append(plans,
				[]cut{{upTo: i}},
				[]cut{{upTo: i, eof: true}},
				[]cut{{upTo: i}, {upTo: i + 1}},
				[]cut{{upTo: i}, {upTo: i}, {upTo: min(i+3, len(msgs)), eof: true}},
			)
		}
		for _, plan := range plans {
			t.Run(fmt.Sprintf("tty=%v/%v", tty, plan), func(t *testing.T) {
				f := newFakeEngine(t)
				l := &fakeLog{t: t, tty: tty, msgs: msgs, plan: plan}
				l.install(f, idA)
				var got []dockerlog.StreamMessage
				if err := f.client().Follow(context.Background(), idA, tty, 0, collect(&got)); err != nil {
					t.Fatalf("Follow: %v", err)
				}
				checkMessages(t, got, msgs)
				if n := int(l.requests.Load()); n != len(plan)+1 {
					t.Errorf("%d logs requests, want %d", n, len(plan)+1)
				}
				if s := l.since(0); s != "" {
					t.Errorf("first request since %q, want none", s)
				}
			})
		}
	}
}

func checkMessages(t *testing.T, got []dockerlog.StreamMessage, msgs []logMsg) {
	t.Helper()
	ok := len(got) == len(msgs)
	for i := 0; ok && i < len(got); i++ {
		w := msgs[i].want()
		g := got[i]
		ok = g.Stream == w.Stream && g.TimeNano == w.TimeNano && bytes.Equal(g.Line, w.Line) && g.Partial == w.Partial
	}
	if ok {
		return
	}
	var b strings.Builder
	for _, m := range got {
		fmt.Fprintf(&b, "  %s %d %q partial=%v\n", m.Stream, m.TimeNano, excerptOf(m.Line), m.Partial)
	}
	b.WriteString("want:\n")
	for _, m := range msgs {
		w := m.want()
		fmt.Fprintf(&b, "  %s %d %q partial=%v\n", w.Stream, w.TimeNano, excerptOf(w.Line), w.Partial)
	}
	t.Errorf("got %d messages:\n%s", len(got), b.String())
}

func excerptOf(b []byte) string {
	if len(b) > 12 {
		return string(b[:12]) + "..."
	}
	return string(b)
}

// TestFollowSince: the first request asks for the caller's since in the
// nanosecond form, and only what is at or after it is delivered.
func TestFollowSince(t *testing.T) {
	f := newFakeEngine(t)
	msgs := testLog(false)
	l := &fakeLog{t: t, msgs: msgs}
	l.install(f, idA)
	since := msgs[1].ns // three messages share it
	var got []dockerlog.StreamMessage
	if err := f.client().Follow(context.Background(), idA, false, since, collect(&got)); err != nil {
		t.Fatalf("Follow: %v", err)
	}
	var want []logMsg
	for _, m := range msgs {
		if m.ns >= since {
			want = append(want, m)
		}
	}
	checkMessages(t, got, want)
	if s := l.since(0); s != FormatSince(since) {
		t.Errorf("since %q, want %q", s, FormatSince(since))
	}
}

// TestFollowErrors: the errors that end Follow without a retry.
func TestFollowErrors(t *testing.T) {
	errStop := errors.New("stop")
	for _, tc := range []struct {
		name     string
		status   int
		out      func(dockerlog.StreamMessage) error
		want     error
		requests int
	}{
		{"no such container", http.StatusNotFound, nil, metadata.ErrNotFound, 1},
		{"driver cannot read", http.StatusNotImplemented, nil, nil, 1},
		{"bad request", http.StatusBadRequest, nil, nil, 1},
		{"out fails", http.StatusOK, func(dockerlog.StreamMessage) error { return errStop }, errStop, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeEngine(t)
			var requests atomic.Int32
			f.handle("/containers/{id}/logs", func(w http.ResponseWriter, r *http.Request, attempt int) {
				requests.Add(1)
				if tc.status != http.StatusOK {
					writeError(w, tc.status, "no")
					return
				}
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write(muxFrame("stdout", 1, "a\n"))
				flush(w)
				<-r.Context().Done()
			})
			out := tc.out
			if out == nil {
				out = func(dockerlog.StreamMessage) error { return nil }
			}
			err := f.client().Follow(context.Background(), idA, false, 0, out)
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Follow returned %v, want %v", err, tc.want)
			}
			if tc.want == errStop && err != errStop {
				t.Errorf("Follow returned %#v, want out's error as is", err)
			}
			if n := int(requests.Load()); n != tc.requests {
				t.Errorf("%d requests, want %d", n, tc.requests)
			}
		})
	}
}

// TestFollowCancel: Follow returns ctx.Err() when ctx ends, while the
// stream is open and while it waits to retry.
func TestFollowCancel(t *testing.T) {
	for _, failing := range []bool{false, true} {
		t.Run(fmt.Sprintf("failing=%v", failing), func(t *testing.T) {
			f := newFakeEngine(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			f.handle("/containers/{id}/logs", func(w http.ResponseWriter, r *http.Request, attempt int) {
				if failing {
					if attempt == 3 {
						cancel()
					}
					writeError(w, http.StatusInternalServerError, "busy")
					return
				}
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write(muxFrame("stdout", 1, "a\n"))
				flush(w)
				<-r.Context().Done()
			})
			err := f.client(WithBackoff(time.Millisecond, time.Hour)).Follow(ctx, idA, false, 0, func(dockerlog.StreamMessage) error {
				cancel()
				return nil
			})
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Follow returned %v, want context.Canceled", err)
			}
		})
	}
}

// TestResumerPoint checks the resume point and the messages expected again.
func TestResumerPoint(t *testing.T) {
	r := newResumer(0)
	if since, repeat, complete := r.point(); since != 0 || len(repeat) != 0 || !complete {
		t.Fatalf("empty resumer: %d %v %v", since, repeat, complete)
	}
	// 2*reorderWindow messages, two per nanosecond, then one stamped earlier.
	const w = reorderWindow
	for i := range 2 * w {
		r.record(&dockerlog.StreamMessage{Stream: "stdout", TimeNano: 1000 + int64(i/2), Line: []byte(strconv.Itoa(i))})
	}
	since, repeat, complete := r.point()
	// The last w delivered span 1000+w/2 .. 1000+w-1.
	if since != 1000+w/2 || len(repeat) != w || !complete {
		t.Errorf("point() = %d, %d repeats, complete %v; want %d, %d, true", since, len(repeat), complete, 1000+w/2, w)
	}
	r.record(&dockerlog.StreamMessage{Stream: "stderr", TimeNano: 1000 + w/2 - 6, Line: []byte("late")})
	since, repeat, complete = r.point()
	// From 1000+w/2-6 on: 12 more earlier messages, the last w, and "late".
	if since != 1000+w/2-6 || len(repeat) != w+13 || !complete {
		t.Errorf("point() = %d, %d repeats, complete %v; want %d, %d, true", since, len(repeat), complete, 1000+w/2-6, w+13)
	}
	// A whole window in one nanosecond: what came before may repeat too.
	for range resumeWindow {
		r.record(&dockerlog.StreamMessage{Stream: "stdout", TimeNano: 2000})
	}
	if _, repeat, complete = r.point(); len(repeat) != resumeWindow || complete {
		t.Errorf("full window: %d repeats, complete %v; want %d, false", len(repeat), complete, resumeWindow)
	}
}
