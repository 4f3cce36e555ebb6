package tail

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
)

// TestLineReaderFollowsInSmallReads: a readAll starts with a buffer of
// followRead bytes and gives it back at the end; a read that fills it moves
// on to reads of the full size, carrying a partial line over whole.
func TestLineReaderFollowsInSmallReads(t *testing.T) {
	var data bytes.Buffer
	type span struct {
		text       string
		start, end int64
	}
	var got []span
	var sizes []int
	r := &lineReader{size: DefaultReadBuffer, maxRaw: DefaultMaxRawLine,
		line: func(raw []byte, start, end int64) error {
			got = append(got, span{string(raw), start, end})
			return nil
		},
		skip: func(reason, what string) { t.Errorf("skipped: %s %s", reason, what) },
		pin:  func() error { return nil },
	}
	r.afterRead = func(int64) { sizes = append(sizes, len(r.buf)) }
	src := &source{path: "test", r: &data}
	var want []span
	add := func(s string) {
		start := int64(data.Len()) + src.off
		data.WriteString(s)
		if strings.HasSuffix(s, "\n") {
			want = append(want, span{s, start, start + int64(len(s))})
		}
	}

	// Following: a few lines, and then the first part of one.
	for i := range 3 {
		add(fmt.Sprintf("{\"log\":\"line %d\"}\n", i))
	}
	partial := `{"log":"a line cut by the read `
	data.WriteString(partial)
	if _, err := r.readAll(context.Background(), src); err != nil {
		t.Fatal(err)
	}
	if len(sizes) == 0 || sizes[0] != followRead {
		t.Fatalf("buffer sizes %v, want the first read in %d bytes", sizes, followRead)
	}
	if r.buf == nil || len(r.buf) != followRead {
		t.Fatalf("holding a partial line: buffer %d bytes, want the small one kept", len(r.buf))
	}
	rest := "and its end\"}\n"
	data.WriteString(rest)
	want = append(want, span{partial + rest, src.off - int64(len(partial)), src.off + int64(len(rest))})

	// A backlog of more than a small buffer, with a line longer than one.
	for i := range 2000 {
		add(fmt.Sprintf("{\"log\":\"backlog %04d %s\"}\n", i, strings.Repeat("x", 200)))
		if i == 100 {
			add(fmt.Sprintf("{\"log\":\"%s\"}\n", strings.Repeat("y", 40<<10)))
		}
	}
	sizes = sizes[:0]
	if _, err := r.readAll(context.Background(), src); err != nil {
		t.Fatal(err)
	}
	if len(sizes) < 2 || sizes[0] != followRead || sizes[1] != DefaultReadBuffer {
		t.Errorf("backlog buffer sizes %v, want %d then %d", sizes, followRead, DefaultReadBuffer)
	}
	for _, n := range sizes[1:] {
		if n != DefaultReadBuffer {
			t.Errorf("a backlog read in a buffer of %d bytes: %v", n, sizes)
			break
		}
	}
	if r.buf != nil {
		t.Errorf("idle after the backlog, still holding %d bytes", len(r.buf))
	}
	if len(got) != len(want) {
		t.Fatalf("%d lines, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("line %d: %.40q [%d, %d), want %.40q [%d, %d)", i, got[i].text, got[i].start, got[i].end,
				want[i].text, want[i].start, want[i].end)
		}
	}
}
