package tail

import (
	"testing"

	"github.com/logferry/logferry/sidecar/positions"
)

// Tokens grow over rotations, map to positions, and are released.
func TestTokens(t *testing.T) {
	dw := newDockerWriter(t, t.TempDir())
	dw.maxSize, dw.maxFiles = 4096, 10
	ends := map[int]int64{} // line -> offset after it in its file
	for n := range 400 {
		dw.line("stdout", numbered(n, 20))
		ends[n] = dw.size
	}
	r := startTailer(t, Config{Path: dw.path, Start: &positions.Position{File: identityOf(t, oldest(t, dw)), Offset: 0}}, nil, nil, nil)
	gs := r.finish()
	checkSeq(t, gs, 0, 20)
	gens := map[int64]bool{}
	for i, g := range gs {
		p, ok := r.tl.Position(g.Token)
		if !ok || p.Offset != ends[i] {
			t.Fatalf("line %d: Position = %+v, %v; want offset %d", i, p, ok, ends[i])
		}
		gens[g.Token>>offsetBits] = true
	}
	if len(gens) < 5 {
		t.Errorf("%d generations over %d rotations", len(gens), dw.rotations)
	}
	mid := gs[len(gs)/2].Token
	r.tl.Release(mid)
	if _, ok := r.tl.Position(gs[0].Token); ok {
		t.Error("a released token still maps")
	}
	if _, ok := r.tl.Position(mid); !ok {
		t.Error("the released-to token no longer maps")
	}
	if _, ok := r.tl.Position(0); ok {
		t.Error("token 0 maps")
	}
}

func oldest(t *testing.T, dw *dockerWriter) string {
	files, _, err := listFiles(dw.path, nil)
	if err != nil || len(files) == 0 {
		t.Fatal(err)
	}
	return files[0].path
}

// Past 2^40 bytes of one file, tokens continue in a new generation.
func TestTokenGenerationOverflow(t *testing.T) {
	saved := maxTokenOffset
	maxTokenOffset = 1000
	defer func() { maxTokenOffset = saved }()

	dw := newDockerWriter(t, t.TempDir())
	ends := map[int]int64{}
	for n := range 100 {
		dw.line("stdout", numbered(n, 20))
		ends[n] = dw.size
	}
	r := startTailer(t, Config{Path: dw.path}, nil, nil, nil)
	gs := r.finish()
	for i, g := range gs {
		if off := g.Token & offsetMask; off > 1000 {
			t.Fatalf("token offset %d over the limit", off)
		}
		if p, ok := r.tl.Position(g.Token); !ok || p.Offset != ends[i] {
			t.Fatalf("line %d: %+v %v, want %d", i, p, ok, ends[i])
		}
	}
	if gs[len(gs)-1].Token>>offsetBits < 5 {
		t.Errorf("generations: %d", gs[len(gs)-1].Token>>offsetBits)
	}
	// Resuming from a mid-file position works across generations.
	p, _ := r.tl.Position(gs[49].Token)
	r2 := startTailer(t, Config{Path: dw.path, Start: &p}, nil, nil, nil)
	checkSeq(t, r2.finish(), 50, 20)
}
