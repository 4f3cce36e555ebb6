package labels

import (
	"errors"
	"fmt"
	"regexp"
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
}

// DefaultConfig returns the defaults: no labels beyond the default ones.
func DefaultConfig() Config { return Config{} }

// Validate reports the first invalid option, naming its key. It compiles
// templates and regular expressions and dry-runs the templates, so an
// unknown field such as {{.Command}} fails here, at docker run, and not
// when the first line arrives.
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

func compile(c Config) (*compiled, error) {
	ext, err := parseExternalLabels(c.ExternalLabels)
	if err != nil {
		return nil, err
	}
	out := &compiled{
		external: ext,
		labels:   nonEmpty(c.Labels),
		env:      nonEmpty(c.Env),
	}
	if out.labelsRe, err = compileRegex(OptLabelsRegex, c.LabelsRegex); err != nil {
		return nil, err
	}
	if out.envRe, err = compileRegex(OptEnvRegex, c.EnvRegex); err != nil {
		return nil, err
	}
	return out, nil
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
	var out []externalLabel
	for pair := range strings.SplitSeq(s, ",") {
		pair = strings.TrimSpace(pair)
		name, value, ok := strings.Cut(pair, "=")
		if !ok {
			return nil, invalid(OptExternalLabels, "%q is not name=value", pair)
		}
		name = strings.TrimSpace(name)
		switch {
		case !IsValidLabelName(name):
			return nil, invalid(OptExternalLabels, "%q is not a valid label name: it must match [a-zA-Z_][a-zA-Z0-9_]*", name)
		case strings.HasPrefix(name, "__"):
			return nil, invalid(OptExternalLabels, "label name %q: names starting with __ are reserved", name)
		case name == LabelSource:
			return nil, invalid(OptExternalLabels, "label %q is set per entry to stdout or stderr", name)
		case name == LabelHost:
			return nil, invalid(OptExternalLabels, "label %q is set by logferry to the host name", name)
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
	tmpl, err := template.New(name).Option("missingkey=zero").Funcs(templateFuncs).Parse(value)
	if err != nil {
		return externalLabel{}, fmt.Errorf("%s: %w: label %q: %w", OptExternalLabels, ErrInvalidOption, name, err)
	}
	el := externalLabel{name: name, tmpl: tmpl}
	// Execution finds what parsing cannot, such as a field that does not
	// exist: try it once on a typical container.
	if _, err := el.value(sampleTagContext); err != nil {
		return externalLabel{}, fmt.Errorf("%s: %w: label %q: %w", OptExternalLabels, ErrInvalidOption, name, err)
	}
	return el, nil
}

// value expands the label's template for one container.
func (e externalLabel) value(tc *tagContext) (string, error) {
	if e.tmpl == nil {
		return e.text, nil
	}
	var b strings.Builder
	if err := e.tmpl.Execute(&b, tc); err != nil {
		return "", err
	}
	return b.String(), nil
}
