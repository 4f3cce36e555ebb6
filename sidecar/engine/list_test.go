package engine

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
)

// TestListInspectsAtOnce: List inspects the listed containers several at a
// time and keeps the daemon's order, leaving out one removed meanwhile.
// Each inspect here answers only once listInspects of them are waiting
// at once (or after 20 s, with an error): inspected one after another,
// List fails.
func TestListInspectsAtOnce(t *testing.T) {
	f := newFakeEngine(t)
	const n = 2*listInspects + 3
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%064x", i+1)
	}
	gone := ids[5]
	f.handle("/containers/json", func(w http.ResponseWriter, r *http.Request, _ int) {
		list := make([]container.Summary, n)
		for i, id := range ids {
			list[i] = container.Summary{ID: id, State: "running"}
		}
		writeJSON(w, http.StatusOK, list)
	})
	var mu sync.Mutex
	waiting := 0
	enough := make(chan struct{})
	f.handle("/containers/{id}/json", func(w http.ResponseWriter, r *http.Request, _ int) {
		mu.Lock()
		waiting++
		if waiting == listInspects {
			close(enough)
		}
		mu.Unlock()
		select {
		case <-enough:
		case <-time.After(20 * time.Second):
			writeJSON(w, http.StatusInternalServerError, map[string]string{"message": "inspected one at a time"})
			return
		}
		id := r.PathValue("id")
		if id == gone {
			writeJSON(w, http.StatusNotFound, map[string]string{"message": "No such container: " + id})
			return
		}
		writeJSON(w, http.StatusOK, container.InspectResponse{
			ID: id, Name: "/c-" + id[60:], Created: "2025-01-02T03:04:05Z",
			State:      &container.State{Running: true, StartedAt: "2025-01-02T03:04:06Z", FinishedAt: "0001-01-01T00:00:00Z"},
			Config:     &container.Config{},
			HostConfig: &container.HostConfig{LogConfig: container.LogConfig{Type: "json-file"}},
		})
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got, err := f.client().List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, id := range ids {
		if id != gone {
			want = append(want, id)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("listed %d containers, want %d", len(got), len(want))
	}
	for i, c := range got {
		if c.ID != want[i] {
			t.Fatalf("container %d is %s, want %s (the daemon's order)", i, c.ID, want[i])
		}
	}
}
