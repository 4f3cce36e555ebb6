package tail

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// heldLive reports whether the newest file pinned is the one the live path
// names now.
func (p *pinSet) heldLive() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	fi, err := os.Lstat(p.files.path)
	return err == nil && len(p.pins) > 0 && sameFile(fi, p.pins[len(p.pins)-1])
}

// A consumer that blocks (Loki's queue is full) while the log rotates more
// often than max-file allows: the rotated files are held open, and every
// line arrives once it reads on. HoldRotated, called while it waits, holds
// them (and fanotify, when this process may use it). Or, with nothing
// calling HoldRotated and without fanotify, the pinner does: the Watcher's
// events wake it, whatever Run is blocked on, and it holds each new file
// before the next rotation could delete it.
func TestRotationWhileBlockedHoldsFiles(t *testing.T) {
	for _, pinner := range []bool{false, true} {
		for _, compress := range []bool{false, true} {
			name := fmt.Sprint("compress=", compress)
			if pinner {
				name = "pinner alone/" + name
			}
			t.Run(name, func(t *testing.T) {
				m := NewMetrics(nil)
				wc := WatcherConfig{}
				if pinner {
					wc.Fanotify = FanotifyOff
				}
				w := startWatcher(t, wc, m)
				dw := newDockerWriter(t, t.TempDir())
				dw.maxSize, dw.maxFiles, dw.compress = 4096, 3, compress
				gate := make(chan struct{})
				r := startTailer(t, Config{Path: dw.path}, w, m, gate)
				r.waitIdle(0)
				n := 0
				dw.line("stdout", numbered(n, 20))
				n++
				waitFor(t, "the tailer to block", func() bool { return r.entered.Load() == 1 })
				for rot := dw.rotations; dw.rotations < rot+10; {
					before := dw.rotations
					dw.line("stdout", numbered(n, 20))
					n++
					switch {
					case dw.rotations == before:
					case pinner:
						waitFor(t, "the pinner to hold the new live file", r.tl.pins.heldLive)
					default:
						r.hold()
					}
				}
				close(gate)
				checkSeq(t, r.expect(n), 0, 20)
				if got := counter(m.pinLimit); got != 0 {
					t.Errorf("pin limit reached %v times", got)
				}
			})
		}
	}
}

// The Watcher's hook only signals: it returns at once however often it is
// called while the pinner is not running, and the signals coalesce.
func TestPinSetSignalNeverBlocks(t *testing.T) {
	m := NewMetrics(nil)
	p := newPinSet(newLogFiles(filepath.Join(t.TempDir(), "x-json.log"), m, nil), 1<<20, m, nil)
	for range 10 {
		p.signal()
	}
	if len(p.wake) != 1 {
		t.Errorf("%d signals pending, want 1", len(p.wake))
	}
}
