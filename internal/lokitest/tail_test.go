package lokitest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestTailRealLoki: a live tail receives what is pushed after it connected,
// an entry timestamped two minutes back too (a backlog sent after an
// outage), filtered by the query, and ends when its context does.
func TestTailRealLoki(t *testing.T) {
	srv := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var mu sync.Mutex
	got := map[string]int64{}
	connected := make(chan struct{})
	tctx, tcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- srv.Tail(tctx, `{test="tail"} |= "keep"`, time.Now(), func() { close(connected) }, func(m TailMessage) error {
			mu.Lock()
			defer mu.Unlock()
			for _, s := range m.Streams {
				for _, e := range s.Entries {
					got[e.Line] = e.Timestamp
				}
			}
			return nil
		})
	}()
	select {
	case <-connected:
	case err := <-done:
		t.Fatalf("tail ended before it connected: %v", err)
	}
	now := time.Now()
	old := now.Add(-2 * time.Minute).UnixNano()
	if err := srv.Push(ctx, []Stream{{Labels: map[string]string{"test": "tail"}, Entries: []Entry{
		{Timestamp: old, Line: "keep old"},
		{Timestamp: now.UnixNano(), Line: "keep new"},
		{Timestamp: now.UnixNano() + 1, Line: "drop this"},
	}}}); err != nil {
		t.Fatal(err)
	}
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 2 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the tail got %v", got)
		case <-time.After(20 * time.Millisecond):
		}
	}
	tcancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("tail ended with %v, want context.Canceled", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got["keep old"] != old || got["keep new"] != now.UnixNano() || len(got) != 2 {
		t.Fatalf("the tail got %v", got)
	}
}
