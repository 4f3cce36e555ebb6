package plugin

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Garbage between frames, a frame that claims to be huge and a torn frame
// at the end cost only themselves: every good line around them arrives,
// and each bad spot is counted.
func TestCorruptFramesAreSkippedAndCounted(t *testing.T) {
	e := newEnv(t, t.TempDir(), nil)
	fifo, w := e.start(t, "c1")
	const n = 300
	for i := range n {
		writeLine(t, w, "stdout", int64(1700000000000000000+i), fmt.Appendf(nil, "line %d", i), "")
		switch i {
		case 100: // bytes that are no frame at all
			if _, err := w.Write([]byte("\x00\x00\x00\x05garbage that is not a frame")); err != nil {
				t.Fatal(err)
			}
		case 200: // a length far over the frame cap
			var huge [4]byte
			binary.BigEndian.PutUint32(huge[:], 1<<30)
			if _, err := w.Write(huge[:]); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A frame cut short by the daemon's end closing.
	if _, err := w.Write([]byte{0, 0, 0, 100, 0x0a, 0x06}); err != nil {
		t.Fatal(err)
	}
	e.finish(t, fifo, w)

	stdout := `{container_name="c1", host="testhost", source="stdout"}`
	got := e.sink.lines[stdout]
	if len(got) != n {
		t.Fatalf("Loki got %d lines, want %d", len(got), n)
	}
	for i, l := range got {
		if want := fmt.Sprintf("line %d", i); l != want {
			t.Fatalf("line %d is %q, want %q", i, l, want)
		}
	}
	if c := testutil.ToFloat64(e.driver.m.corrupt); c != 3 {
		t.Fatalf("%v corrupt frames counted, want 3 (garbage, oversized, torn)", c)
	}
}
