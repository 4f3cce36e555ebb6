package tail

import (
	"testing"
	"time"
)

// A writer rotating faster than the consumer reads (max-file=3, 64 KiB
// files, one every 10 ms or so, as dockerd rotates 1 MiB files at full
// speed every 50 ms; a consumer that stalls now and then): holding rotated
// files open loses no line.
func TestFastRotationSlowConsumer(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test")
	}
	m := NewMetrics(nil)
	w := startWatcher(t, WatcherConfig{}, m)
	dw := newDockerWriter(t, t.TempDir())
	dw.maxSize, dw.maxFiles = 64<<10, 3
	r := startTailer(t, Config{Path: dw.path, FromOldest: true}, w, m, nil)
	const n = 60000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			dw.line("stdout", numbered(i, 100))
			if i%40 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	got := 0
	deadline := time.After(2 * time.Minute)
	for got < n {
		select {
		case l := <-r.lines:
			if want := numbered(got, 100); l.Text != want {
				t.Fatalf("line %d: got %.20q, want %.20q (rotations %d)", got, l.Text, want, dw.rotations)
			}
			got++
			if got%500 == 0 {
				time.Sleep(2 * time.Millisecond) // a consumer that stalls
			}
		case <-deadline:
			t.Fatalf("got %d of %d lines", got, n)
		}
	}
	<-done
	t.Logf("%d lines, %d rotations", got, dw.rotations)
}
