package pipeline

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/logferry/logferry/shared/labels"
	"github.com/logferry/logferry/shared/metadata"
)

// TestStepFlusherHandsOnAtMaxWait: an entry that keeps growing is handed
// on max_wait_time after its last line, and an entry opened after the
// flusher went back to sleep without a deadline is handed on too: the
// flusher is woken only when an entry opens, never left asleep with one
// open.
func TestStepFlusherHandsOnAtMaxWait(t *testing.T) {
	ml, err := NewMultilineConfig(`^\S`, 500*time.Millisecond, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := labels.NewBuilder(labels.DefaultConfig(), "h")
	set, _ := b.Build(metadata.Container{Name: "/c"})
	s := NewStep(StepConfig{Multiline: ml, Set: &set, MaxLine: 1 << 20, AckFloor: -1})
	got := make(chan string, 16)
	out := func(o *Output) error {
		got <- o.Entry.Line
		return nil
	}
	stop := s.StartFlusher(out)
	defer stop()
	for round := range 3 {
		if err := s.Line("stdout", 1, []byte("head"), int64(round*10+1), out); err != nil {
			t.Fatal(err)
		}
		for i := range 4 { // each within max_wait of the one before
			time.Sleep(10 * time.Millisecond)
			if err := s.Line("stdout", 1, []byte("  cont"), int64(round*10+2+i), out); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case l := <-got:
			if want := "head" + strings.Repeat("\n  cont", 4); l != want {
				t.Fatalf("round %d: entry %q, want %q", round, l, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: the open entry was never handed on", round)
		}
	}
}

// TestStepMetadataOwned: entries whose metadata a stage set each keep their
// own pairs, across slab boundaries, after later lines reuse the step; the
// container's pairs stay shared while no stage changed them, and a stage
// that overrides one gets an entry that carries all of them itself.
func TestStepMetadataOwned(t *testing.T) {
	p, err := Parse("- logfmt: {mapping: {seq: , lvl: , image_name: }}\n- structured_metadata: {seq: , lvl: , image_name: }")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := labels.NewBuilder(labels.DefaultConfig(), "h")
	set, _ := b.Build(metadata.Container{Name: "/c", ID: strings.Repeat("ab", 32), ImageName: "img:1"})
	s := NewStep(StepConfig{Pipeline: p, Set: &set, MaxLine: 1 << 20, AckFloor: -1})
	meta := s.meta
	if len(meta) != 2 {
		t.Fatalf("container metadata %v, want container_id and image_name", meta)
	}
	cid := "container_id=" + strings.Repeat("ab", 32)
	var kept [][]string
	var shares []bool
	out := func(o *Output) error {
		var m []string
		for _, p := range o.Entry.AllMetadata(nil) {
			m = append(m, p.Name+"="+p.Value)
		}
		kept = append(kept, m)
		shares = append(shares, len(o.Entry.SharedMetadata) > 0 && &o.Entry.SharedMetadata[0] == &meta[0])
		return nil
	}
	const n = 3*metaSlabPairs + 7
	for i := range n {
		line := fmt.Sprintf("seq=%d lvl=l%d", i, i%5)
		switch i % 4 {
		case 2:
			line = fmt.Sprintf("seq=%d", i) // one pair: the slab is cut unevenly
		case 3:
			line = fmt.Sprintf("seq=%d image_name=other", i) // overrides the container's
		}
		if err := s.Line("stdout", int64(i), []byte(line), int64(i), out); err != nil {
			t.Fatal(err)
		}
	}
	for i, m := range kept {
		want := fmt.Sprintf("[%s image_name=img:1 lvl=l%d seq=%d]", cid, i%5, i)
		shared := true
		switch i % 4 {
		case 2:
			want = fmt.Sprintf("[%s image_name=img:1 seq=%d]", cid, i)
		case 3:
			want = fmt.Sprintf("[%s image_name=other seq=%d]", cid, i)
			shared = false
		}
		if got := fmt.Sprint(m); got != want {
			t.Fatalf("entry %d: metadata %s, want %s", i, got, want)
		}
		if shares[i] != shared {
			t.Fatalf("entry %d: shares the container's metadata %v, want %v", i, shares[i], shared)
		}
	}
}
