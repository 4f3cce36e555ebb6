package sidecar

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logferry/logferry/shared/loki"
	"github.com/logferry/logferry/shared/metadata"
	"github.com/logferry/logferry/sidecar/engine"
	"github.com/logferry/logferry/sidecar/positions"
	"github.com/logferry/logferry/sidecar/tail"
)

type fakeTail struct {
	fin  chan struct{}
	once sync.Once
}

func (t *fakeTail) Run(ctx context.Context, out func(tail.Line) error) error {
	select {
	case <-t.fin:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
func (t *fakeTail) Finish()                                   { t.once.Do(func() { close(t.fin) }) }
func (t *fakeTail) Position(int64) (positions.Position, bool) { return positions.Position{}, false }
func (t *fakeTail) Release(int64)                             {}
func (t *fakeTail) HoldRotated()                              {}

type fakeFiles struct {
	mu    sync.Mutex
	opens int
}

func (f *fakeFiles) Open(path, name string, start *positions.Position, fromOldest bool, maxLine int) (FileTail, error) {
	f.mu.Lock()
	f.opens++
	f.mu.Unlock()
	return &fakeTail{fin: make(chan struct{})}, nil
}

// gateHandler holds the first "stopped shipping" record until released: the
// ending shipper's goroutine logs it after its run returned and before it
// takes the router's lock, so a test can handle events in between.
type gateHandler struct {
	slog.Handler
	once    *sync.Once
	reached chan struct{}
	release chan struct{}
}

func (h gateHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "stopped shipping" {
		h.once.Do(func() { close(h.reached); <-h.release })
	}
	return nil
}
func (h gateHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return gateHandler{h.Handler, h.once, h.reached, h.release}
}
func (h gateHandler) WithGroup(string) slog.Handler            { return h }
func (h gateHandler) Enabled(context.Context, slog.Level) bool { return true }

func newTestRouter(t *testing.T, lg *slog.Logger) (*Router, *positions.Store, *fakeFiles) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	t.Cleanup(srv.Close)
	pos, err := positions.Open(t.TempDir(), positions.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pool := loki.NewPool(nil, nil, time.Second)
	t.Cleanup(func() { pool.Close(context.Background()) })
	ff := &fakeFiles{}
	cfg := Config{DrainTimeout: time.Second, ContainersDir: "/nonexistent",
		Options: map[string]string{"loki-url": srv.URL + "/loki/api/v1/push"}}
	r := NewRouter(cfg, nil, pool, pos, ff, "h", NewMetrics(nil), lg)
	return r, pos, ff
}

func ctr(id string) engine.Container {
	return engine.Container{Container: metadata.Container{ID: id, Name: "c"}, LogDriver: "json-file", LogPath: "/nonexistent/" + id + "/" + id + "-json.log", Running: true}
}

// TestRouterDestroyWhileShipperEnds: a destroy handled after the shipper's
// run returned but before its goroutine took the router's lock still
// deletes the container's position.
func TestRouterDestroyWhileShipperEnds(t *testing.T) {
	h := gateHandler{slog.DiscardHandler, &sync.Once{}, make(chan struct{}), make(chan struct{})}
	r, pos, _ := newTestRouter(t, slog.New(h))
	ctx := context.Background()
	id := strings.Repeat("abc123ab", 8)
	if err := pos.Set(id, positions.Position{Offset: 5}); err != nil {
		t.Fatal(err)
	}
	r.start(ctx, ctr(id))
	r.handle(ctx, engine.Event{Action: engine.ActionDie, ID: id})
	<-h.reached // the shipper's run returned
	r.handle(ctx, engine.Event{Action: engine.ActionDestroy, ID: id})
	close(h.release)
	r.wg.Wait()
	if _, ok := pos.Get(id); ok {
		t.Errorf("position of a destroyed container kept (Active=%d)", r.Active())
	}
}

// TestRouterReplayedRunThatDied: a start held back while the shipper
// finishes, then that run's die: the replayed shipper ends too (it followed
// a stopped container's file forever when the die was lost).
func TestRouterReplayedRunThatDied(t *testing.T) {
	for i := 0; i < 200; i++ {
		r, _, ff := newTestRouter(t, slog.New(slog.DiscardHandler))
		ctx := context.Background()
		id := strings.Repeat("def456de", 8)
		r.start(ctx, ctr(id))
		// The fake tail ends at once after the die and Loki answers at
		// once, so the events race the first shipper's end: over the
		// iterations, both orders happen.
		r.handle(ctx, engine.Event{Action: engine.ActionDie, ID: id})
		r.start(ctx, ctr(id))
		r.handle(ctx, engine.Event{Action: engine.ActionDie, ID: id})
		done := make(chan struct{})
		go func() { r.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("iteration %d: a shipper did not end (opens %d, active %d)", i, ff.opens, r.Active())
		}
	}
}
