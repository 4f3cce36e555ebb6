package loki

import (
	"fmt"
	"testing"

	"github.com/golang/snappy"
)

// TestBatchSharedMetadata: an entry's metadata reaches Loki as its shared
// pairs then its own, whichever of the two it has, across many entries (the
// encoder's joining buffer grows and moves), and the shared slice is never
// written: it has spare capacity an append would reuse.
func TestBatchSharedMetadata(t *testing.T) {
	shared := make([]LabelPairAdapter, 2, 8)
	shared[0] = LabelPairAdapter{Name: "container_id", Value: "c1"}
	shared[1] = LabelPairAdapter{Name: "image_name", Value: "img"}
	spare := shared[:cap(shared)]
	b := newBatch()
	want := map[string]string{}
	for i := range 500 {
		e := Entry{Stream: `{a="b"}`, TimeNano: int64(i), Line: fmt.Sprint("line ", i)}
		w := ""
		switch i % 4 {
		case 0: // none
		case 1:
			e.SharedMetadata = shared
			w = "container_id=c1 image_name=img "
		case 2:
			e.Metadata = []LabelPairAdapter{{Name: "seq", Value: fmt.Sprint(i)}}
			w = fmt.Sprintf("seq=%d ", i)
		case 3:
			e.SharedMetadata = shared
			e.Metadata = []LabelPairAdapter{{Name: "seq", Value: fmt.Sprint(i)}, {Name: "level", Value: "info"}}
			w = fmt.Sprintf("container_id=c1 image_name=img seq=%d level=info ", i)
		}
		want[e.Line] = w
		b.add(e)
	}
	for round := range 2 { // encode may run again on the same batch
		req := encodeDecoded(t, b)
		n := 0
		for _, s := range req.Streams {
			for _, e := range s.Entries {
				got := ""
				for _, m := range e.StructuredMetadata {
					got += m.Name + "=" + m.Value + " "
				}
				if got != want[e.Line] {
					t.Fatalf("round %d, %q: metadata %q, want %q", round, e.Line, got, want[e.Line])
				}
				n++
			}
		}
		if n != 500 {
			t.Fatalf("round %d: %d entries pushed, want 500", round, n)
		}
	}
	for i, p := range spare[2:] {
		if p != (LabelPairAdapter{}) {
			t.Fatalf("the shared slice's spare capacity was written at %d: %v", i+2, p)
		}
	}
	e := Entry{Line: "x", SharedMetadata: shared, Metadata: []LabelPairAdapter{{Name: "k", Value: "vv"}}}
	if got, want := e.size(), 1+16+len("container_idc1image_nameimgkvv"); got != want {
		t.Errorf("size() = %d, want %d", got, want)
	}
}

// decodeBody decodes a push body as Loki does: snappy, then protobuf.
// encodeDecoded encodes b and decodes what it would push.
func encodeDecoded(t *testing.T, b *batch) PushRequest {
	t.Helper()
	body, err := b.encode()
	if err != nil {
		t.Fatal(err)
	}
	return decodeBody(t, body)
}

func decodeBody(t *testing.T, body []byte) PushRequest {
	t.Helper()
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		t.Fatal(err)
	}
	var req PushRequest
	if err := req.Unmarshal(raw); err != nil {
		t.Fatal(err)
	}
	return req
}

// TestBatchGivesBackBacklogBuffers: after a backlog's full batches, steady
// small batches let the reused buffers shrink to what they need, within
// about twenty batches, and then reuse them without allocating again; what
// is pushed stays whole throughout.
func TestBatchGivesBackBacklogBuffers(t *testing.T) {
	b := newBatch()
	line := string(make([]byte, 200))
	fill := func(n int) {
		for i := range n {
			b.add(Entry{Stream: fmt.Sprintf(`{c="%d"}`, i%10), TimeNano: int64(i), Line: line})
		}
	}
	push := func(n int) {
		t.Helper()
		fill(n)
		req := encodeDecoded(t, b)
		got := 0
		for _, s := range req.Streams {
			got += len(s.Entries)
		}
		if got != n {
			t.Fatalf("%d entries pushed, want %d", got, n)
		}
		b.reset()
	}
	for range 3 { // a backlog: full batches
		push(8000)
	}
	full := cap(b.raw)
	if full < 1<<20 || cap(b.entries) < 8000 {
		t.Fatalf("after full batches: raw %d bytes, entries %d: the test does not make them large", full, cap(b.entries))
	}
	steadyRaw := 0
	var first *byte
	for i := range 60 { // then steady batches of 500 entries
		push(500)
		if i == 29 {
			steadyRaw = cap(b.raw)
			first = &b.raw[:1][0]
		}
	}
	if steadyRaw == 0 || steadyRaw > full/4 {
		t.Fatalf("after 30 steady batches the raw buffer holds %d bytes of capacity (%d after the backlog)", steadyRaw, full)
	}
	if cap(b.entries) > 2*500 {
		t.Fatalf("after steady batches the entries slice holds %d entries of capacity", cap(b.entries))
	}
	if &b.raw[:1][0] != first || cap(b.raw) != steadyRaw {
		t.Fatalf("steady batches of one size reallocated the raw buffer (capacity %d, then %d)", steadyRaw, cap(b.raw))
	}
	// A full batch again is encoded whole after the shrink.
	push(8000)
}
