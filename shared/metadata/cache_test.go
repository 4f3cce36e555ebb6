package metadata

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	idA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	idB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	idC = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.t = f.t.Add(d)
}

// fakeLoader serves containers from a map and counts loads per id.
type fakeLoader struct {
	mu    sync.Mutex
	byID  map[string]Container
	errs  map[string]error
	loads map[string]int
}

func newFakeLoader(cs ...Container) *fakeLoader {
	l := &fakeLoader{byID: map[string]Container{}, errs: map[string]error{}, loads: map[string]int{}}
	for _, c := range cs {
		l.byID[c.ID] = c
	}
	return l
}

func (l *fakeLoader) Load(ctx context.Context, id string) (Container, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.loads[id]++
	if err := l.errs[id]; err != nil {
		return Container{}, err
	}
	c, ok := l.byID[id]
	if !ok {
		return Container{}, fmt.Errorf("inspect %s: %w", id, ErrNotFound)
	}
	return c, nil
}

func (l *fakeLoader) count(id string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.loads[id]
}

func (l *fakeLoader) set(c Container, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.byID[c.ID] = c
	l.errs[c.ID] = err
}

// metricValue reads one unlabelled counter or gauge from reg.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// waitFor yields until cond holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
	}
}

func mustNew(t *testing.T, cfg Config, l Loader, opts ...Option) *Cache {
	t.Helper()
	c, err := New(cfg, l, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // a key the message must name; "" for valid
	}{
		{"defaults", DefaultConfig(), ""},
		{"no expiry", Config{MaxEntries: 1, TTL: 0}, ""},
		{"zero entries", Config{MaxEntries: 0, TTL: time.Minute}, "max-entries"},
		{"negative entries", Config{MaxEntries: -5, TTL: time.Minute}, "max-entries"},
		{"negative ttl", Config{MaxEntries: 10, TTL: -time.Second}, "ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate() = %v, want ErrInvalidConfig", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Validate() = %q, want it to name %q", err, tt.wantErr)
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	if _, err := New(Config{}, newFakeLoader()); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("New(zero Config) = %v, want ErrInvalidConfig", err)
	}
	if _, err := New(DefaultConfig(), nil); err == nil {
		t.Error("New(nil loader) succeeded")
	}
}

func TestContainerAccessors(t *testing.T) {
	tests := []struct {
		name                                       string
		labels                                     map[string]string
		project, service, swarmStack, swarmService string
	}{
		{name: "nil labels"},
		{name: "unrelated labels", labels: map[string]string{"a": "b"}},
		{
			name: "compose",
			labels: map[string]string{
				"com.docker.compose.project": "shop",
				"com.docker.compose.service": "web",
			},
			project: "shop", service: "web",
		},
		{
			name: "swarm",
			labels: map[string]string{
				"com.docker.stack.namespace":    "prod",
				"com.docker.swarm.service.name": "prod_api",
			},
			swarmStack: "prod", swarmService: "prod_api",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Container{Labels: tt.labels}
			got := [4]string{c.ComposeProject(), c.ComposeService(), c.SwarmStack(), c.SwarmService()}
			want := [4]string{tt.project, tt.service, tt.swarmStack, tt.swarmService}
			if got != want {
				t.Errorf("accessors = %q, want %q", got, want)
			}
		})
	}
}

func TestLookupEnv(t *testing.T) {
	env := []string{"A=1", "B=", "C", "D=x=y", "A=2"}
	tests := []struct {
		key    string
		want   string
		wantOK bool
	}{
		{"A", "2", true}, // last wins
		{"B", "", true},
		{"C", "", false}, // no '=': not a variable
		{"D", "x=y", true},
		{"E", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			got, ok := Container{Env: env}.LookupEnv(tt.key)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("LookupEnv(%q) = %q, %v; want %q, %v", tt.key, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestGet(t *testing.T) {
	web := Container{ID: idA, Name: "/web", ImageName: "nginx:1.27", Labels: map[string]string{"k": "v"}}
	boom := errors.New("engine unreachable")
	tests := []struct {
		name      string
		id        string
		put       *Container
		loaderErr error
		want      Container
		wantErr   error
		wantLoads int
		wantLen   int
	}{
		{name: "miss loads and normalizes name", id: idA, want: Container{ID: idA, Name: "web", ImageName: "nginx:1.27", Labels: map[string]string{"k": "v"}}, wantLoads: 1, wantLen: 1},
		{name: "put is a hit", id: idB, put: &Container{ID: idB, Name: "/db"}, want: Container{ID: idB, Name: "db"}, wantLoads: 0, wantLen: 1},
		{name: "not found", id: idC, wantErr: ErrNotFound, wantLoads: 1, wantLen: 0},
		{name: "loader error not cached", id: idA, loaderErr: boom, wantErr: boom, wantLoads: 1, wantLen: 0},
		{name: "empty id", id: "", wantErr: ErrEmptyID, wantLoads: 0, wantLen: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newFakeLoader(web)
			if tt.loaderErr != nil {
				l.set(web, tt.loaderErr)
			}
			c := mustNew(t, DefaultConfig(), l)
			if tt.put != nil {
				c.Put(*tt.put)
			}
			got, err := c.Get(t.Context(), tt.id)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Get() error = %v, want %v", err, tt.wantErr)
			}
			if err == nil && !equalContainer(got, tt.want) {
				t.Errorf("Get() = %+v, want %+v", got, tt.want)
			}
			if n := l.count(tt.id); n != tt.wantLoads {
				t.Errorf("loads = %d, want %d", n, tt.wantLoads)
			}
			if n := c.Len(); n != tt.wantLen {
				t.Errorf("Len() = %d, want %d", n, tt.wantLen)
			}
		})
	}
}

func equalContainer(a, b Container) bool {
	if a.ID != b.ID || a.Name != b.Name || a.ImageName != b.ImageName || a.ImageID != b.ImageID ||
		!a.Created.Equal(b.Created) || a.DaemonName != b.DaemonName ||
		len(a.Labels) != len(b.Labels) || len(a.Env) != len(b.Env) {
		return false
	}
	for k, v := range a.Labels {
		if w, ok := b.Labels[k]; !ok || w != v {
			return false
		}
	}
	for i := range a.Env {
		if a.Env[i] != b.Env[i] {
			return false
		}
	}
	return true
}

func TestGetFailedLoadRetriedNextTime(t *testing.T) {
	l := newFakeLoader()
	l.set(Container{ID: idA}, errors.New("transient"))
	c := mustNew(t, DefaultConfig(), l)
	if _, err := c.Get(t.Context(), idA); err == nil {
		t.Fatal("first Get succeeded, want the loader's error")
	}
	l.set(Container{ID: idA, Name: "web"}, nil)
	got, err := c.Get(t.Context(), idA)
	if err != nil || got.Name != "web" {
		t.Fatalf("second Get = %+v, %v; want web", got, err)
	}
	if n := l.count(idA); n != 2 {
		t.Errorf("loads = %d, want 2", n)
	}
}

func TestGetLoaderReturnsOtherID(t *testing.T) {
	// A loader that resolves to a different id (or none) must not leave a
	// map entry that Delete cannot reach.
	tests := []struct {
		name     string
		loadedID string
		wantID   string
	}{
		{"empty id filled in", "", idA},
		{"different id kept", idB, idB},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := LoaderFunc(func(context.Context, string) (Container, error) {
				return Container{ID: tt.loadedID, Name: "x"}, nil
			})
			c := mustNew(t, DefaultConfig(), l)
			got, err := c.Get(t.Context(), idA)
			if err != nil || got.ID != tt.wantID {
				t.Fatalf("Get() = %+v, %v; want ID %s", got, err, tt.wantID)
			}
			c.Delete(idA)
			if n := c.Len(); n != 0 {
				t.Errorf("Len() after Delete = %d, want 0", n)
			}
			if n := len(c.entries); n != 0 {
				t.Errorf("map entries after Delete = %d, want 0", n)
			}
		})
	}
}

func TestTTL(t *testing.T) {
	tests := []struct {
		name      string
		ttl       time.Duration
		advance   time.Duration
		wantLoads int
	}{
		{"fresh entry is a hit", time.Minute, 59 * time.Second, 1},
		{"expired at ttl", time.Minute, time.Minute, 2},
		{"expired past ttl", time.Minute, time.Hour, 2},
		{"zero ttl never expires", 0, 1000 * time.Hour, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			l := newFakeLoader(Container{ID: idA, Name: "web"})
			c := mustNew(t, Config{MaxEntries: 10, TTL: tt.ttl}, l, WithClock(clock.Now))
			if _, err := c.Get(t.Context(), idA); err != nil {
				t.Fatal(err)
			}
			clock.Advance(tt.advance)
			if _, err := c.Get(t.Context(), idA); err != nil {
				t.Fatal(err)
			}
			if n := l.count(idA); n != tt.wantLoads {
				t.Errorf("loads = %d, want %d", n, tt.wantLoads)
			}
			if n := c.Len(); n != 1 {
				t.Errorf("Len() = %d, want 1", n)
			}
		})
	}
}

func TestPutRefreshesTTL(t *testing.T) {
	clock := newFakeClock()
	l := newFakeLoader()
	c := mustNew(t, Config{MaxEntries: 10, TTL: time.Minute}, l, WithClock(clock.Now))
	c.Put(Container{ID: idA, Name: "old"})
	clock.Advance(50 * time.Second)
	c.Put(Container{ID: idA, Name: "new"})
	clock.Advance(50 * time.Second)
	got, err := c.Get(t.Context(), idA)
	if err != nil || got.Name != "new" {
		t.Fatalf("Get() = %+v, %v; want the second Put", got, err)
	}
	if n := l.count(idA); n != 0 {
		t.Errorf("loads = %d, want 0", n)
	}
}

func TestLRUEviction(t *testing.T) {
	tests := []struct {
		name      string
		ops       []string // "put:ID" or "get:ID"
		wantIDs   []string // present afterwards (checked without loading)
		wantGone  []string
		wantLen   int
		maxEntrys int
	}{
		{
			name:      "oldest evicted",
			maxEntrys: 2,
			ops:       []string{"put:" + idA, "put:" + idB, "put:" + idC},
			wantIDs:   []string{idB, idC}, wantGone: []string{idA}, wantLen: 2,
		},
		{
			name:      "get makes recent",
			maxEntrys: 2,
			ops:       []string{"put:" + idA, "put:" + idB, "get:" + idA, "put:" + idC},
			wantIDs:   []string{idA, idC}, wantGone: []string{idB}, wantLen: 2,
		},
		{
			name:      "put of existing makes recent without growing",
			maxEntrys: 2,
			ops:       []string{"put:" + idA, "put:" + idB, "put:" + idA, "put:" + idC},
			wantIDs:   []string{idA, idC}, wantGone: []string{idB}, wantLen: 2,
		},
		{
			name:      "bound of one",
			maxEntrys: 1,
			ops:       []string{"put:" + idA, "put:" + idB},
			wantIDs:   []string{idB}, wantGone: []string{idA}, wantLen: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newFakeLoader()
			c := mustNew(t, Config{MaxEntries: tt.maxEntrys}, l)
			for _, op := range tt.ops {
				kind, id := op[:3], op[4:]
				switch kind {
				case "put":
					c.Put(Container{ID: id})
				case "get":
					if _, err := c.Get(t.Context(), id); err != nil {
						t.Fatal(err)
					}
				}
			}
			if n := c.Len(); n != tt.wantLen {
				t.Errorf("Len() = %d, want %d", n, tt.wantLen)
			}
			for _, id := range tt.wantIDs {
				if _, ok := c.entries[id]; !ok {
					t.Errorf("%.6s evicted, want present", id)
				}
			}
			for _, id := range tt.wantGone {
				if _, ok := c.entries[id]; ok {
					t.Errorf("%.6s present, want evicted", id)
				}
			}
			if n := len(c.entries); n != c.lru.Len() {
				t.Errorf("map has %d entries, list %d", n, c.lru.Len())
			}
		})
	}
}

func TestPutAndDelete(t *testing.T) {
	l := newFakeLoader(Container{ID: idA, Name: "loaded"})
	c := mustNew(t, DefaultConfig(), l)

	c.Put(Container{Name: "no id"}) // ignored
	if n := c.Len(); n != 0 {
		t.Fatalf("Len() after Put without ID = %d, want 0", n)
	}
	c.Put(Container{ID: idA, Name: "/put"})
	got, err := c.Get(t.Context(), idA)
	if err != nil || got.Name != "put" {
		t.Fatalf("Get() after Put = %+v, %v", got, err)
	}
	c.Delete(idA)
	c.Delete(idB) // absent: no-op
	if n := c.Len(); n != 0 {
		t.Fatalf("Len() after Delete = %d, want 0", n)
	}
	got, err = c.Get(t.Context(), idA)
	if err != nil || got.Name != "loaded" {
		t.Fatalf("Get() after Delete = %+v, %v; want a load", got, err)
	}
	if n := l.count(idA); n != 1 {
		t.Errorf("loads = %d, want 1", n)
	}
}

// blockingLoader blocks every Load until release is closed (or its ctx
// ends, if honourCtx), then returns c.
type blockingLoader struct {
	started   chan string // receives the id of each Load as it starts
	release   chan struct{}
	honourCtx bool
	c         Container
	err       error
	calls     atomic.Int32
}

func newBlockingLoader(c Container) *blockingLoader {
	return &blockingLoader{started: make(chan string, 100), release: make(chan struct{}), c: c}
}

func (b *blockingLoader) Load(ctx context.Context, id string) (Container, error) {
	b.calls.Add(1)
	b.started <- id
	if b.honourCtx {
		select {
		case <-b.release:
		case <-ctx.Done():
			return Container{}, ctx.Err()
		}
	} else {
		<-b.release
	}
	return b.c, b.err
}

func TestConcurrentMissesShareOneLoad(t *testing.T) {
	const callers = 64
	reg := prometheus.NewRegistry()
	l := newBlockingLoader(Container{ID: idA, Name: "/web", Labels: map[string]string{"a": "b"}})
	c := mustNew(t, DefaultConfig(), l, WithMetrics(NewMetrics(reg)))

	type result struct {
		c   Container
		err error
	}
	results := make(chan result, callers)
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			got, err := c.Get(t.Context(), idA)
			results <- result{got, err}
		})
	}
	// Every Get counts its miss under the lock in the same critical
	// section that joins or starts the load, and the load cannot finish
	// before release: once all misses are counted, all callers share it.
	waitFor(t, "all callers to miss", func() bool {
		return metricValue(t, reg, "logferry_metadata_cache_misses_total") == callers
	})
	close(l.release)
	wg.Wait()
	close(results)

	if n := l.calls.Load(); n != 1 {
		t.Fatalf("loader called %d times, want 1", n)
	}
	for r := range results {
		if r.err != nil || r.c.Name != "web" || r.c.Labels["a"] != "b" {
			t.Errorf("Get() = %+v, %v; want the loaded container", r.c, r.err)
		}
	}
	if n := c.Len(); n != 1 {
		t.Errorf("Len() = %d, want 1", n)
	}
	// And now it is cached.
	if _, err := c.Get(t.Context(), idA); err != nil {
		t.Fatal(err)
	}
	if n := l.calls.Load(); n != 1 {
		t.Errorf("loader called %d times after a hit, want 1", n)
	}
	if v := metricValue(t, reg, "logferry_metadata_cache_hits_total"); v != 1 {
		t.Errorf("hits = %v, want 1", v)
	}
}

func TestConcurrentMissesShareOneFailure(t *testing.T) {
	const callers = 8
	reg := prometheus.NewRegistry()
	boom := errors.New("engine down")
	l := newBlockingLoader(Container{})
	l.err = boom
	c := mustNew(t, DefaultConfig(), l, WithMetrics(NewMetrics(reg)))

	errs := make(chan error, callers)
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			_, err := c.Get(t.Context(), idA)
			errs <- err
		})
	}
	waitFor(t, "all callers to miss", func() bool {
		return metricValue(t, reg, "logferry_metadata_cache_misses_total") == callers
	})
	close(l.release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, boom) {
			t.Errorf("Get() error = %v, want %v", err, boom)
		}
	}
	if n := l.calls.Load(); n != 1 {
		t.Errorf("loader called %d times, want 1", n)
	}
	if v := metricValue(t, reg, "logferry_metadata_cache_loads_failed_total"); v != 1 {
		t.Errorf("loads failed = %v, want 1", v)
	}
	if n := c.Len(); n != 0 {
		t.Errorf("Len() = %d, want 0 (failures are not cached)", n)
	}
}

func TestWaiterHonoursItsContext(t *testing.T) {
	reg := prometheus.NewRegistry()
	l := newBlockingLoader(Container{ID: idA, Name: "web"})
	c := mustNew(t, DefaultConfig(), l, WithMetrics(NewMetrics(reg)))

	leader := make(chan error, 1)
	go func() {
		_, err := c.Get(t.Context(), idA)
		leader <- err
	}()
	<-l.started

	ctx, cancel := context.WithCancel(t.Context())
	waiter := make(chan error, 1)
	go func() {
		_, err := c.Get(ctx, idA)
		waiter <- err
	}()
	waitFor(t, "the waiter to join", func() bool {
		return metricValue(t, reg, "logferry_metadata_cache_misses_total") == 2
	})
	cancel()
	if err := <-waiter; !errors.Is(err, context.Canceled) {
		t.Errorf("waiter Get() = %v, want context.Canceled while the load still runs", err)
	}
	close(l.release)
	if err := <-leader; err != nil {
		t.Errorf("leader Get() = %v", err)
	}
	if n := c.Len(); n != 1 {
		t.Errorf("Len() = %d, want 1", n)
	}
}

func TestWaiterRetriesWhenLeaderGivesUp(t *testing.T) {
	reg := prometheus.NewRegistry()
	l := newBlockingLoader(Container{ID: idA, Name: "web"})
	l.honourCtx = true
	c := mustNew(t, DefaultConfig(), l, WithMetrics(NewMetrics(reg)))

	leaderCtx, cancelLeader := context.WithCancel(t.Context())
	leader := make(chan error, 1)
	go func() {
		_, err := c.Get(leaderCtx, idA)
		leader <- err
	}()
	<-l.started

	type result struct {
		c   Container
		err error
	}
	waiter := make(chan result, 1)
	go func() {
		got, err := c.Get(t.Context(), idA)
		waiter <- result{got, err}
	}()
	waitFor(t, "the waiter to join", func() bool {
		return metricValue(t, reg, "logferry_metadata_cache_misses_total") == 2
	})
	cancelLeader()
	if err := <-leader; !errors.Is(err, context.Canceled) {
		t.Fatalf("leader Get() = %v, want context.Canceled", err)
	}
	// The waiter's ctx is alive: it must start a load of its own rather
	// than return the leader's cancellation.
	<-l.started
	close(l.release)
	r := <-waiter
	if r.err != nil || r.c.Name != "web" {
		t.Fatalf("waiter Get() = %+v, %v; want the container", r.c, r.err)
	}
	if n := l.calls.Load(); n != 2 {
		t.Errorf("loader called %d times, want 2", n)
	}
	// A retry is still one miss for that Get.
	if v := metricValue(t, reg, "logferry_metadata_cache_misses_total"); v != 2 {
		t.Errorf("misses = %v, want 2", v)
	}
}

func TestPutOrDeleteDuringLoadWins(t *testing.T) {
	tests := []struct {
		name     string
		during   func(c *Cache)
		wantLen  int
		wantName string // name a later Get sees, if present
	}{
		{"put", func(c *Cache) { c.Put(Container{ID: idA, Name: "renamed"}) }, 1, "renamed"},
		{"delete", func(c *Cache) { c.Delete(idA) }, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newBlockingLoader(Container{ID: idA, Name: "loaded"})
			c := mustNew(t, DefaultConfig(), l)
			type result struct {
				c   Container
				err error
			}
			done := make(chan result, 1)
			go func() {
				got, err := c.Get(t.Context(), idA)
				done <- result{got, err}
			}()
			<-l.started
			tt.during(c)
			close(l.release)
			r := <-done
			if r.err != nil || r.c.Name != "loaded" {
				t.Fatalf("Get() = %+v, %v; the caller still gets what it loaded", r.c, r.err)
			}
			if n := c.Len(); n != tt.wantLen {
				t.Fatalf("Len() = %d, want %d", n, tt.wantLen)
			}
			if tt.wantLen > 0 {
				got, err := c.Get(t.Context(), idA)
				if err != nil || got.Name != tt.wantName {
					t.Errorf("later Get() = %+v, %v; want %q", got, err, tt.wantName)
				}
			}
		})
	}
}

func TestLoaderPanicReleasesWaiters(t *testing.T) {
	reg := prometheus.NewRegistry()
	started := make(chan struct{})
	release := make(chan struct{})
	l := LoaderFunc(func(context.Context, string) (Container, error) {
		close(started)
		<-release
		panic("loader bug")
	})
	c := mustNew(t, DefaultConfig(), l, WithMetrics(NewMetrics(reg)))

	leader := make(chan any, 1)
	go func() {
		defer func() { leader <- recover() }()
		_, _ = c.Get(t.Context(), idA)
	}()
	<-started
	waiter := make(chan error, 1)
	go func() {
		_, err := c.Get(t.Context(), idA)
		waiter <- err
	}()
	waitFor(t, "the waiter to join", func() bool {
		return metricValue(t, reg, "logferry_metadata_cache_misses_total") == 2
	})
	close(release)
	if p := <-leader; p != "loader bug" {
		t.Errorf("leader recovered %v, want the loader's panic", p)
	}
	if err := <-waiter; !errors.Is(err, ErrLoaderPanicked) {
		t.Errorf("waiter Get() = %v, want ErrLoaderPanicked", err)
	}
	if n := len(c.inflight); n != 0 {
		t.Errorf("%d loads still in flight after the panic", n)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	clock := newFakeClock()
	l := newFakeLoader(Container{ID: idA}, Container{ID: idB})
	c := mustNew(t, Config{MaxEntries: 2, TTL: time.Minute}, l, WithClock(clock.Now), WithMetrics(NewMetrics(reg)))
	ctx := t.Context()

	mustGet := func(id string) {
		if _, err := c.Get(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	mustGet(idA) // miss
	mustGet(idA) // hit
	mustGet(idB) // miss
	clock.Advance(time.Hour)
	mustGet(idA)           // expired: miss
	_, _ = c.Get(ctx, idC) // miss, not found: failed
	c.Put(Container{ID: idC})
	c.Delete(idB)

	want := map[string]float64{
		"logferry_metadata_cache_hits_total":         1,
		"logferry_metadata_cache_misses_total":       4,
		"logferry_metadata_cache_loads_failed_total": 1,
		"logferry_metadata_cache_entries":            2,
	}
	for name, v := range want {
		if got := metricValue(t, reg, name); got != v {
			t.Errorf("%s = %v, want %v", name, got, v)
		}
	}
}

func TestNilMetricsAndUnregistered(t *testing.T) {
	var m *Metrics
	m.hit()
	m.miss()
	m.loadFailed()
	m.setEntries(3)

	unregistered := NewMetrics(nil)
	c := mustNew(t, DefaultConfig(), newFakeLoader(Container{ID: idA}), WithMetrics(unregistered))
	if _, err := c.Get(t.Context(), idA); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentMixedOperations is for -race: every operation at once on a
// small cache, which must stay within its bound and consistent.
func TestConcurrentMixedOperations(t *testing.T) {
	ids := []string{idA, idB, idC, "d", "e", "f"}
	l := newFakeLoader()
	for _, id := range ids {
		l.set(Container{ID: id, Name: "/" + id}, nil)
	}
	clock := newFakeClock()
	c := mustNew(t, Config{MaxEntries: 3, TTL: time.Second}, l, WithClock(clock.Now))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				id := ids[(g+i)%len(ids)]
				switch i % 5 {
				case 0:
					c.Put(Container{ID: id, Name: id})
				case 1:
					c.Delete(id)
				case 2:
					clock.Advance(100 * time.Millisecond)
				default:
					got, err := c.Get(t.Context(), id)
					if err != nil || got.ID != id || got.Name != id {
						t.Errorf("Get(%s) = %+v, %v", id, got, err)
						return
					}
				}
				if n := c.Len(); n > 3 {
					t.Errorf("Len() = %d past MaxEntries 3", n)
					return
				}
			}
		})
	}
	wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) != c.lru.Len() || len(c.inflight) != 0 {
		t.Errorf("map %d, list %d, in flight %d", len(c.entries), c.lru.Len(), len(c.inflight))
	}
}
