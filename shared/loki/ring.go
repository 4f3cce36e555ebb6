package loki

// entryRing is the dispatcher's FIFO of entries: a ring buffer that doubles
// when full, so a full queue costs neither the copying of a growing slice
// nor its compaction (measured: a quarter of the sidecar's CPU when its
// queue filled up). It gives back a buffer it no longer needs, checked
// whenever it empties and whenever a whole buffer's worth of entries has
// passed through it: a buffer over ringKeep entries and over four times
// the most the ring held since the last check is released (empty) or
// halved until it is about twice that (not empty). A steady rate keeps the
// buffer it needs (a ring released at every emptying would grow again from
// 64 entries at every batch); a buffer grown by an outage's backlog goes
// once the backlog has drained, even when a rate above a batch per
// batch-wait never lets the ring empty (which only an emptying released
// before: in a soak, a 16,384-entry buffer, 1.8 MiB, stayed live after the
// outages).
type entryRing struct {
	buf  []Entry
	head int // index of the oldest entry
	n    int
	peak int // the most entries held since the last check
	pops int // entries popped since the last check
}

// ringKeep is the largest buffer the ring never gives back.
const ringKeep = 1024

func (r *entryRing) len() int { return r.n }

func (r *entryRing) push(e Entry) {
	if r.n == len(r.buf) {
		r.grow()
	}
	i := r.head + r.n
	if i >= len(r.buf) {
		i -= len(r.buf)
	}
	r.buf[i] = e
	r.n++
	r.peak = max(r.peak, r.n)
}

// peek returns the oldest entry; the ring must not be empty.
func (r *entryRing) peek() *Entry { return &r.buf[r.head] }

// at returns the i-th oldest entry; i must be below len.
func (r *entryRing) at(i int) *Entry {
	i += r.head
	if i >= len(r.buf) {
		i -= len(r.buf)
	}
	return &r.buf[i]
}

// pop removes the oldest entry; the ring must not be empty.
func (r *entryRing) pop() {
	r.buf[r.head] = Entry{}
	r.head++
	if r.head == len(r.buf) {
		r.head = 0
	}
	r.n--
	r.pops++
	switch {
	case r.n == 0:
		r.head = 0
		if len(r.buf) > max(ringKeep, 4*r.peak) {
			r.buf = nil
		}
	case r.pops >= len(r.buf):
		if len(r.buf) > max(ringKeep, 4*r.peak) {
			size := len(r.buf)
			for size/2 >= max(ringKeep, 2*r.peak) {
				size /= 2
			}
			r.resize(size)
		}
	default:
		return
	}
	r.peak, r.pops = r.n, 0
}

func (r *entryRing) grow() { r.resize(max(64, 2*len(r.buf))) }

// resize moves the entries, oldest first, into a buffer of size entries
// (at least r.n).
func (r *entryRing) resize(size int) {
	buf := make([]Entry, size)
	if end := r.head + r.n; end <= len(r.buf) {
		copy(buf, r.buf[r.head:end])
	} else {
		k := copy(buf, r.buf[r.head:])
		copy(buf[k:], r.buf[:end-len(r.buf)])
	}
	r.buf, r.head = buf, 0
}
