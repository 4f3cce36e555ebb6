package loki

// entryRing is the dispatcher's FIFO of entries: a ring buffer that doubles
// when full and is let go when it empties after holding many, so a full
// queue costs neither the copying of a growing slice nor its compaction
// (measured: a quarter of the sidecar's CPU when its queue filled up).
type entryRing struct {
	buf  []Entry
	head int // index of the oldest entry
	n    int
}

// ringKeep is the capacity an empty ring keeps; a larger one is released.
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
	if r.n == 0 {
		r.head = 0
		if len(r.buf) > ringKeep {
			r.buf = nil
		}
	}
}

func (r *entryRing) grow() {
	size := max(64, 2*len(r.buf))
	buf := make([]Entry, size)
	k := copy(buf, r.buf[r.head:])
	copy(buf[k:], r.buf[:r.head])
	r.buf, r.head = buf, 0
}
