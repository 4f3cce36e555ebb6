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
		g.admit(&e, base, func() string { return fmt.Sprint(e.Labels) })
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
