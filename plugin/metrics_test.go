package plugin

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestReusedNameKeepsItsSeries: a draining stream ends after a new container
// took its name; the new stream's series stay.
func TestReusedNameKeepsItsSeries(t *testing.T) {
	m := NewMetrics(nil)
	old := m.forStream("web")
	old.add(&lineCounts{entries: [2]uint64{5, 0}})
	next := m.forStream("web")
	old.forget()
	old.forget() // discard and finish may both run: once is once
	next.add(&lineCounts{entries: [2]uint64{1, 0}})
	if got := testutil.ToFloat64(m.entries.WithLabelValues("web", "stdout")); got != 6 {
		t.Fatalf("web stdout = %v, want 6: the new stream's series were deleted", got)
	}
	next.forget()
	if got := testutil.CollectAndCount(m.entries) + testutil.CollectAndCount(m.bytes); got != 0 {
		t.Fatalf("%d series left after both forgot", got)
	}
}

// TestCountsSettleWithEachRead: the per-line counters are added once per
// FIFO read; by the time the lines are in Loki, every one is counted, by
// source, with its bytes.
func TestCountsSettleWithEachRead(t *testing.T) {
	e := newEnv(t, t.TempDir(), nil)
	fifo, w := e.start(t, "c1")
	defer w.Close()
	want := map[string][2]float64{} // source: entries, bytes
	long := bytes.Repeat([]byte("L"), 40<<10)
	for i := 0; i < 60; i++ {
		src := "stdout"
		if i%3 == 0 {
			src = "stderr"
		}
		line := []byte(fmt.Sprintf("line %d", i))
		if i == 7 {
			line = append(line, long...) // three frames, one entry
		}
		writeLine(t, w, src, int64(1700000000000000000+i), line, fmt.Sprint("p", i))
		c := want[src]
		want[src] = [2]float64{c[0] + 1, c[1] + float64(len(line))}
	}
	waitFor(t, "60 lines in the sink", func() bool { return e.sink.count() == 60 })
	for _, src := range []string{"stdout", "stderr"} {
		entries := testutil.ToFloat64(e.driver.m.entries.WithLabelValues("c1", src))
		b := testutil.ToFloat64(e.driver.m.bytes.WithLabelValues("c1", src))
		if entries != want[src][0] || b != want[src][1] {
			t.Errorf("%s: %v entries of %v bytes counted, want %v of %v", src, entries, b, want[src][0], want[src][1])
		}
	}
	if got := testCounter(e.reg, "logferry_plugin_frames_read_total"); got != 62 {
		t.Errorf("frames read = %v, want 62 (59 lines of one frame, one of three)", got)
	}
	e.finish(t, fifo, w)
}
