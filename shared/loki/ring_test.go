package loki

import "testing"

// The ring gives entries back in order across wrap-arounds and growth.
func TestEntryRingOrder(t *testing.T) {
	var r entryRing
	next, want := int64(0), int64(0)
	for round := range 50 {
		for range 37 * (round%7 + 1) {
			r.push(Entry{Offset: next})
			next++
		}
		for range 29 * (round%5 + 1) {
			if r.len() == 0 {
				break
			}
			if got := r.peek().Offset; got != want {
				t.Fatalf("round %d: got offset %d, want %d", round, got, want)
			}
			r.pop()
			want++
		}
		if r.len() != int(next-want) {
			t.Fatalf("round %d: len %d, want %d", round, r.len(), next-want)
		}
	}
	for r.len() > 0 {
		if got := r.peek().Offset; got != want {
			t.Fatalf("drain: got offset %d, want %d", got, want)
		}
		r.pop()
		want++
	}
	if want != next {
		t.Fatalf("drained %d of %d", want, next)
	}
}

// An empty ring keeps the buffer a steady rate needs, and lets go of one an
// outage's backlog grew once a cycle has used less than a quarter of it.
func TestEntryRingKeepsWhatItUses(t *testing.T) {
	var r entryRing
	cycle := func(n int) {
		for i := range n {
			r.push(Entry{Offset: int64(i)})
		}
		for r.len() > 0 {
			r.pop()
		}
	}
	cycle(5000) // a steady batch: grows to 8192
	buf := &r.buf[0]
	for i := range 10 {
		cycle(4000 + 100*i)
		if len(r.buf) != 8192 || &r.buf[0] != buf {
			t.Fatalf("steady cycle %d: buffer of %d entries, reallocated: %v; want the same 8192", i, len(r.buf), &r.buf[0] != buf)
		}
	}
	cycle(200_000) // an outage's backlog
	if len(r.buf) != 262144 {
		t.Fatalf("after the backlog: buffer of %d entries, want 262144 kept until a cycle uses less of it", len(r.buf))
	}
	cycle(4000) // back to the steady rate: the large buffer goes
	if r.buf != nil {
		t.Fatalf("after a steady cycle: buffer of %d entries kept, want it released", len(r.buf))
	}
	cycle(500) // small cycles keep a buffer up to ringKeep
	if len(r.buf) != 512 {
		t.Fatalf("small cycle: buffer of %d entries, want 512", len(r.buf))
	}
	cycle(10)
	if len(r.buf) != 512 {
		t.Fatalf("after a tiny cycle: buffer of %d entries, want 512 kept (under ringKeep)", len(r.buf))
	}
}

// A ring that a steady rate never lets empty still gives back what an
// outage's backlog grew, once a whole buffer's worth has passed through it
// with far fewer entries held; the entries keep their order.
func TestEntryRingShrinksWithoutEmptying(t *testing.T) {
	var r entryRing
	next, want := int64(0), int64(0)
	push := func(n int) {
		for range n {
			r.push(Entry{Offset: next})
			next++
		}
	}
	pop := func(n int) {
		for range n {
			if got := r.peek().Offset; got != want {
				t.Fatalf("got offset %d, want %d (buffer of %d)", got, want, len(r.buf))
			}
			r.pop()
			want++
		}
	}
	push(200_000) // the backlog
	pop(199_900)  // drained, 100 left
	for range 300 {
		push(3000) // a batch's worth arrives
		pop(3000)  // and leaves: the ring never empties
	}
	if r.len() != 100 {
		t.Fatalf("%d entries held, want 100", r.len())
	}
	if len(r.buf) != 8192 {
		t.Fatalf("buffer of %d entries after 900,000 steady entries, want 8192 (about twice the 3,100 held at most)", len(r.buf))
	}
	buf := &r.buf[0]
	for range 100 {
		push(3000)
		pop(3000)
	}
	if &r.buf[0] != buf {
		t.Fatalf("steady rate: buffer reallocated (now %d entries)", len(r.buf))
	}
}
