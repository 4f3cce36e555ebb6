package loki

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Pool shares one Dispatcher among all users of the same endpoint
// configuration, so the number of clients, goroutines and connections grows
// with endpoints, not with containers. A dispatcher whose last user released
// it keeps flushing in the background, owned by the Pool, until it has
// delivered its queue or DrainTimeout passes.
//
// Lock order: Pool.mu, then SpoolSet.mu: Acquire creates a dispatcher under
// mu, and a spooling one joins its spool (SpoolSet.acquire). Stopping
// dispatchers, which leave their spool, happens outside mu.
type Pool struct {
	metrics      *Metrics
	log          *slog.Logger
	opts         []Option
	drainTimeout time.Duration

	mu     sync.Mutex
	active map[string]*pooled
	closed bool
	wg     sync.WaitGroup // draining dispatchers
	ctx    context.Context
	cancel context.CancelFunc
}

type pooled struct {
	d     *Dispatcher
	users int
}

// DefaultDrainTimeout bounds how long a released dispatcher keeps trying.
const DefaultDrainTimeout = 5 * time.Minute

// NewPool returns an empty pool. opts apply to every dispatcher it creates.
func NewPool(metrics *Metrics, log *slog.Logger, drainTimeout time.Duration, opts ...Option) *Pool {
	if drainTimeout <= 0 {
		drainTimeout = DefaultDrainTimeout
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Pool{metrics: metrics, log: log, opts: opts, drainTimeout: drainTimeout,
		active: make(map[string]*pooled), ctx: ctx, cancel: cancel}
}

// Acquire returns the dispatcher for cfg, creating it on first use. Every
// successful Acquire must be paired with one Release.
func (p *Pool) Acquire(cfg Config) (*Dispatcher, error) {
	key := cfg.Key()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrStopped
	}
	if e, ok := p.active[key]; ok {
		e.users++
		return e.d, nil
	}
	d, err := New(cfg, p.metrics, p.log, p.opts...)
	if err != nil {
		return nil, err
	}
	p.active[key] = &pooled{d: d, users: 1}
	return d, nil
}

// Release gives back a dispatcher from Acquire. It never waits: when d has no
// users left it is stopped in the background.
func (p *Pool) Release(d *Dispatcher) {
	key := d.cfg.Key()
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.active[key]
	if !ok || e.d != d {
		return
	}
	e.users--
	if e.users > 0 {
		return
	}
	delete(p.active, key)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		ctx, cancel := context.WithTimeout(p.ctx, p.drainTimeout)
		defer cancel()
		if err := d.Stop(ctx); err != nil {
			p.log.Warn("dispatcher stopped before its queue was delivered", "endpoint", d.cfg.Endpoint(), "err", err)
		}
		d.Release()
	}()
}

// Len returns the number of dispatchers in use (not counting draining ones).
func (p *Pool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.active)
}

// Close stops every dispatcher, active or draining, flushing within ctx.
func (p *Pool) Close(ctx context.Context) {
	p.mu.Lock()
	p.closed = true
	active := p.active
	p.active = map[string]*pooled{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, e := range active {
		wg.Add(1)
		go func(d *Dispatcher) {
			defer wg.Done()
			_ = d.Stop(ctx)
			d.Release()
		}(e.d)
	}
	stop := context.AfterFunc(ctx, p.cancel)
	defer stop()
	wg.Wait()
	p.wg.Wait()
	p.cancel()
}
