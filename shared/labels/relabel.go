package labels

import (
	"fmt"
	"slices"
	"strings"

	"github.com/prometheus/common/model"
	promlabels "github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"go.yaml.in/yaml/v3"
)

// OptRelabelConfig is the Loki driver's loki-relabel-config log-opt: a YAML
// list of Prometheus relabel rules applied once per container to its label
// set (not to source, which is per entry, and not to structured metadata).
const OptRelabelConfig = "loki-relabel-config"

// Bounds of a relabel configuration, which an image author may give with
// label overrides: the YAML text and the number of rules.
const (
	maxRelabelBytes = 64 << 10
	maxRelabelRules = 64
)

// parseRelabel reads loki-relabel-config. Empty (or only whitespace) is no
// rules, as the Loki driver accepts it. The rules are Prometheus' own
// (github.com/prometheus/prometheus/model/relabel), with its defaults
// (action replace, regex (.*), separator ;, replacement $1) and its checks;
// label names must be Loki's (legacy Prometheus names: [a-zA-Z_][a-zA-Z0-9_]*).
// An error names the option and the rule's position.
func parseRelabel(text string) ([]*relabel.Config, error) {
	return ParseRelabel(OptRelabelConfig, text)
}

// ParseRelabel is parseRelabel for another option, named key in errors
// (the sidecar's container selection rules).
func ParseRelabel(key, text string) ([]*relabel.Config, error) {
	if strings.TrimSpace(text) == "" {
		return nil, nil
	}
	if len(text) > maxRelabelBytes {
		return nil, overLimit(key, "%d bytes, more than %d", len(text), maxRelabelBytes)
	}
	var nodes []yaml.Node
	if err := yaml.Unmarshal([]byte(text), &nodes); err != nil {
		return nil, fmt.Errorf("%s: %w: want a YAML list of relabel rules: %v", key, ErrInvalidOption, err)
	}
	if len(nodes) > maxRelabelRules {
		return nil, overLimit(key, "%d rules, more than %d", len(nodes), maxRelabelRules)
	}
	rules := make([]*relabel.Config, 0, len(nodes))
	for i := range nodes {
		r := &relabel.Config{}
		if err := nodes[i].Decode(r); err != nil {
			return nil, fmt.Errorf("%s: rule %d (line %d): %w: %v", key, i+1, nodes[i].Line, ErrInvalidOption, err)
		}
		r.NameValidationScheme = model.LegacyValidation
		if err := r.Validate(model.LegacyValidation); err != nil {
			return nil, fmt.Errorf("%s: rule %d (line %d, action %s): %w: %w", key, i+1, nodes[i].Line, r.Action, ErrInvalidOption, err)
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// applyRelabel runs rules over the sorted labels. keep is false when a rule
// drops the container (keep, drop, keepequal, dropequal) or no label is
// left. The result is sorted and within Loki's limits: invalid names and
// labels past MaxLabelsPerStream-1 (in name order) are left out, long
// values cut, both counted in cuts.
func applyRelabel(rules []*relabel.Config, ls []Pair, cuts *Cuts) (out []Pair, keep bool) {
	b := promlabels.NewBuilder(promlabels.EmptyLabels())
	for _, p := range ls {
		b.Set(p.Name, p.Value)
	}
	if !relabel.ProcessBuilder(b, rules...) {
		return nil, false
	}
	res := b.Labels()
	out = make([]Pair, 0, res.Len())
	res.Range(func(l promlabels.Label) {
		if l.Value == "" {
			return
		}
		if l.Name == LabelSource || strings.HasPrefix(l.Name, "__") || len(l.Name) > MaxLabelNameBytes ||
			!model.LegacyValidation.IsValidLabelName(l.Name) {
			cuts.LabelsDropped++
			return
		}
		v, cut := boundValue(l.Value)
		if cut {
			cuts.ValuesTruncated++
		}
		out = append(out, Pair{Name: l.Name, Value: v})
	})
	slices.SortFunc(out, byName)
	if n := MaxLabelsPerStream - 1; len(out) > n {
		cuts.LabelsDropped += len(out) - n
		out = out[:n]
	}
	return out, len(out) > 0
}
