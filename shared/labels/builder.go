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
// loki-external-labels template fails to execute on c.
func (b *Builder) Build(c metadata.Container) (Set, error) {
	ls := pairs(make([]Pair, 0, 8+len(b.cfg.external)))
	ls.set(LabelContainerName, strings.TrimPrefix(c.Name, "/"))

	if len(b.cfg.external) > 0 {
		tc := &tagContext{c: c, host: b.host}
		for _, e := range b.cfg.external {
			v, err := e.value(tc)
			if err != nil {
				return Set{}, fmt.Errorf("%s: label %q: %w", OptExternalLabels, e.name, err)
			}
			ls.set(e.name, v)
		}
	}

	for _, k := range b.cfg.labels {
		if v, ok := c.Labels[k]; ok {
			ls.setSelected(k, v)
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
			ls.setSelected(k, c.Labels[k])
		}
	}
	for _, k := range b.cfg.env {
		if v, ok := c.LookupEnv(k); ok {
			ls.setSelected(k, v)
		}
	}
	if b.cfg.envRe != nil {
		var keys []string
		for _, kv := range c.Env {
			if k, _, ok := strings.Cut(kv, "="); ok && b.cfg.envRe.MatchString(k) && !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			v, _ := c.LookupEnv(k)
			ls.setSelected(k, v)
		}
	}

	ls.setIfNotEmpty(LabelComposeProject, c.ComposeProject())
	ls.setIfNotEmpty(LabelComposeService, c.ComposeService())
	ls.setIfNotEmpty(LabelSwarmStack, c.SwarmStack())
	ls.setIfNotEmpty(LabelSwarmService, c.SwarmService())
	ls.setIfNotEmpty(LabelHost, b.host)

	labels := slices.DeleteFunc([]Pair(ls), func(p Pair) bool { return p.Value == "" })
	for i := range labels {
		labels[i].Value = sanitizeValue(labels[i].Value)
	}
	slices.SortFunc(labels, func(a, b Pair) int { return cmp.Compare(a.Name, b.Name) })

	return newSet(labels, structuredMetadata(c, labels)), nil
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

// pairs is a small label set under construction; a handful of labels makes
// a linear search cheaper than a map.
type pairs []Pair

func (ps *pairs) set(name, value string) {
	for i := range *ps {
		if (*ps)[i].Name == name {
			(*ps)[i].Value = value
			return
		}
	}
	*ps = append(*ps, Pair{name, value})
}

func (ps *pairs) setIfNotEmpty(name, value string) {
	if value != "" {
		ps.set(name, value)
	}
}

// setSelected sets a label taken from a container label or environment
// variable key.
func (ps *pairs) setSelected(key, value string) {
	name := SanitizeLabelName(key)
	if name == "" || name == LabelHost || name == LabelSource {
		return
	}
	ps.set(name, value)
}
