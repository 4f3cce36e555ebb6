package sidecar

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/logferry/logferry/sidecar/engine"
	"github.com/logferry/logferry/sidecar/positions"
	"github.com/logferry/logferry/sidecar/tail"
)

// linesTail is a FileTail whose Run delivers its lines and returns.
type linesTail struct{ lines []tail.Line }

func (t *linesTail) Run(ctx context.Context, out func(tail.Line) error) error {
	for _, l := range t.lines {
		if err := out(l); err != nil {
			return err
		}
	}
	return nil
}
func (t *linesTail) Finish()                                   {}
func (t *linesTail) Position(int64) (positions.Position, bool) { return positions.Position{}, false }
func (t *linesTail) Release(int64)                             {}
func (t *linesTail) HoldRotated()                              {}

type tailFiles struct{ t FileTail }

func (f tailFiles) Open(string, string, *positions.Position, bool, int) (FileTail, error) {
	return f.t, nil
}

// testShipper is a shipper of c on r's route, with max-line-size 16 KiB.
func testShipper(t *testing.T, r *Router, c engine.Container, route string) *shipper {
	t.Helper()
	r.cfg.Options["max-line-size"] = "16k"
	r.mu.Lock()
	s, err := r.newShipper(c, route, slog.New(slog.DiscardHandler))
	r.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.pool.Release(s.disp) })
	return s
}

// muxFrame is one frame of a multiplexed logs stream with timestamps.
func muxFrame(ns int64, text string) []byte {
	payload := time.Unix(0, ns).UTC().Format("2006-01-02T15:04:05.000000000Z07:00") + " " + text
	b := make([]byte, 8, 8+len(payload))
	b[0] = 1 // stdout
	binary.BigEndian.PutUint32(b[4:], uint32(len(payload)))
	return append(b, payload...)
}

// fakeEngine answers what the logs route asks the Engine API: the logs of
// container id (frames, then the stream ends), and an inspect that says the
// container is not running, so that the route ends.
func fakeEngine(t *testing.T, id string, frames ...[]byte) *engine.Client {
	t.Helper()
	mux := http.NewServeMux()
	ping := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.41")
		w.Header().Set("Ostype", "linux")
		_, _ = w.Write([]byte("OK"))
	}
	mux.HandleFunc("GET /_ping", ping)
	mux.HandleFunc("HEAD /_ping", ping)
	mux.HandleFunc("GET /v1.41/containers/"+id+"/logs", func(w http.ResponseWriter, r *http.Request) {
		for _, f := range frames {
			_, _ = w.Write(f)
		}
	})
	mux.HandleFunc("GET /v1.41/containers/"+id+"/json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"Id": id, "Name": "/c", "State": map[string]any{"Running": false}})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c, err := engine.New("tcp://" + strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// A line cut at max-line-size is counted once in
// logferry_sidecar_lines_truncated_total, whichever route read it: also a
// line the logs stream ended in the middle of, which the route flushes
// incomplete (it was counted nowhere before).
func TestTruncatedLineCountedOnce(t *testing.T) {
	ctx := context.Background()
	id := strings.Repeat("0123abcd", 8)
	long := strings.Repeat("a", 20000)
	chunk := strings.Repeat("b", 16<<10) // the daemon's chunk: a split line goes on
	for _, tc := range []struct {
		name  string
		route string
		tail  []tail.Line
		logs  [][]byte
		lines int64 // handed to the dispatcher
		want  float64
	}{
		{name: "file", route: RouteFile, tail: []tail.Line{
			{Stream: "stdout", Data: []byte(long[:16<<10]), Truncated: true, Token: 1},
			{Stream: "stdout", Data: []byte("whole"), Token: 2},
		}, lines: 2, want: 1},
		{name: "logs API", route: RouteAPI, logs: [][]byte{
			muxFrame(1, long+"\n"), muxFrame(2, "whole\n"),
		}, lines: 2, want: 1},
		{name: "logs API, ending mid-line", route: RouteAPI, logs: [][]byte{
			muxFrame(1, long+"\n"), muxFrame(2, chunk), muxFrame(2, chunk),
		}, lines: 2, want: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _, _ := newTestRouter(t, slog.New(slog.DiscardHandler))
			r.files = tailFiles{&linesTail{lines: tc.tail}}
			r.eng = fakeEngine(t, id, tc.logs...)
			s := testShipper(t, r, ctr(id), tc.route)
			var err error
			if tc.route == RouteFile {
				err = s.runFile(ctx)
			} else {
				err = s.runAPI(ctx)
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.lines != tc.lines {
				t.Errorf("%d lines handed, want %d", s.lines, tc.lines)
			}
			if got := testutil.ToFloat64(r.m.truncated); got != tc.want {
				t.Errorf("truncated lines counted %v times, want %v", got, tc.want)
			}
		})
	}
}
