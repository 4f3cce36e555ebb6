package loki

import "sync"

// Spool is a durable overflow the dispatcher also replays from: package
// spool's *Spool implements it. Appends may come from many goroutines; one
// consumer at a time reads, rewinds and acks.
//
// Contract: Overflow appends in call order and keeps the entries durably (in
// the page cache at least) when it returns nil. ReadEntries returns entries
// in append order from where the previous call stopped (after open or Rewind:
// from the oldest not acknowledged); end is the position after them and after
// any damaged data skipped on the way, and Ack(end) acknowledges all of it.
// No entries and a nil error mean nothing to read now; Signals returns a
// channel that receives after an append (capacity 1: one reader) and one
// that is closed when the spool is.
// Unread reports whether appended records are still to be read; Drained
// whether everything appended was acknowledged.
type Spool interface {
	Overflow
	ReadEntries(maxEntries, maxBytes int) (entries []Entry, end int64, err error)
	Signals() (appended, closed <-chan struct{})
	Unread() bool
	Drained() bool
	Rewind()
	Ack(pos int64) error
	Sync() error
	Close() error
	// MaxBytes is the spool's size bound. Entering spooling mode appends
	// the whole memory queue at once, so a dispatcher's QueueBytes must
	// stay well under it.
	MaxBytes() int64
}

// SpoolSet shares open spools among the dispatchers of one process: one
// spool per key (its directory), opened when the first dispatcher needs it
// and closed after the last one stopped. Of the dispatchers sharing a spool,
// one at a time holds its replay lease and reads it back; the others only
// append.
type SpoolSet struct {
	key     func(Config) string
	open    func(key string, cfg Config) (Spool, error)
	metrics *SpoolMetrics

	mu     sync.Mutex
	spools map[string]*sharedSpool
}

type sharedSpool struct {
	sp    Spool
	users int
	lease chan struct{} // cap 1: full while a dispatcher replays
}

// NewSpoolSet returns an empty set. key names the spool of a configuration
// (dispatchers whose keys are equal share one spool); open opens it. metrics
// may be nil.
func NewSpoolSet(key func(Config) string, open func(key string, cfg Config) (Spool, error), metrics *SpoolMetrics) *SpoolSet {
	if metrics == nil {
		metrics = NewSpoolMetrics(nil)
	}
	return &SpoolSet{key: key, open: open, metrics: metrics, spools: map[string]*sharedSpool{}}
}

// WithSpools makes every dispatcher spool through set: see the package
// doc on spooling. It replaces WithOverflow.
func WithSpools(set *SpoolSet) Option { return func(d *Dispatcher) { d.spools = set } }

func (s *SpoolSet) acquire(cfg Config) (*sharedSpool, func(), error) {
	k := s.key(cfg)
	s.mu.Lock()
	defer s.mu.Unlock()
	sh, ok := s.spools[k]
	if !ok {
		sp, err := s.open(k, cfg)
		if err != nil {
			return nil, nil, err
		}
		sh = &sharedSpool{sp: sp, lease: make(chan struct{}, 1)}
		s.spools[k] = sh
	}
	sh.users++
	var once sync.Once
	return sh, func() { once.Do(func() { s.release(k, sh) }) }, nil
}

func (s *SpoolSet) release(k string, sh *sharedSpool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sh.users--
	if sh.users > 0 {
		return
	}
	delete(s.spools, k)
	_ = sh.sp.Sync()
	_ = sh.sp.Close()
}
