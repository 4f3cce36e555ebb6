// Package labels owns the one mapping from a container's metadata to its
// Loki stream labels and structured metadata, used by both capture styles so
// that a container gets the same streams whichever captured it.
package labels

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/logferry/logferry/shared/metadata"
)

// Default label names, the same as Grafana's Loki Docker driver's
// (clients/cmd/docker-driver/config.go).
const (
	LabelContainerName  = "container_name"
	LabelHost           = "host"
	LabelSource         = "source"
	LabelComposeProject = "compose_project"
	LabelComposeService = "compose_service"
	LabelSwarmStack     = "swarm_stack"
	LabelSwarmService   = "swarm_service"
)

// Structured metadata names: per-entry fields that do not make streams.
// They are stable: queries filter on them (| container_id="...").
const (
	// MetadataContainerID is the full 64-character container id.
	MetadataContainerID = "container_id"
	// MetadataImageName is the image as the container was created from it
	// ("nginx:1.27"): the name Docker's {{.ImageName}} and its gelf and
	// journald drivers (image_name, IMAGE_NAME) use.
	MetadataImageName = "image_name"
	// MetadataImageID is the full image id with its algorithm
	// ("sha256:..."), like Docker's {{.ImageFullID}}.
	MetadataImageID = "image_id"
)

// Pair is one label or structured-metadata field.
type Pair struct {
	Name, Value string
}

// Builder computes a container's Set. It is immutable after NewBuilder and
// safe for concurrent use.
//
// Labels, from lowest to highest precedence (a later source overrides an
// earlier one with the same name; this is the Loki driver's order, plus
// container_name as a default that always applies):
//
//  1. container_name: the container name without its leading '/'. The
//     Loki driver only adds it when loki-external-labels is absent; we
//     always do, because without the Loki driver's filename label (see
//     below) nothing else keeps containers apart, and Loki would merge
//     their streams and drop one of two identical lines with the same
//     timestamp as a duplicate.
//  2. loki-external-labels, expanded per container.
//  3. Container labels selected by labels, then by labels-regex, then
//     environment variables selected by env, then by env-regex, with
//     sanitized names (SanitizeLabelName). Each regex's matches apply in
//     sorted key order, so keys that sanitize to the same name resolve
//     the same way every time. Selected keys that sanitize to host or
//     source are dropped.
//  4. compose_project, compose_service, swarm_stack, swarm_service from
//     the compose and swarm labels, when set.
//  5. host: the host name given to NewBuilder, when not empty.
//  6. source (stdout or stderr) per entry, in Set.Stream only.
//
// A label whose value is empty is omitted, as Loki treats it. Values are
// made valid UTF-8. The Loki driver's filename label is not produced: it is
// the path of the driver's own json copy (/var/log/docker/<id>/json.log),
// which has no equivalent in the sidecar, so it would break "same labels
// from both styles" and make a stream per container id.
//
// Loki's limits (see MaxLabelValueBytes and the others) are kept, so that
// no stream makes Loki refuse a push: a value longer than
// MaxLabelValueBytes is cut on a UTF-8 boundary, a label whose name is
// longer than MaxLabelNameBytes (only a regex match can have one) is left
// out, and of more than MaxLabelsPerStream-1 labels (source is the last)
// the first ones in this order are kept: the default labels
// (container_name, compose_*, swarm_*, host: at most 6), then those of
// loki-external-labels in the order given, labels, env, labels-regex
// matches and env-regex matches, each in sorted key order. A label set by
// several of these keeps its value by precedence and its place by the
// first. Validate refuses configurations whose own names do not fit, so
// only containers with compose or swarm labels or many regex matches lose
// labels. Set.Cuts counts both.
//
// Last, loki-relabel-config's rules (Prometheus relabeling, as the Loki
// driver applies them once per container) rewrite these labels; source and
// structured metadata are not theirs. A rule that drops the container, or
// rules that leave no label, make a Set with Dropped: its lines are not
// shipped. Loki's limits are applied again to what the rules produce.
//
// Structured metadata: container_id, image_name, image_id (see the
// Metadata* constants), each omitted when empty or when a label has the same
// name (a user who made container_id a label keeps it as a label only).
// The Loki driver sends no structured metadata.
type Builder struct {
	cfg  *compiled
	host string
}

// NewBuilder validates cfg as Config.Validate does and returns a Builder
// that labels containers of the host named host.
func NewBuilder(cfg Config, host string) (*Builder, error) {
	c, err := compile(cfg)
	if err != nil {
		return nil, err
	}
	return &Builder{cfg: c, host: sanitizeValue(host)}, nil
}

// Build returns c's labels and structured metadata. It fails only if a
// loki-external-labels template fails to execute on c. What it cut or left
// out to keep Loki's limits is in the Set's Cuts.
func (b *Builder) Build(c metadata.Container) (Set, error) {
	var cuts Cuts
	ls := candidates(make([]candidate, 0, 8+len(b.cfg.external)))
	ls.add(LabelContainerName, strings.TrimPrefix(c.Name, "/"), rankDefault)

	if len(b.cfg.external) > 0 {
		tc := &tagContext{c: c, host: b.host}
		for _, e := range b.cfg.external {
			v, cut, err := e.value(tc)
			if err != nil {
				return Set{}, fmt.Errorf("%s: label %q: %w", OptExternalLabels, e.name, err)
			}
			ls.addCut(e.name, v, rankExternal, cut)
		}
	}

	for _, k := range b.cfg.labels {
		if v, ok := c.Labels[k]; ok {
			cuts.LabelsDropped += ls.addSelected(k, v, rankLabels)
		}
	}
	if b.cfg.labelsRe != nil {
		keys := make([]string, 0, len(c.Labels))
		for k := range c.Labels {
			if b.cfg.labelsRe.MatchString(k) {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			cuts.LabelsDropped += ls.addSelected(k, c.Labels[k], rankLabelsRegex)
		}
	}
	for _, k := range b.cfg.env {
		if v, ok := c.LookupEnv(k); ok {
			cuts.LabelsDropped += ls.addSelected(k, v, rankEnv)
		}
	}
	if b.cfg.envRe != nil {
		// In key order; of a key set twice the later entry wins, as in
		// Docker (see metadata.Container.LookupEnv). Sorting, not a lookup
		// per key, keeps a long environment from costing its square.
		var sel []Pair
		for _, kv := range c.Env {
			if k, v, ok := strings.Cut(kv, "="); ok && b.cfg.envRe.MatchString(k) {
				sel = append(sel, Pair{k, v})
			}
		}
		slices.SortStableFunc(sel, byName)
		for i, p := range sel {
			if i+1 < len(sel) && sel[i+1].Name == p.Name {
				continue
			}
			cuts.LabelsDropped += ls.addSelected(p.Name, p.Value, rankEnvRegex)
		}
	}

	ls.addIfNotEmpty(LabelComposeProject, c.ComposeProject())
	ls.addIfNotEmpty(LabelComposeService, c.ComposeService())
	ls.addIfNotEmpty(LabelSwarmStack, c.SwarmStack())
	ls.addIfNotEmpty(LabelSwarmService, c.SwarmService())
	ls.addIfNotEmpty(LabelHost, b.host)

	labels, limited := ls.resolve()
	cuts.ValuesTruncated += limited.ValuesTruncated
	cuts.LabelsDropped += limited.LabelsDropped
	if len(b.cfg.relabel) > 0 {
		var keep bool
		if labels, keep = applyRelabel(b.cfg.relabel, labels, &cuts); !keep {
			return Set{Dropped: true, Cuts: cuts}, nil
		}
	}
	return newSet(labels, structuredMetadata(c, labels), cuts), nil
}

func structuredMetadata(c metadata.Container, labels []Pair) []Pair {
	sm := make([]Pair, 0, 3)
	// In name order, so the slice is sorted.
	for _, p := range [...]Pair{
		{MetadataContainerID, c.ID},
		{MetadataImageID, c.ImageID},
		{MetadataImageName, c.ImageName},
	} {
		if p.Value == "" || hasLabel(labels, p.Name) {
			continue
		}
		p.Value = sanitizeValue(p.Value)
		sm = append(sm, p)
	}
	return sm
}

func hasLabel(sorted []Pair, name string) bool {
	_, found := slices.BinarySearchFunc(sorted, name, func(p Pair, n string) int { return cmp.Compare(p.Name, n) })
	return found
}

func byName(a, b Pair) int { return cmp.Compare(a.Name, b.Name) }

// Ranks order what Build keeps when a container has more labels than Loki
// takes; see Builder.
const (
	rankDefault int32 = iota
	rankExternal
	rankLabels
	rankEnv
	rankLabelsRegex
	rankEnvRegex
)

// candidate is a label on its way into a Set.
type candidate struct {
	Pair
	rank int32
	seq  int32 // order of addition: precedence, and order within a rank
	cut  bool  // a template's output was stopped at the value limit
}

// candidates are the labels of a Build in order of precedence: of two
// with one name the later one's value wins.
type candidates []candidate

func (cs *candidates) addCut(name, value string, rank int32, cut bool) {
	*cs = append(*cs, candidate{Pair: Pair{name, value}, rank: rank, seq: int32(len(*cs)), cut: cut})
}

func (cs *candidates) add(name, value string, rank int32) { cs.addCut(name, value, rank, false) }

func (cs *candidates) addIfNotEmpty(name, value string) {
	if value != "" {
		cs.add(name, value, rankDefault)
	}
}

// addSelected adds a label taken from a container label or environment
// variable key. It returns 1 for a key whose sanitized name is longer than
// Loki takes, which is left out, and 0 otherwise.
func (cs *candidates) addSelected(key, value string, rank int32) int {
	name := SanitizeLabelName(key)
	switch {
	case name == "" || name == LabelHost || name == LabelSource:
	case len(name) > MaxLabelNameBytes:
		return 1
	default:
		cs.add(name, value, rank)
	}
	return 0
}

// resolve returns the labels, sorted by name: for each name the value
// added last, empty values omitted, at most MaxLabelsPerStream-1 of them
// (see Builder for which), each value bounded by boundValue. It reorders
// cs.
func (cs candidates) resolve() ([]Pair, Cuts) {
	var cuts Cuts
	// By name, and within a name in order of addition: the last of a run
	// has the value, the best rank and first addition are the run's.
	slices.SortFunc(cs, func(a, b candidate) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.seq, b.seq))
	})
	kept := cs[:0]
	for i := 0; i < len(cs); {
		c := cs[i]
		for i++; i < len(cs) && cs[i].Name == c.Name; i++ {
			c.Value, c.cut = cs[i].Value, cs[i].cut
			c.rank = min(c.rank, cs[i].rank)
		}
		if c.Value != "" {
			kept = append(kept, c)
		}
	}
	if room := MaxLabelsPerStream - 1; len(kept) > room {
		slices.SortFunc(kept, func(a, b candidate) int {
			return cmp.Or(cmp.Compare(a.rank, b.rank), cmp.Compare(a.seq, b.seq))
		})
		cuts.LabelsDropped = len(kept) - room
		kept = kept[:room]
		slices.SortFunc(kept, func(a, b candidate) int { return cmp.Compare(a.Name, b.Name) })
	}
	labels := make([]Pair, len(kept))
	for i, c := range kept {
		v, cut := boundValue(c.Value)
		if cut || c.cut {
			cuts.ValuesTruncated++
		}
		labels[i] = Pair{c.Name, v}
	}
	return labels, cuts
}
