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
	if want != next || len(r.buf) > ringKeep {
		t.Fatalf("drained %d of %d; buffer kept: %d entries", want, next, len(r.buf))
	}
}
