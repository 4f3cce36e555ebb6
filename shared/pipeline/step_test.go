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
// own pairs, across slab boundaries, after later lines reuse the step.
func TestStepMetadataOwned(t *testing.T) {
	p, err := Parse("- logfmt: {mapping: {seq: , lvl: }}\n- structured_metadata: {seq: , lvl: }")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := labels.NewBuilder(labels.DefaultConfig(), "h")
	set, _ := b.Build(metadata.Container{Name: "/c"})
	s := NewStep(StepConfig{Pipeline: p, Set: &set, MaxLine: 1 << 20, AckFloor: -1})
	var kept [][]string
	out := func(o *Output) error {
		var m []string
		for _, p := range o.Entry.Metadata {
			m = append(m, p.Name+"="+p.Value)
		}
		kept = append(kept, m)
		return nil
	}
	const n = 3*metaSlabPairs + 7
	for i := range n {
		line := fmt.Sprintf("seq=%d lvl=l%d", i, i%5)
		if i%3 == 2 {
			line = fmt.Sprintf("seq=%d", i) // one pair: the slab is cut unevenly
		}
		if err := s.Line("stdout", int64(i), []byte(line), int64(i), out); err != nil {
			t.Fatal(err)
		}
	}
	for i, m := range kept {
		want := fmt.Sprintf("[lvl=l%d seq=%d]", i%5, i)
		if i%3 == 2 {
			want = fmt.Sprintf("[seq=%d]", i)
		}
		if got := fmt.Sprint(m); got != want {
			t.Fatalf("entry %d: metadata %s, want %s", i, got, want)
		}
	}
}
