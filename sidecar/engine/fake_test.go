package engine

import (
	"encoding/binary"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeAPIVersion is what the fake Engine answers in /_ping, as Docker 20.10
// does: the client must negotiate down to it.
const fakeAPIVersion = "1.41"

// fakeEngine is an Engine API over httptest: /_ping, and the versioned
// routes a test registers. Every request to a path outside /v1.41/ (a
// client that did not negotiate) fails the test.
type fakeEngine struct {
	t   *testing.T
	srv *httptest.Server
	mux *http.ServeMux

	mu       sync.Mutex
	attempts map[string]int // by route pattern
}

func newFakeEngine(t *testing.T) *fakeEngine {
	t.Helper()
	f := &fakeEngine{t: t, mux: http.NewServeMux(), attempts: map[string]int{}}
	ping := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", fakeAPIVersion)
		w.Header().Set("Ostype", "linux")
		_, _ = w.Write([]byte("OK"))
	}
	f.mux.HandleFunc("GET /_ping", ping)
	f.mux.HandleFunc("HEAD /_ping", ping)
	f.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("fake engine: unexpected request %s %s", r.Method, r.URL)
		http.Error(w, `{"message":"page not found"}`, http.StatusNotFound)
	})
	f.srv = httptest.NewServer(f.mux)
	t.Cleanup(f.srv.Close)
	return f
}

// handle registers h for "GET /v1.41"+path; h gets the 1-based number of
// the request to that route.
func (f *fakeEngine) handle(path string, h func(w http.ResponseWriter, r *http.Request, attempt int)) {
	pattern := "GET /v" + fakeAPIVersion + path
	f.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.attempts[pattern]++
		n := f.attempts[pattern]
		f.mu.Unlock()
		h(w, r, n)
	})
}

// client returns a Client for the fake with a fast backoff; it is closed
// when the test ends.
func (f *fakeEngine) client(opts ...Option) *Client {
	f.t.Helper()
	c, err := New("tcp://"+strings.TrimPrefix(f.srv.URL, "http://"),
		append([]Option{WithBackoff(time.Millisecond, 4*time.Millisecond)}, opts...)...)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = c.Close() })
	return c
}

// writeJSON answers like the daemon: JSON with Content-Type application/json.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers an Engine API error.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"message": msg})
}

// abort cuts the connection without ending the response properly.
func abort() { panic(http.ErrAbortHandler) }

func flush(w http.ResponseWriter) {
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
}

// daemonTime formats a timestamp as dockerd does in logs streams.
func daemonTime(ns int64) string {
	return time.Unix(0, ns).UTC().Format("2006-01-02T15:04:05.000000000Z07:00")
}

// muxFrame is one frame of a multiplexed logs stream with timestamps.
func muxFrame(stream string, ns int64, text string) []byte {
	payload := daemonTime(ns) + " " + text
	b := make([]byte, 8, 8+len(payload))
	b[0] = 1
	if stream == "stderr" {
		b[0] = 2
	}
	binary.BigEndian.PutUint32(b[4:], uint32(len(payload)))
	return append(b, payload...)
}

// ttyMessage is one message of a TTY logs stream with timestamps.
func ttyMessage(ns int64, text string) []byte {
	return []byte(daemonTime(ns) + " " + text)
}
