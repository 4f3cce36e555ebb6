package labels

import (
	"errors"
	"strings"
	"testing"

	"github.com/logferry/logferry/shared/metadata"
)

func TestRelabel(t *testing.T) {
	swarm := metadata.Container{
		ID: strings.Repeat("ab", 32), Name: "/web.1",
		Labels: map[string]string{metadata.LabelSwarmStack: "shop", metadata.LabelSwarmService: "shop_web", "team": "a"},
	}
	tests := []struct {
		name  string
		rules string
		want  string // the Set's String(); "dropped" for a dropped container
		cut   Cuts
	}{
		{"empty is no rules", "  \n", `{container_name="web.1", host="h1", swarm_service="shop_web", swarm_stack="shop"}`, Cuts{}},
		{"rename swarm labels, drop host", `
- action: labelmap
  regex: swarm_stack
  replacement: namespace
- action: labelmap
  regex: swarm_(service)
  replacement: $1
- action: labeldrop
  regex: swarm_stack|swarm_service|host
`, `{container_name="web.1", namespace="shop", service="shop_web"}`, Cuts{}},
		{"replace from a label", `
- source_labels: [container_name]
  regex: '([^.]+)\..*'
  target_label: task
`, `{container_name="web.1", host="h1", swarm_service="shop_web", swarm_stack="shop", task="web"}`, Cuts{}},
		{"drop by name", `
- source_labels: [container_name]
  regex: web\..*
  action: drop
`, "dropped", Cuts{}},
		{"keep others only", `
- source_labels: [swarm_stack]
  regex: other
  action: keep
`, "dropped", Cuts{}},
		{"labelkeep nothing", `
- action: labelkeep
  regex: nothing
`, "dropped", Cuts{}},
		{"lowercase and hashmod", `
- source_labels: [swarm_stack]
  target_label: stack_upper
  action: uppercase
- source_labels: [container_name]
  modulus: 4
  target_label: shard
  action: hashmod
- action: labeldrop
  regex: swarm_.*|host|container_name
`, `{shard="0", stack_upper="SHOP"}`, Cuts{}},
		{"a value over Loki's limit is cut", `
- target_label: long
  replacement: ` + strings.Repeat("x", MaxLabelValueBytes+10) + `
`, `{container_name="web.1", host="h1", long="` + strings.Repeat("x", MaxLabelValueBytes) + `", swarm_service="shop_web", swarm_stack="shop"}`, Cuts{ValuesTruncated: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := NewBuilder(Config{RelabelConfig: tt.rules}, "h1")
			if err != nil {
				t.Fatal(err)
			}
			set, err := b.Build(swarm)
			if err != nil {
				t.Fatal(err)
			}
			got := set.String()
			if set.Dropped {
				got = "dropped"
			}
			if got != tt.want || set.Cuts != tt.cut {
				t.Fatalf("got %s %+v\nwant %s %+v", got, set.Cuts, tt.want, tt.cut)
			}
		})
	}
}

func TestRelabelErrorsNameTheRule(t *testing.T) {
	for _, tt := range []struct{ rules, want string }{
		{"- action: explode", "rule 1"},
		{"- action: keep\n- action: replace\n  regex: '('", "rule 2"},
		{"- action: labelmap\n  regex: a\n  replacement: '1bad'", ""},
		{"not: a list", "YAML list"},
		{"- action: hashmod\n  target_label: x", "rule 1"},
		{strings.Repeat("- action: keep\n  source_labels: [a]\n  regex: a\n", maxRelabelRules+1), "rules"},
	} {
		_, err := NewBuilder(Config{RelabelConfig: tt.rules}, "h")
		if tt.want == "" {
			continue // accepted or refused; only no panic is asked of it
		}
		if err == nil || !errors.Is(err, ErrInvalidOption) || !strings.HasPrefix(err.Error(), OptRelabelConfig+":") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want one naming %s and %q", tt.rules, err, OptRelabelConfig, tt.want)
		}
	}
}

func TestRelabelCannotAddSource(t *testing.T) {
	b, err := NewBuilder(Config{RelabelConfig: "- target_label: source\n  replacement: fake\n- target_label: __hidden\n  replacement: x"}, "h")
	if err != nil {
		t.Fatal(err)
	}
	set, err := b.Build(metadata.Container{Name: "/c"})
	if err != nil {
		t.Fatal(err)
	}
	if got := set.Stream(SourceStdout); got != `{container_name="c", host="h", source="stdout"}` {
		t.Fatalf("stream %s", got)
	}
	if set.Cuts.LabelsDropped != 2 {
		t.Fatalf("cuts %+v, want 2 labels dropped", set.Cuts)
	}
}

func FuzzRelabelConfig(f *testing.F) {
	f.Add("- action: labelmap\n  regex: swarm_(.*)\n")
	f.Add("- action: drop\n  source_labels: [container_name]\n  regex: x\n")
	f.Add("- action: hashmod\n  modulus: 3\n  target_label: s\n  source_labels: [host]\n")
	f.Fuzz(func(t *testing.T, rules string) {
		b, err := NewBuilder(Config{RelabelConfig: rules}, "h")
		if err != nil {
			return
		}
		set, err := b.Build(metadata.Container{Name: "/c", Labels: map[string]string{metadata.LabelComposeProject: "p"}})
		if err != nil || set.Dropped {
			return
		}
		if len(set.Labels) == 0 || len(set.Labels) > MaxLabelsPerStream-1 {
			t.Fatalf("%d labels", len(set.Labels))
		}
		for _, p := range set.Labels {
			if p.Name == LabelSource || len(p.Value) > MaxLabelValueBytes || p.Value == "" {
				t.Fatalf("label %q=%q", p.Name, p.Value)
			}
		}
	})
}
