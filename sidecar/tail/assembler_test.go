package tail

import (
	"testing"

	"github.com/logferry/logferry/sidecar/positions"
)

// Lines over 16 KiB arrive in chunks; chunks of stdout and stderr interleave;
// a rotation can fall between chunks.
func TestSplitLines(t *testing.T) {
	long := func(n int) string { return numbered(n, 40000) }
	t.Run("interleaved", func(t *testing.T) {
		dw := newDockerWriter(t, t.TempDir())
		dw.line("stdout", numbered(0, 0))
		text := long(1)
		dw.entry("stdout", text[:dockerChunk], nil)
		dw.line("stderr", "an error")
		dw.entry("stdout", text[dockerChunk:2*dockerChunk], nil)
		dw.entry("stdout", text[2*dockerChunk:]+"\n", nil)
		dw.line("stdout", numbered(2, 0))

		r := startTailer(t, Config{Path: dw.path}, nil, nil, nil)
		gs := r.finish()
		if len(gs) != 4 || gs[1].Text != "an error" || gs[2].Text != text || gs[3].Text != numbered(2, 0) {
			t.Fatalf("lines: %d %+v", len(gs), gs)
		}
		// The stderr line's token must not skip the stdout line begun
		// before it: it points at that line's first chunk.
		p0, _ := r.tl.Position(gs[0].Token)
		p1, _ := r.tl.Position(gs[1].Token)
		if p1.Offset != p0.Offset {
			t.Errorf("stderr token at %d, want the stdout line's start %d", p1.Offset, p0.Offset)
		}
		// Resuming there delivers the stderr line again and the long line
		// whole.
		r2 := startTailer(t, Config{Path: dw.path, Start: &p1}, nil, nil, nil)
		gs2 := r2.finish()
		if len(gs2) != 3 || gs2[0].Text != "an error" || gs2[1].Text != text {
			t.Fatalf("resumed: %d lines", len(gs2))
		}
	})
	t.Run("across a rotation", func(t *testing.T) {
		dw := newDockerWriter(t, t.TempDir())
		dw.maxSize, dw.maxFiles = 20000, 3
		dw.line("stdout", numbered(0, 0))
		text := long(1)
		rot := dw.rotations
		dw.line("stdout", text) // chunks 1, 2 in one file, 3 in the next
		if dw.rotations != rot+1 {
			t.Fatalf("rotations: %d", dw.rotations-rot)
		}
		dw.line("stdout", numbered(2, 0))
		m := NewMetrics(nil)
		r := startTailer(t, Config{Path: dw.path, Start: &positions.Position{File: identityOf(t, dw.path+".1"), Offset: 0}}, nil, m, nil)
		gs := r.finish()
		if len(gs) != 3 || gs[1].Text != text || gs[1].Partial {
			t.Fatalf("lines: %d", len(gs))
		}
		if counter(m.rotations) != 1 || counter(m.skipped.WithLabelValues(reasonTorn)) != 0 {
			t.Errorf("rotations %v, torn %v", counter(m.rotations), counter(m.skipped.WithLabelValues(reasonTorn)))
		}
		// The long line's token is in the new file, after its last chunk.
		p, _ := r.tl.Position(gs[1].Token)
		if p.File != identityOf(t, dw.path) {
			t.Errorf("token of the joined line is not in the file of its last chunk")
		}
	})
	t.Run("cut at MaxLineSize", func(t *testing.T) {
		dw := newDockerWriter(t, t.TempDir())
		dw.line("stdout", long(1))
		m := NewMetrics(nil)
		r := startTailer(t, Config{Path: dw.path, MaxLineSize: 20000}, nil, m, nil)
		gs := r.finish()
		if len(gs) != 1 || !gs[0].Truncated || len(gs[0].Text) != 20000 || counter(m.cut) != 1 {
			t.Fatalf("lines: %d", len(gs))
		}
	})
	t.Run("container ends mid-line", func(t *testing.T) {
		dw := newDockerWriter(t, t.TempDir())
		text := long(1)
		dw.entry("stdout", text[:dockerChunk], nil)
		r := startTailer(t, Config{Path: dw.path}, nil, nil, nil)
		gs := r.finish()
		if len(gs) != 1 || !gs[0].Partial || gs[0].Text != text[:dockerChunk] {
			t.Fatalf("lines: %+v", gs)
		}
	})
}
