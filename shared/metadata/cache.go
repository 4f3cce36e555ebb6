package metadata

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Errors returned by this package; test for them with errors.Is.
var (
	// ErrNotFound is what a Loader wraps when the container does not exist.
	ErrNotFound = errors.New("metadata: container not found")
	// ErrInvalidConfig is wrapped by every Config.Validate error.
	ErrInvalidConfig = errors.New("metadata: invalid config")
	// ErrEmptyID is returned by Get for an empty container id.
	ErrEmptyID = errors.New("metadata: empty container id")
	// ErrLoaderPanicked is what concurrent callers waiting on a load get
	// when the Loader panicked; the caller that ran it gets the panic.
	ErrLoaderPanicked = errors.New("metadata: loader panicked")
)

// Loader fetches a container's metadata when the Cache does not have it; the
// sidecar's is the Engine API's inspect.
//
// Load must return when ctx is done. It returns an error wrapping
// ErrNotFound when no container has that id. The Container it returns is
// handed to the Cache, which shares it between callers: the Loader must not
// keep and modify it. Load is called by one goroutine per id at a time, but
// concurrently for different ids.
type Loader interface {
	Load(ctx context.Context, id string) (Container, error)
}

// LoaderFunc adapts a function to a Loader.
type LoaderFunc func(ctx context.Context, id string) (Container, error)

// Load calls f(ctx, id).
func (f LoaderFunc) Load(ctx context.Context, id string) (Container, error) { return f(ctx, id) }

// Defaults for Config.
const (
	// DefaultMaxEntries is far above the containers one host runs, so in
	// practice only removed containers are evicted.
	DefaultMaxEntries = 4096
	// DefaultTTL bounds how long a missed rename event leaves a stale
	// name in the cache.
	DefaultTTL = 10 * time.Minute
)

// Config configures a Cache. Keys in errors are the names the binaries'
// configuration uses: max-entries, ttl.
type Config struct {
	// MaxEntries bounds the cache; past it the least recently used entry
	// is evicted. Must be at least 1.
	MaxEntries int
	// TTL is how long an entry is served before Get loads it again. Zero
	// means entries never expire (the plugin, which learns metadata from
	// StartLogging and may have no Engine API to reload from, wants
	// that). Must not be negative.
	TTL time.Duration
}

// DefaultConfig returns the defaults, to be overridden by parsed settings
// before Validate.
func DefaultConfig() Config {
	return Config{MaxEntries: DefaultMaxEntries, TTL: DefaultTTL}
}

// Validate reports the first invalid setting, naming its key.
func (c Config) Validate() error {
	if c.MaxEntries < 1 {
		return fmt.Errorf("%w: max-entries: must be at least 1, got %d", ErrInvalidConfig, c.MaxEntries)
	}
	if c.TTL < 0 {
		return fmt.Errorf("%w: ttl: must not be negative (0 disables expiry), got %s", ErrInvalidConfig, c.TTL)
	}
	return nil
}

// Option sets an optional ability of a Cache.
type Option func(*Cache)

// WithClock replaces time.Now, for tests that move time by hand.
func WithClock(now func() time.Time) Option {
	return func(c *Cache) { c.now = now }
}

// WithMetrics makes the Cache count into m (see NewMetrics).
func WithMetrics(m *Metrics) Option {
	return func(c *Cache) { c.metrics = m }
}

// Cache is a bounded LRU cache of Container by full id, with expiry, that
// loads a missing container once however many goroutines ask for it at the
// same time. It is safe for concurrent use and starts no goroutines.
type Cache struct {
	loader  Loader
	max     int
	ttl     time.Duration
	now     func() time.Time
	metrics *Metrics

	mu       sync.Mutex
	entries  map[string]*list.Element // values are *entry
	lru      list.List                // front is the most recently used
	inflight map[string]*call
}

type entry struct {
	key     string // the id it is stored under, also when c.ID differs
	c       Container
	expires time.Time // zero when the cache has no TTL
}

// call is one load in progress; the goroutine running it closes done after
// setting c and err.
type call struct {
	done chan struct{}
	c    Container
	err  error
	// abandoned: the load failed because the ctx of the goroutine that
	// ran it ended, which says nothing about the container; waiters
	// whose own ctx is alive try again.
	abandoned bool
	// stale: a Put or Delete for the id happened during the load, which
	// is then newer than what the load returns, so the result is handed
	// to the waiting callers but not stored.
	stale bool
}

// New returns a Cache that fills misses from loader.
func New(cfg Config, loader Loader, opts ...Option) (*Cache, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if loader == nil {
		return nil, errors.New("metadata: nil Loader")
	}
	c := &Cache{
		loader:   loader,
		max:      cfg.MaxEntries,
		ttl:      cfg.TTL,
		now:      time.Now,
		entries:  make(map[string]*list.Element),
		inflight: make(map[string]*call),
	}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// Get returns the metadata of the container with the full id. A cached,
// unexpired entry is returned at once. Otherwise the Loader runs in the
// calling goroutine with ctx, and concurrent Gets for the same id wait for
// that one load instead of starting their own; a waiter returns ctx.Err()
// as soon as its ctx is done. A failed load is not cached: the next Get
// tries again.
//
// The returned Container is shared: do not modify its Labels or Env.
func (c *Cache) Get(ctx context.Context, id string) (Container, error) {
	if id == "" {
		return Container{}, ErrEmptyID
	}
	missed := false
	for {
		c.mu.Lock()
		if el, ok := c.entries[id]; ok {
			e := el.Value.(*entry)
			if !c.expired(e) {
				c.lru.MoveToFront(el)
				ct := e.c // copied under the lock: Put replaces e.c in place
				c.mu.Unlock()
				c.metrics.hit()
				return ct, nil
			}
			c.remove(el)
		}
		if !missed {
			missed = true
			c.metrics.miss()
		}
		if cl, ok := c.inflight[id]; ok {
			c.mu.Unlock()
			select {
			case <-cl.done:
				if cl.abandoned {
					if err := ctx.Err(); err != nil {
						return Container{}, err
					}
					continue // the loader's ctx ended, not ours: load again
				}
				return cl.c, cl.err
			case <-ctx.Done():
				return Container{}, ctx.Err()
			}
		}
		cl := &call{done: make(chan struct{})}
		c.inflight[id] = cl
		c.mu.Unlock()
		return c.load(ctx, id, cl)
	}
}

// load runs the Loader for id and publishes the result to cl's waiters.
func (c *Cache) load(ctx context.Context, id string, cl *call) (Container, error) {
	returned := false
	defer func() {
		if returned {
			return
		}
		// The Loader panicked: release the waiters, let the panic go on.
		c.mu.Lock()
		cl.err = ErrLoaderPanicked
		c.finish(id, cl)
		c.mu.Unlock()
		close(cl.done)
		c.metrics.loadFailed()
	}()
	ct, err := c.loader.Load(ctx, id)
	returned = true

	if err == nil {
		ct = ct.normalized()
		if ct.ID == "" {
			ct.ID = id
		}
	}
	c.mu.Lock()
	cl.c, cl.err = ct, err
	if err != nil {
		cl.abandoned = ctx.Err() != nil
	} else if !cl.stale {
		c.store(id, ct)
	}
	c.finish(id, cl)
	c.mu.Unlock()
	close(cl.done)
	if err != nil {
		c.metrics.loadFailed()
		return Container{}, err
	}
	return ct, nil
}

// finish forgets cl as the load in progress for id. Caller holds c.mu.
func (c *Cache) finish(id string, cl *call) {
	if c.inflight[id] == cl {
		delete(c.inflight, id)
	}
}

// Put stores ct under ct.ID without a load: the plugin learns the metadata
// from StartLogging. A Container without an ID is ignored. A load for the
// same id in progress still answers its waiters but is not stored over ct.
// Put hands ct to the cache: do not modify its Labels or Env afterwards.
func (c *Cache) Put(ct Container) {
	if ct.ID == "" {
		return
	}
	ct = ct.normalized()
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.inflight[ct.ID]; ok {
		cl.stale = true
	}
	c.store(ct.ID, ct)
}

// Delete forgets id, e.g. when its container is destroyed. A load for id in
// progress is not stored.
func (c *Cache) Delete(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.inflight[id]; ok {
		cl.stale = true
	}
	if el, ok := c.entries[id]; ok {
		c.remove(el)
	}
}

// Len returns the number of entries, counting expired ones Get has not yet
// dropped.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// store inserts or replaces id's entry and evicts past the bound. Caller
// holds c.mu.
func (c *Cache) store(id string, ct Container) {
	var expires time.Time
	if c.ttl > 0 {
		expires = c.now().Add(c.ttl)
	}
	if el, ok := c.entries[id]; ok {
		e := el.Value.(*entry)
		e.c, e.expires = ct, expires
		c.lru.MoveToFront(el)
		return
	}
	c.entries[id] = c.lru.PushFront(&entry{key: id, c: ct, expires: expires})
	for c.lru.Len() > c.max {
		c.remove(c.lru.Back())
	}
	c.metrics.setEntries(c.lru.Len())
}

// remove drops one entry. Caller holds c.mu.
func (c *Cache) remove(el *list.Element) {
	e := c.lru.Remove(el).(*entry)
	delete(c.entries, e.key)
	c.metrics.setEntries(c.lru.Len())
}

// expired reports whether e is past its TTL. Caller holds c.mu.
func (c *Cache) expired(e *entry) bool {
	return !e.expires.IsZero() && !c.now().Before(e.expires)
}
