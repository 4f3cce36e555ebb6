package pipeline

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/logferry/logferry/shared/labels"
	"github.com/logferry/logferry/shared/metadata"
)

// TestGuardBoundsLineLabels: a label taken from every line with a
// distinct value makes at most MaxLabelValues values and MaxStreams
// streams; the rest ship with __overflow__, counted; nothing is dropped.
func TestGuardBoundsLineLabels(t *testing.T) {
	p, err := Parse("- regex:\n    expression: 'seq=(?P<user>\\d+)'\n- labels:\n    user:\n")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := labels.NewBuilder(labels.DefaultConfig(), "h")
	set, _ := b.Build(metadata.Container{Name: "/c"})
	for _, tt := range []struct {
		cfg         GuardConfig
		wantStreams int
	}{
		{GuardConfig{MaxLabelValues: 50, MaxStreams: 10000}, 51},
		{GuardConfig{MaxLabelValues: 1000, MaxStreams: 20}, 21},
	} {
		gs := NewGuards(tt.cfg, nil, nil)
		step := NewStep(StepConfig{Pipeline: p, Set: &set, MaxLine: 1 << 20, Guard: gs.For("endpoint"), AckFloor: -1})
		streams := map[string]int{}
		for i := range 2000 {
			err := step.Line("stdout", int64(i), fmt.Appendf(nil, "seq=%d ok", i), int64(i), func(o *Output) error {
				if !o.Keep {
					t.Fatalf("line %d dropped", i)
				}
				streams[o.Entry.Stream]++
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		if len(streams) != tt.wantStreams {
			t.Errorf("%+v: %d streams, want %d", tt.cfg, len(streams), tt.wantStreams)
		}
		over := streams[`{container_name="c", host="h", source="stdout", user="__overflow__"}`]
		if got := testutil.ToFloat64(gs.overflow.WithLabelValues("user")); int(got) != over || over != 2000-tt.wantStreams+1 {
			t.Errorf("%+v: overflow counted %v, %d entries on the overflow stream, want %d", tt.cfg, got, over, 2000-tt.wantStreams+1)
		}
	}
}

func TestGuardForgetsIdle(t *testing.T) {
	now := time.Unix(1000, 0)
	gs := NewGuards(GuardConfig{MaxLabelValues: 2}, nil, nil)
	gs.now = func() time.Time { return now }
	g := gs.For("e")
	base := []labels.Pair{{Name: "container_name", Value: "c"}}
	admit := func(v string) string {
		e := Entry{Labels: []labels.Pair{{Name: "container_name", Value: "c"}, {Name: "user", Value: v}}, ownLabels: true}
		g.admit(&e, base, func() string { return fmt.Sprint(e.Labels) }, nil, 0)
		return e.Labels[1].Value
	}
	admit("a")
	admit("b")
	if got := admit("c"); got != OverflowValue {
		t.Fatalf("third value: %q", got)
	}
	now = now.Add(guardIdle + 2*time.Minute)
	if got := admit("c"); got != "c" {
		t.Fatalf("after the others went idle: %q", got)
	}
}

// TestGuardMemo: a repeated label set is admitted from the memo only
// within guardMemoAge of capture time and only until a sweep; a value the
// Guard forgot while a memo vouched for it is admitted anew, so the bound
// counts it.
func TestGuardMemo(t *testing.T) {
	now := time.Unix(1000, 0)
	gs := NewGuards(GuardConfig{MaxLabelValues: 1, MaxStreams: 100}, nil, nil)
	gs.now = func() time.Time { return now }
	g := gs.For("e")
	base := []labels.Pair{{Name: "container_name", Value: "c"}}
	var memo guardMemo
	admit := func(v string, captured int64, m *guardMemo) string {
		e := Entry{Labels: []labels.Pair{{Name: "container_name", Value: "c"}, {Name: "user", Value: v}}, ownLabels: true}
		g.admit(&e, base, func() string { return fmt.Sprint(e.Labels) }, m, captured)
		return e.Labels[1].Value
	}
	if got := admit("a", 0, &memo); got != "a" {
		t.Fatalf("first: %q", got)
	}
	seen := g.values["user"]["a"]
	now = now.Add(10 * time.Second)
	if got := admit("a", int64(time.Second)/2, &memo); got != "a" {
		t.Fatalf("repeat: %q", got)
	}
	if g.values["user"]["a"] != seen {
		t.Errorf("a repeat within the memo's age went to the maps")
	}
	if got := admit("a", int64(2*time.Second), &memo); got != "a" || g.values["user"]["a"] == seen {
		t.Errorf("a repeat past the memo's age: %q, last seen not moved", got)
	}
	if got := admit("b", int64(2*time.Second), &memo); got != OverflowValue {
		t.Errorf("a second value past max-label-values 1: %q", got)
	}
	// b overflowed, so the memo still holds a; after a sweep that forgets
	// a (idle for the Guard), the memo must not vouch for it.
	if got := admit("a", int64(2*time.Second)+1, &memo); got != "a" {
		t.Fatalf("a again: %q", got)
	}
	now = now.Add(guardIdle + 2*time.Minute)
	var other guardMemo
	if got := admit("z", 0, &other); got != "z" { // sweeps; a is forgotten, z takes the one value
		t.Fatalf("z after the sweep: %q", got)
	}
	if got := admit("a", int64(2*time.Second)+2, &memo); got != OverflowValue {
		t.Errorf("a after a sweep forgot it, with z at the bound: %q, want %s", got, OverflowValue)
	}
}
