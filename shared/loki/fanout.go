package loki

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// MaxFanoutTenants bounds the tenants one producer's entries go to besides
// its base's: a tenant stage may take the tenant from a line's content, and
// each tenant costs a dispatcher (a queue, a sender, a spool).
const MaxFanoutTenants = 16

// Fanout hands one producer's entries to more than one dispatcher and
// tells the producer's Acker in hand-over order across them: an entry is
// acknowledged once it and every entry handed before it, to any
// dispatcher, are resolved. Each dispatcher only orders its own entries;
// without the Fanout an acknowledgement from one dispatcher's sender could
// move a position past an entry another still holds. A producer needs one
// when a tenant stage chooses tenants per entry, or when its endpoint may
// change while it runs (SetBase, at a configuration reload).
//
// Handle and Close are called by the producer, one at a time; SetBase by
// anyone.
type Fanout struct {
	pool     *Pool
	acker    Acker
	overflow prometheus.Counter

	rmu     sync.Mutex
	base    *fanRoute            // where entries without a tenant of their own go
	routes  map[string]*fanRoute // by Config.Key()
	tenants int                  // routes made for tenants under the current base

	mu   sync.Mutex
	pend []fanEntry // handed and not yet told to acker, from sequence head on
	head int64

	ackMu sync.Mutex // held while acker is told: acknowledgements stay in order
}

type fanEntry struct {
	off             int64
	done, delivered bool
}

// fanRoute is one dispatcher and the sequence numbers of the entries it
// holds, in hand-over order. It is the Acker of those entries.
type fanRoute struct {
	f    *Fanout
	d    *Dispatcher
	own  bool    // acquired from the pool by the Fanout
	seqs []int64 // guarded by f.mu
}

// NewFanout returns the Fanout of a producer whose own dispatcher is base
// (from pool; the producer releases it) and whose acknowledgements go to
// acker. Entries for tenants past MaxFanoutTenants go to the base's tenant
// and are counted in overflow (nil: not counted).
func NewFanout(pool *Pool, base *Dispatcher, acker Acker, overflow prometheus.Counter) *Fanout {
	f := &Fanout{pool: pool, acker: acker, overflow: overflow, routes: map[string]*fanRoute{}}
	f.base = &fanRoute{f: f, d: base}
	f.routes[base.cfg.Key()] = f.base
	return f
}

// Handle hands e to the dispatcher of tenant ("" or the base's own
// tenant: the base), as Dispatcher.Handle, or as TryHandle when try is
// set. e.Offset is what the producer's Acker is told; e.Acker is the
// Fanout's. On an error the entry is not in flight and nothing
// acknowledges it.
func (f *Fanout) Handle(tenant string, e Entry, try bool) error {
	r, err := f.route(tenant)
	if err != nil {
		return err
	}
	f.mu.Lock()
	seq := f.head + int64(len(f.pend))
	f.pend = append(f.pend, fanEntry{off: e.Offset})
	r.seqs = append(r.seqs, seq)
	f.mu.Unlock()
	e.Acker, e.Offset = r, seq
	if try {
		err = r.d.TryHandle(e)
	} else {
		err = r.d.Handle(e)
	}
	if err != nil {
		// Not admitted, so not acknowledged: it is the last of both lists
		// (the producer is the only one to append).
		f.mu.Lock()
		f.pend = f.pend[:len(f.pend)-1]
		r.seqs = r.seqs[:len(r.seqs)-1]
		f.mu.Unlock()
	}
	return err
}

func (f *Fanout) route(tenant string) (*fanRoute, error) {
	f.rmu.Lock()
	defer f.rmu.Unlock()
	cfg := f.base.d.cfg
	if tenant == "" || tenant == cfg.TenantID {
		return f.base, nil
	}
	cfg.TenantID = tenant
	key := cfg.Key()
	if r, ok := f.routes[key]; ok {
		return r, nil
	}
	if f.tenants >= MaxFanoutTenants {
		if f.overflow != nil {
			f.overflow.Inc()
		}
		return f.base, nil
	}
	d, err := f.pool.Acquire(cfg) // makes a dispatcher: rare, and under rmu only
	if err != nil {
		return nil, err
	}
	r := &fanRoute{f: f, d: d, own: true}
	f.routes[key] = r
	f.tenants++
	return r, nil
}

// SetBase makes cfg's dispatcher the one entries without a tenant of
// their own go to from now on; entries handed before keep theirs, and the
// order of acknowledgements holds across both.
func (f *Fanout) SetBase(cfg Config) error {
	key := cfg.Key()
	f.rmu.Lock()
	defer f.rmu.Unlock()
	if f.base.d.cfg.Key() == key {
		return nil
	}
	r, ok := f.routes[key]
	if !ok {
		d, err := f.pool.Acquire(cfg)
		if err != nil {
			return err
		}
		r = &fanRoute{f: f, d: d, own: true}
		f.routes[key] = r
	}
	f.base, f.tenants = r, 0
	return nil
}

// Base returns the configuration of the dispatcher entries without a
// tenant of their own go to.
func (f *Fanout) Base() Config {
	f.rmu.Lock()
	defer f.rmu.Unlock()
	return f.base.d.cfg
}

// Ack resolves this route's entries up to seq and tells the producer's
// Acker of the entries now resolved with all before them.
func (r *fanRoute) Ack(seq int64, delivered bool) {
	f := r.f
	f.mu.Lock()
	n := 0
	for n < len(r.seqs) && r.seqs[n] <= seq {
		p := &f.pend[r.seqs[n]-f.head]
		p.done, p.delivered = true, delivered
		n++
	}
	r.seqs = dropFront(r.seqs, n)
	k := 0
	for k < len(f.pend) && f.pend[k].done {
		k++
	}
	if k == 0 {
		f.mu.Unlock()
		return
	}
	last := f.pend[k-1]
	f.pend = dropFront(f.pend, k)
	f.head += int64(k)
	f.ackMu.Lock() // before f.mu is let go: the next one to advance tells after this one
	f.mu.Unlock()
	f.acker.Ack(last.off, last.delivered)
	f.ackMu.Unlock()
}

// Close gives back the dispatchers the Fanout acquired (they go on
// delivering what they hold, as Pool.Release says). Not the one NewFanout
// was given: that is the producer's.
func (f *Fanout) Close() {
	f.rmu.Lock()
	defer f.rmu.Unlock()
	for k, r := range f.routes {
		if r.own {
			f.pool.Release(r.d)
			delete(f.routes, k)
		}
	}
}

// dropFront removes the first k elements of s. When what is left is no
// longer than what goes, it moves to the front of the array, so a queue
// that is drained about as fast as it fills keeps one array: resliced
// from the front at every acknowledgement, pend and seqs grew a new array
// each time an append reached the end (steadybench, 5,000 lines/s: 462-514
// KiB allocated per 1,000 lines before, 455-458 after). Copying at most
// the k dropped keeps a long backlog's acknowledgements linear.
func dropFront[T any](s []T, k int) []T {
	if len(s)-k > k {
		return s[k:]
	}
	n := copy(s, s[k:])
	return s[:n]
}
