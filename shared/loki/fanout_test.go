package loki

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestFanoutAcknowledgesInHandOverOrder holds one tenant's pushes while
// the others are accepted: the producer's acknowledgements must stop
// before the first entry that tenant holds, and reach the last entry once
// it is let go.
func TestFanoutAcknowledgesInHandOverOrder(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.Header.Get("X-Scope-OrgID") == "slow" {
			<-release
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()

	pool := NewPool(NewMetrics(nil), nil, time.Minute)
	defer pool.Close(t.Context())
	cfg := testConfig(srv.URL + "/loki/api/v1/push")
	cfg.TenantID = "own"
	base, err := pool.Acquire(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Release(base)
	rec := newRecorder()
	f := NewFanout(pool, base, rec, nil)
	defer f.Close()

	// Offsets 1..30; entry 10 is the first the slow tenant gets.
	tenants := func(i int) string {
		switch {
		case i == 10 || i == 20:
			return "slow"
		case i%3 == 0:
			return "t3"
		case i%2 == 0:
			return "own" // base's own tenant by name
		}
		return ""
	}
	for i := 1; i <= 30; i++ {
		e := Entry{Stream: `{a="b"}`, TimeNano: int64(i), Line: fmt.Sprint(i), Offset: int64(i)}
		if err := f.Handle(tenants(i), e, false); err != nil {
			t.Fatal(err)
		}
	}
	rec.waitAck(t, 9)
	// The others resolve every entry they hold (own and t3); the
	// acknowledgements must still not pass 9 while slow holds 10.
	waitFor(t, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		t3 := cfg
		t3.TenantID = "t3"
		return len(f.base.seqs) == 0 && len(f.routes[t3.Key()].seqs) == 0
	})
	rec.mu.Lock()
	for _, off := range rec.acks {
		if off >= 10 {
			t.Errorf("acknowledged %d while entry 10 was held by its tenant", off)
		}
	}
	rec.mu.Unlock()
	close(release)
	rec.waitAck(t, 30)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for i := 1; i < len(rec.acks); i++ {
		if rec.acks[i] < rec.acks[i-1] {
			t.Fatalf("acknowledgements went back: %v", rec.acks)
		}
	}
	if n := len(f.routes) - 1; n != 2 {
		t.Errorf("%d tenants besides the own, want 2 (slow, t3)", n)
	}
}

// TestFanoutBoundsTenants: tenants past MaxFanoutTenants go to the own
// tenant, counted, and every entry is still acknowledged.
func TestFanoutBoundsTenants(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		seen[r.Header.Get("X-Scope-OrgID")] = true
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	pool := NewPool(NewMetrics(nil), nil, time.Minute)
	defer pool.Close(t.Context())
	cfg := testConfig(srv.URL + "/loki/api/v1/push")
	cfg.TenantID = "own"
	base, err := pool.Acquire(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Release(base)
	rec := newRecorder()
	overflow := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
	f := NewFanout(pool, base, rec, overflow)
	const n = MaxFanoutTenants + 5
	for i := 1; i <= n; i++ {
		if err := f.Handle(fmt.Sprintf("t%d", i), Entry{Stream: `{a="b"}`, TimeNano: int64(i), Line: "x", Offset: int64(i)}, false); err != nil {
			t.Fatal(err)
		}
	}
	rec.waitAck(t, n)
	if got := testutil.ToFloat64(overflow); got != 5 {
		t.Errorf("overflow counted %v, want 5", got)
	}
	if f.tenants != MaxFanoutTenants {
		t.Errorf("%d tenants, want %d", f.tenants, MaxFanoutTenants)
	}
	f.Close()
	if pool.Len() != 1 {
		t.Errorf("%d dispatchers in use after Close, want the own one", pool.Len())
	}
	mu.Lock()
	defer mu.Unlock()
	if !seen["own"] || seen[fmt.Sprintf("t%d", n)] {
		t.Errorf("tenants pushed to: %v; the last ones belong to the own tenant", seen)
	}
}

// TestFanoutSetBase switches the endpoint while the old one holds its
// entries: later entries go to the new one at once, and the producer is
// not told past the old endpoint's first held entry until it answers.
func TestFanoutSetBase(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	got := map[string]int{}
	serve := func(name string, hold bool) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			if hold {
				<-release
			}
			mu.Lock()
			got[name]++
			mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
		}))
	}
	old, cur := serve("old", true), serve("new", false)
	defer old.Close()
	defer cur.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	pool := NewPool(NewMetrics(nil), nil, time.Minute)
	defer pool.Close(t.Context())
	base, err := pool.Acquire(testConfig(old.URL + "/loki/api/v1/push"))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Release(base)
	rec := newRecorder()
	f := NewFanout(pool, base, rec, nil)
	defer f.Close()
	for i := 1; i <= 10; i++ {
		if err := f.Handle("", Entry{Stream: `{a="b"}`, TimeNano: int64(i), Line: "x", Offset: int64(i)}, false); err != nil {
			t.Fatal(err)
		}
	}
	newCfg := testConfig(cur.URL + "/loki/api/v1/push")
	if err := f.SetBase(newCfg); err != nil {
		t.Fatal(err)
	}
	if f.Base().Key() != newCfg.Key() {
		t.Fatalf("base %s after SetBase", f.Base().Endpoint())
	}
	for i := 11; i <= 20; i++ {
		if err := f.Handle("", Entry{Stream: `{a="b"}`, TimeNano: int64(i), Line: "x", Offset: int64(i)}, false); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.routes[newCfg.Key()].seqs) == 0 // the new endpoint took 11-20
	})
	rec.mu.Lock()
	if len(rec.acks) != 0 {
		t.Errorf("acknowledged %v while the old endpoint held 1-10", rec.acks)
	}
	rec.mu.Unlock()
	close(release)
	rec.waitAck(t, 20)
	mu.Lock()
	defer mu.Unlock()
	if got["old"] == 0 || got["new"] == 0 {
		t.Errorf("pushes: %v, want both endpoints", got)
	}
}

// A queue drained about as fast as it fills keeps its array; one that
// drops little of a long backlog is resliced, not copied.
func TestDropFront(t *testing.T) {
	s := make([]int64, 0, 8)
	for i := range int64(6) {
		s = append(s, i)
	}
	arr := &s[:1][0]
	s = dropFront(s, 4) // 2 left, 4 gone: moved to the front
	if len(s) != 2 || s[0] != 4 || s[1] != 5 || &s[0] != arr {
		t.Fatalf("after dropping 4 of 6: %v, same array %v; want [4 5] at the front of the array", s, &s[0] == arr)
	}
	for i := range int64(6) {
		s = append(s, 6+i) // fits: 8 places again
	}
	if &s[0] != arr {
		t.Fatal("appends after the move grew a new array")
	}
	s = dropFront(s, 1) // 7 left: resliced
	if len(s) != 7 || s[0] != 5 || &s[0] == arr {
		t.Fatalf("after dropping 1 of 8: %v; want [5 ...] resliced past the first place", s)
	}
	if s = dropFront(s, 7); len(s) != 0 {
		t.Fatalf("after dropping all: %v", s)
	}
}
