package sidecar

import (
	"fmt"
	"path"
	"slices"
	"strings"

	promlabels "github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"

	"github.com/logferry/logferry/shared/labels"
	"github.com/logferry/logferry/sidecar/engine"
)

// EnableLabel on a container with the value false keeps the sidecar from
// shipping it, whatever the selection says.
const EnableLabel = LabelPrefix + "enable"

// Why a container is not selected: the reason label of
// logferry_sidecar_containers_excluded and the containers page.
const (
	ExcludedEnable       = "enable_false"      // logferry.enable=false
	ExcludedByLabel      = "exclude_labels"    // matches exclude-labels
	ExcludedByName       = "exclude_names"     // matches exclude-names
	ExcludedByImage      = "exclude_images"    // matches exclude-images
	ExcludedNoLabel      = "include_labels"    // matches none of include-labels
	ExcludedNoName       = "include_names"     // matches none of include-names
	ExcludedNoImage      = "include_images"    // matches none of include-images
	ExcludedBySelRelabel = "selection_relabel" // dropped by selection-relabel-config
)

// Selection is which containers the sidecar ships, from the operator's
// settings: include and exclude lists by label (key or key=value), by name
// and by image (path.Match globs), and relabel rules over the container's
// metadata as Promtail's docker_sd names it. A container is shipped unless
// it has logferry.enable=false, matches an exclude list, misses a
// non-empty include list, or the rules drop it (in that order; the first
// reason is reported). The zero Selection ships everything.
type Selection struct {
	IncludeLabels, ExcludeLabels []string
	IncludeNames, ExcludeNames   []string
	IncludeImages, ExcludeImages []string
	Relabel                      []*relabel.Config
}

// Selection keys and the field each sets; the relabel key takes YAML.
const selectionRelabelKey = "selection-relabel-config"

var selectionKeys = []string{"include-labels", "exclude-labels", "include-names", "exclude-names",
	"include-images", "exclude-images", selectionRelabelKey}

// parseSelection reads the selection keys of values; errors name the key.
func parseSelection(values map[string]string) (Selection, error) {
	var s Selection
	lists := map[string]*[]string{
		"include-labels": &s.IncludeLabels, "exclude-labels": &s.ExcludeLabels,
		"include-names": &s.IncludeNames, "exclude-names": &s.ExcludeNames,
		"include-images": &s.IncludeImages, "exclude-images": &s.ExcludeImages,
	}
	for key, field := range lists {
		for _, item := range strings.Split(values[key], ",") {
			if item = strings.TrimSpace(item); item == "" {
				continue
			}
			pattern := item
			if strings.HasSuffix(key, "-labels") {
				k, _, _ := strings.Cut(item, "=")
				if strings.TrimSpace(k) == "" {
					return s, fmt.Errorf("%s: %w: %q has no label key", key, ErrConfig, item)
				}
				pattern = ""
			}
			if _, err := path.Match(pattern, ""); err != nil {
				return s, fmt.Errorf("%s: %w: %q: %v", key, ErrConfig, item, err)
			}
			*field = append(*field, item)
		}
	}
	rules, err := labels.ParseRelabel(selectionRelabelKey, values[selectionRelabelKey])
	if err != nil {
		return s, fmt.Errorf("%w (%w)", err, ErrConfig)
	}
	s.Relabel = rules
	return s, nil
}

// Reason returns why c is not shipped, or "" when it is.
func (s Selection) Reason(c engine.Container) string {
	if strings.EqualFold(strings.TrimSpace(c.Labels[EnableLabel]), "false") {
		return ExcludedEnable
	}
	image := c.ImageName
	switch {
	case slices.ContainsFunc(s.ExcludeLabels, func(m string) bool { return hasLabel(c.Labels, m) }):
		return ExcludedByLabel
	case slices.ContainsFunc(s.ExcludeNames, func(g string) bool { return globMatch(g, c.Name) }):
		return ExcludedByName
	case slices.ContainsFunc(s.ExcludeImages, func(g string) bool { return globMatch(g, image) }):
		return ExcludedByImage
	case len(s.IncludeLabels) > 0 && !slices.ContainsFunc(s.IncludeLabels, func(m string) bool { return hasLabel(c.Labels, m) }):
		return ExcludedNoLabel
	case len(s.IncludeNames) > 0 && !slices.ContainsFunc(s.IncludeNames, func(g string) bool { return globMatch(g, c.Name) }):
		return ExcludedNoName
	case len(s.IncludeImages) > 0 && !slices.ContainsFunc(s.IncludeImages, func(g string) bool { return globMatch(g, image) }):
		return ExcludedNoImage
	case len(s.Relabel) > 0 && !relabel.ProcessBuilder(metaLabels(c), s.Relabel...):
		return ExcludedBySelRelabel
	}
	return ""
}

// hasLabel: m is "key" (the label is set) or "key=value".
func hasLabel(ls map[string]string, m string) bool {
	k, v, withValue := strings.Cut(m, "=")
	got, ok := ls[strings.TrimSpace(k)]
	return ok && (!withValue || got == strings.TrimSpace(v))
}

func globMatch(pattern, s string) bool {
	ok, _ := path.Match(pattern, s) // patterns are checked by parseSelection
	return ok
}

// metaLabels are the labels selection rules see, named as Promtail's
// docker_sd names them (__meta_docker_container_id, _name with Docker's
// leading '/', _network_mode, _label_<name>), plus logferry's
// __meta_docker_container_image (the image as the container was created).
func metaLabels(c engine.Container) *promlabels.Builder {
	b := promlabels.NewBuilder(promlabels.EmptyLabels())
	b.Set("__meta_docker_container_id", c.ID)
	b.Set("__meta_docker_container_name", "/"+c.Name)
	b.Set("__meta_docker_container_network_mode", c.NetworkMode)
	b.Set("__meta_docker_container_image", c.ImageName)
	for k, v := range c.Labels {
		b.Set("__meta_docker_container_label_"+labels.SanitizeLabelName(k), v)
	}
	return b
}
