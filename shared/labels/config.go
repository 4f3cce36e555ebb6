package labels

import (
	"github.com/prometheus/prometheus/model/relabel"

	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"text/template"
)

// The log-opt keys Config corresponds to; errors name them.
const (
	OptExternalLabels = "loki-external-labels"
	OptLabels         = "labels"
	OptLabelsRegex    = "labels-regex"
	OptEnv            = "env"
	OptEnvRegex       = "env-regex"
)

// ErrInvalidOption is wrapped by every error Config.Validate and NewBuilder
// return.
var ErrInvalidOption = errors.New("invalid option")

// Config selects the labels Builder adds to the defaults. It is owned by
// this package; the plugin fills it from log-opts (keys Opt*), the sidecar
// from its own configuration. The zero Config is the default: only the
// default labels (see Builder).
type Config struct {
	// ExternalLabels is the loki-external-labels log-opt: "name=value"
	// pairs separated by ',', each value a Docker tag template
	// ({{.Name}}, {{.ID}}, {{.FullID}}, {{.ImageName}}, {{.ImageID}},
	// {{.ImageFullID}}, {{.DaemonName}}, {{.Hostname}}, and the Docker
	// template functions). Whitespace around a pair and around a name is
	// ignored; a value may contain '=' but not ','. Names must be valid
	// label names and not host, source, or start with "__"; the same name
	// twice is an error.
	//
	// Grafana's Loki driver uses "container_name={{.Name}}" when this
	// log-opt is absent and drops container_name when it is set. We always
	// add container_name (see Builder); "container_name=" removes it.
	ExternalLabels string
	// Labels are container label keys (the labels log-opt, already split
	// on ','); those the container has become labels, with sanitized names.
	Labels []string
	// LabelsRegex selects container labels by key, unanchored, like
	// Docker's labels-regex log-opt.
	LabelsRegex string
	// Env are environment variable names (the env log-opt, split on ',');
	// those the container sets become labels.
	Env []string
	// EnvRegex selects environment variables by name, unanchored, like
	// Docker's env-regex log-opt.
	EnvRegex string
	// RelabelConfig is the loki-relabel-config log-opt: a YAML list of
	// Prometheus relabel rules, applied last (see Builder).
	RelabelConfig string
}

// DefaultConfig returns the defaults: no labels beyond the default ones.
func DefaultConfig() Config { return Config{} }

// Validate reports the first invalid option, naming its key. It compiles
// templates and regular expressions and dry-runs the templates, so an
// unknown field such as {{.Command}} fails here, at docker run, and not
// when the first line arrives.
//
// It also refuses what is over a bound, with an error wrapping ErrLimit
// too: a label name longer than MaxLabelNameBytes, a loki-external-labels
// value longer than MaxLabelValueBytes or a template rendering more than
// that for a sample container, a regex longer than 1024 bytes, constant
// pad, truncate or printf counts past MaxLabelValueBytes, and more label
// names than Loki takes on a stream: those of loki-external-labels, labels
// and env, with source, host and container_name, may be at most
// MaxLabelsPerStream. Validate does all this before allocating in
// proportion to a count or a template's output: a 1 GB pad fails in
// microseconds.
func (c Config) Validate() error {
	_, err := compile(c)
	return err
}

// compiled is a Config made ready for Build: parsed once, used per
// container.
type compiled struct {
	external []externalLabel
	labels   []string
	labelsRe *regexp.Regexp
	env      []string
	envRe    *regexp.Regexp
	relabel  []*relabel.Config
}

// externalLabel is one name=value pair of loki-external-labels.
type externalLabel struct {
	name string
	// tmpl is nil when the value has no template actions; then text is
	// the value.
	tmpl *template.Template
	text string
}

func invalid(key, format string, args ...any) error {
	return fmt.Errorf("%s: %w: %s", key, ErrInvalidOption, fmt.Sprintf(format, args...))
}

// overLimit is invalid for a value over a bound: it also wraps ErrLimit.
func overLimit(key, format string, args ...any) error {
	return fmt.Errorf("%s: %w: %w: %s", key, ErrInvalidOption, ErrLimit, fmt.Sprintf(format, args...))
}

func compile(c Config) (*compiled, error) {
	ext, err := parseExternalLabels(c.ExternalLabels)
	if err != nil {
		return nil, err
	}
	out := &compiled{external: ext}
	if out.labels, err = selectedKeys(OptLabels, c.Labels); err != nil {
		return nil, err
	}
	if out.env, err = selectedKeys(OptEnv, c.Env); err != nil {
		return nil, err
	}
	if err := checkLabelCount(out); err != nil {
		return nil, err
	}
	if out.labelsRe, err = compileRegex(OptLabelsRegex, c.LabelsRegex); err != nil {
		return nil, err
	}
	if out.envRe, err = compileRegex(OptEnvRegex, c.EnvRegex); err != nil {
		return nil, err
	}
	if out.relabel, err = parseRelabel(c.RelabelConfig); err != nil {
		return nil, err
	}
	return out, nil
}

// selectedKeys are the non-empty keys of the labels or env option, each of
// which must make a label name Loki takes, at most maxSelectedKeys of them.
func selectedKeys(key string, keys []string) ([]string, error) {
	if len(keys) > maxSelectedKeys {
		return nil, overLimit(key, "%d keys, more than %d", len(keys), maxSelectedKeys)
	}
	for _, k := range keys {
		// SanitizeLabelName adds at most one byte.
		if len(k) >= MaxLabelNameBytes {
			if n := len(SanitizeLabelName(k)); n > MaxLabelNameBytes {
				return nil, overLimit(key, "%.32q... makes a label name of %d bytes, more than Loki takes (%d, max_label_name_length)",
					k, n, MaxLabelNameBytes)
			}
		}
	}
	return nonEmpty(keys), nil
}

// checkLabelCount refuses a configuration that names more labels than Loki
// takes on one stream: the names loki-external-labels, labels and env can
// give, plus source, host and container_name, which nearly every stream
// has. What only some containers add (compose and swarm labels, regex
// matches) cannot be known here; Build drops and counts what does not fit.
// The error names the option that went past the limit.
func checkLabelCount(c *compiled) error {
	names := []string{LabelSource, LabelHost, LabelContainerName}
	add := func(key, name string) error {
		if name == "" || slices.Contains(names, name) {
			return nil
		}
		if names = append(names, name); len(names) > MaxLabelsPerStream {
			return overLimit(key, "%d label names with source, host and container_name, more than Loki takes on a stream (%d, max_label_names_per_series)",
				len(names), MaxLabelsPerStream)
		}
		return nil
	}
	for _, e := range c.external {
		if e.tmpl == nil && e.text == "" {
			continue // never a label, only removes one
		}
		if err := add(OptExternalLabels, e.name); err != nil {
			return err
		}
	}
	for _, k := range c.labels {
		if err := add(OptLabels, SanitizeLabelName(k)); err != nil {
			return err
		}
	}
	for _, k := range c.env {
		if err := add(OptEnv, SanitizeLabelName(k)); err != nil {
			return err
		}
	}
	return nil
}

func nonEmpty(keys []string) []string {
	var out []string
	for _, k := range keys {
		if k != "" {
			out = append(out, k)
		}
	}
	return out
}

func compileRegex(key, expr string) (*regexp.Regexp, error) {
	if expr == "" {
		return nil, nil
	}
	if len(expr) > maxRegexBytes {
		return nil, overLimit(key, "%d bytes, more than %d", len(expr), maxRegexBytes)
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", key, ErrInvalidOption, err)
	}
	return re, nil
}

// parseExternalLabels parses the loki-external-labels format. It accepts
// what Grafana's Loki driver accepts (k=v,k2=v2), and also whitespace
// around pairs and '=' inside a value, which the Loki driver rejects.
func parseExternalLabels(s string) ([]externalLabel, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	if len(s) > maxExternalLabelsBytes {
		return nil, overLimit(OptExternalLabels, "%d bytes, more than %d", len(s), maxExternalLabelsBytes)
	}
	var out []externalLabel
	for pair := range strings.SplitSeq(s, ",") {
		if len(out) == MaxLabelsPerStream {
			return nil, overLimit(OptExternalLabels, "more than %d labels, more than Loki takes on a stream (max_label_names_per_series)",
				MaxLabelsPerStream)
		}
		pair = strings.TrimSpace(pair)
		name, value, ok := strings.Cut(pair, "=")
		if !ok {
			return nil, invalid(OptExternalLabels, "%.64q is not name=value", pair)
		}
		name = strings.TrimSpace(name)
		switch {
		case len(name) > MaxLabelNameBytes:
			return nil, overLimit(OptExternalLabels, "label name %.32q... is %d bytes, more than Loki takes (%d, max_label_name_length)",
				name, len(name), MaxLabelNameBytes)
		case !IsValidLabelName(name):
			return nil, invalid(OptExternalLabels, "%q is not a valid label name: it must match [a-zA-Z_][a-zA-Z0-9_]*", name)
		case strings.HasPrefix(name, "__"):
			return nil, invalid(OptExternalLabels, "label name %q: names starting with __ are reserved", name)
		case name == LabelSource:
			return nil, invalid(OptExternalLabels, "label %q is set per entry to stdout or stderr", name)
		case name == LabelHost:
			return nil, invalid(OptExternalLabels, "label %q is set by logferry to the host name", name)
		case len(value) > maxTemplateBytes:
			return nil, overLimit(OptExternalLabels, "label %q: the value is %d bytes, more than a label value holds (%d, Loki's max_label_value_length)",
				name, len(value), maxTemplateBytes)
		}
		for _, e := range out {
			if e.name == name {
				return nil, invalid(OptExternalLabels, "label %q given twice", name)
			}
		}
		el, err := newExternalLabel(name, value)
		if err != nil {
			return nil, err
		}
		out = append(out, el)
	}
	return out, nil
}

func newExternalLabel(name, value string) (externalLabel, error) {
	if !strings.Contains(value, "{{") {
		return externalLabel{name: name, text: value}, nil
	}
	fail := func(err error) (externalLabel, error) {
		return externalLabel{}, fmt.Errorf("%s: %w: label %q: %w", OptExternalLabels, ErrInvalidOption, name, err)
	}
	tmpl, err := template.New(name).Option("missingkey=zero").Funcs(templateFuncs).Parse(value)
	if err != nil {
		return fail(err)
	}
	// Before anything runs: what a template could repeat or grow without
	// bound, and counts that are too large whichever branch uses them.
	if err := checkTemplate(tmpl); err != nil {
		return fail(err)
	}
	el := externalLabel{name: name, tmpl: tmpl}
	// Execution finds what parsing cannot, such as a field that does not
	// exist: try it once on a typical container.
	v, cut, err := el.value(&tagContext{c: sampleContainer, host: sampleHost})
	if err != nil {
		return fail(err)
	}
	if cut || len(v) > MaxLabelValueBytes {
		return fail(fmt.Errorf("%w: renders more than %d bytes for a sample container, more than a label value holds (Loki's max_label_value_length)",
			ErrLimit, MaxLabelValueBytes))
	}
	return el, nil
}

// value expands the label's template for one container. A template that
// writes more than a label value holds is stopped there, and cut reports
// it: what it wrote so far is the value, for Build to cut to
// MaxLabelValueBytes.
func (e externalLabel) value(tc *tagContext) (v string, cut bool, err error) {
	if e.tmpl == nil {
		return e.text, false, nil
	}
	var w valueWriter
	switch err := e.tmpl.Execute(&w, tc); {
	case errors.Is(err, errValueFull):
		return w.b.String(), true, nil
	case err != nil:
		return "", false, err
	}
	return w.b.String(), false, nil
}
