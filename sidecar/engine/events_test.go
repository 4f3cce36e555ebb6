package engine

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/events"
)

const (
	idA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	idB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func containerEvent(action, id string, ns int64, attrs map[string]string) events.Message {
	return events.Message{
		Type:     events.ContainerEventType,
		Action:   events.Action(action),
		Actor:    events.Actor{ID: id, Attributes: attrs},
		Scope:    "local",
		Time:     ns / 1e9,
		TimeNano: ns,
	}
}

// sendEvents writes events as dockerd 20.10 does: JSON values back to back,
// flushed one by one.
func sendEvents(w http.ResponseWriter, evs ...events.Message) {
	for _, ev := range evs {
		b, _ := json.Marshal(ev)
		_, _ = w.Write(append(b, '\n'))
		flush(w)
	}
}

// TestEventsResubscribes drives Events through a clean end of the stream, an
// error answer, a connection cut inside an event and replays of events
// already delivered, and checks that every event arrives once, in order,
// each established subscription is announced with a resync, and every
// subscription asks for events since the newest one delivered.
func TestEventsResubscribes(t *testing.T) {
	f := newFakeEngine(t)
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 123456789, time.UTC).UnixNano()
	start := containerEvent(ActionStart, idA, t0+1, map[string]string{"name": "web", "image": "nginx"})
	die := containerEvent(ActionDie, idA, t0+2, map[string]string{"name": "web", "exitCode": "0"})
	otherDie := containerEvent(ActionDie, idB, t0+2, map[string]string{"name": "db"}) // same nanosecond
	rename := containerEvent(ActionRename, idA, t0+3, map[string]string{"name": "api", "oldName": "/web"})
	destroy := containerEvent(ActionDestroy, idA, t0+4, map[string]string{"name": "api"})
	image := events.Message{Type: events.ImageEventType, Action: "pull", Actor: events.Actor{ID: "nginx"}, TimeNano: t0 + 4}

	var mu sync.Mutex
	var sinces []string
	wantFilters := map[string]map[string]bool{
		"type":  {"container": true},
		"event": {"start": true, "die": true, "destroy": true, "rename": true},
	}
	f.handle("/events", func(w http.ResponseWriter, r *http.Request, attempt int) {
		q := r.URL.Query()
		mu.Lock()
		sinces = append(sinces, q.Get("since"))
		mu.Unlock()
		var filters map[string]map[string]bool
		if err := json.Unmarshal([]byte(q.Get("filters")), &filters); err != nil || !maps.EqualFunc(filters, wantFilters, maps.Equal) {
			t.Errorf("attempt %d: filters %q (%v), want %v", attempt, q.Get("filters"), err, wantFilters)
		}
		if attempt == 2 {
			writeError(w, http.StatusInternalServerError, "daemon is shutting down")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		flush(w)
		switch attempt {
		case 1: // the daemon stops: the stream ends cleanly
			sendEvents(w, start, die)
		case 3: // replays the last, adds one, and dies inside the next
			sendEvents(w, die, otherDie, rename)
			_, _ = w.Write([]byte(`{"Type":"container","Action":"destr`))
			flush(w)
			abort()
		case 4:
			sendEvents(w, rename, image, destroy)
			<-r.Context().Done()
		default:
			t.Errorf("unexpected subscription %d", attempt)
		}
	})

	c := f.client()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got []Event
	err := c.Events(ctx, time.Unix(0, t0), func(e Event) {
		got = append(got, e)
		if e.Action == ActionDestroy {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Events returned %v, want context.Canceled", err)
	}

	want := []Event{
		{Action: ActionResync},
		{Action: ActionStart, ID: idA, Time: time.Unix(0, t0+1), Attributes: start.Actor.Attributes},
		{Action: ActionDie, ID: idA, Time: time.Unix(0, t0+2), Attributes: die.Actor.Attributes},
		{Action: ActionResync},
		{Action: ActionDie, ID: idB, Time: time.Unix(0, t0+2), Attributes: otherDie.Actor.Attributes},
		{Action: ActionRename, ID: idA, Time: time.Unix(0, t0+3), Attributes: rename.Actor.Attributes},
		{Action: ActionResync},
		{Action: ActionDestroy, ID: idA, Time: time.Unix(0, t0+4), Attributes: destroy.Actor.Attributes},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d:\n%s", len(got), len(want), describeEvents(got))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Action == ActionResync && w.Action == ActionResync {
			if g.ID != "" || g.Time.IsZero() {
				t.Errorf("event %d: resync %+v, want no id and the local time", i, g)
			}
			continue
		}
		if g.Action != w.Action || g.ID != w.ID || !g.Time.Equal(w.Time) || !maps.Equal(g.Attributes, w.Attributes) {
			t.Errorf("event %d: got %+v, want %+v", i, g, w)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	wantSinces := []string{FormatSince(t0), FormatSince(t0 + 2), FormatSince(t0 + 2), FormatSince(t0 + 3)}
	if !slices.Equal(sinces, wantSinces) {
		t.Errorf("subscriptions asked since %q, want %q", sinces, wantSinces)
	}
}

// TestEventsSinceNow: without a since, the first subscription still asks
// for one, the local time when Events was called, so that an event between
// the daemon's answer and its registering the subscription is not lost.
func TestEventsSinceNow(t *testing.T) {
	f := newFakeEngine(t)
	got := make(chan string, 1)
	f.handle("/events", func(w http.ResponseWriter, r *http.Request, attempt int) {
		got <- r.URL.Query().Get("since")
		w.WriteHeader(http.StatusOK)
		flush(w)
		<-r.Context().Done()
	})
	c := f.client()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	before := time.Now()
	err := c.Events(ctx, time.Time{}, func(e Event) {
		if e.Action == ActionResync {
			cancel()
		}
	})
	after := time.Now()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Events returned %v, want context.Canceled", err)
	}
	since := <-got
	sec, frac, ok := strings.Cut(since, ".")
	s, err1 := strconv.ParseInt(sec, 10, 64)
	n, err2 := strconv.ParseInt(frac, 10, 64)
	if !ok || len(frac) != 9 || err1 != nil || err2 != nil {
		t.Fatalf("since %q is not seconds.nanoseconds", since)
	}
	if ts := time.Unix(s, n); ts.Before(before) || ts.After(after) {
		t.Errorf("since %s, want between %s and %s", ts, before, after)
	}
}

// TestEventsBackoffUntilCancel: a daemon that refuses every subscription
// is retried until the context ends, and no resync is delivered for a
// subscription that was not established.
func TestEventsBackoffUntilCancel(t *testing.T) {
	f := newFakeEngine(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.handle("/events", func(w http.ResponseWriter, r *http.Request, attempt int) {
		if attempt == 5 {
			cancel()
		}
		writeError(w, http.StatusServiceUnavailable, "not yet")
	})
	c := f.client()
	var got []Event
	err := c.Events(ctx, time.Time{}, func(e Event) { got = append(got, e) })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Events returned %v, want context.Canceled", err)
	}
	if len(got) != 0 {
		t.Errorf("delivered %s, want nothing", describeEvents(got))
	}
}

func describeEvents(evs []Event) string {
	var b strings.Builder
	for _, e := range evs {
		b.WriteString(e.Action + " " + e.ID + " " + strconv.FormatInt(e.Time.UnixNano(), 10) + "\n")
	}
	return b.String()
}
