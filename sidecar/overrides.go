package sidecar

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/logferry/logferry/shared/logopts"
	"github.com/logferry/logferry/shared/spool"
)

// A container's labels come from its image as much as from the operator who
// ran it: any image author can put `LABEL logferry.loki-url=...` into an
// image. So labels may shape only the container's own data, and only when
// the operator says so (label-overrides). Where data goes, with which
// credentials, through which proxy or TLS files, and how much memory or
// disk it may take are the operator's alone.

// overridable are the log options a logferry.<option> label may set when
// label-overrides is on: they shape the container's own entries and
// labels. loki-tenant-id is further limited to label-override-tenants and
// max-line-size to the operator's own value.
var overridable = map[string]bool{
	"loki-external-labels": true,
	"labels":               true,
	"labels-regex":         true,
	"env":                  true,
	"env-regex":            true,
	"max-line-size":        true,
	"loki-tenant-id":       true,
	"loki-relabel-config":  true,
	"loki-pipeline-stages": true,
}

// OverridableOptions returns the options a label may set, sorted.
func OverridableOptions() []string { return slices.Sorted(maps.Keys(overridable)) }

// Why a logferry.* label was refused: the reason label of
// logferry_sidecar_label_refused_total.
const (
	RefusedDisabled     = "overrides_disabled"   // label-overrides is off
	RefusedOperatorOnly = "operator_only"        // endpoint, credentials, TLS, proxy, sizes, batching
	RefusedUnknown      = "unknown_option"       // not an option at all
	RefusedInvalid      = "invalid_value"        // does not parse or validate
	RefusedTenant       = "tenant_not_allowed"   // not in label-override-tenants
	RefusedAboveBound   = "above_operator_bound" // max-line-size above the operator's
)

// unknownOption is the option label value of every label that names no
// option, so that the metric's cardinality does not follow label names an
// image author chooses.
const unknownOption = "unknown"

// Refusal is one logferry.* label that was not applied. The container is
// shipped with the operator's value for that option.
type Refusal struct {
	Option string // the option's name, or "unknown"
	Reason string // one of the Refused* reasons
	Err    error  // for RefusedInvalid: why
}

func (r Refusal) String() string {
	s := LabelPrefix + r.Option + ": " + r.Reason
	if r.Err != nil {
		s += ": " + r.Err.Error()
	}
	return s
}

// ContainerOptions are the log options for one container: the sidecar's,
// with the container's logferry.<option> labels applied where the operator
// allows them (see overridable). Every label that is not applied is
// returned as a Refusal and changes nothing; the container is still shipped.
// An error means the operator's own options do not validate (LoadConfig
// has checked them, so only a Config built by hand can fail).
func (c Config) ContainerOptions(containerLabels map[string]string) (logopts.Options, []Refusal, error) {
	m := maps.Clone(c.Options)
	if m == nil {
		m = map[string]string{}
	}
	operator, err := logopts.Parse(optionDefaults(), m)
	if err != nil {
		return operator, nil, err
	}
	known := logopts.Keys()
	var refused []Refusal
	for _, k := range slices.Sorted(maps.Keys(containerLabels)) {
		key, ok := strings.CutPrefix(k, LabelPrefix)
		if !ok {
			continue
		}
		v := containerLabels[k]
		option := key
		if !slices.Contains(known, key) {
			option = unknownOption
		}
		refuse := func(reason string, err error) {
			refused = append(refused, Refusal{Option: option, Reason: reason, Err: err})
		}
		switch {
		case !c.LabelOverrides:
			refuse(RefusedDisabled, nil)
			continue
		case option == unknownOption:
			refuse(RefusedUnknown, nil)
			continue
		case !overridable[key]:
			refuse(RefusedOperatorOnly, nil)
			continue
		case key == "loki-tenant-id" && !slices.Contains(c.OverrideTenants, strings.TrimSpace(v)):
			refuse(RefusedTenant, nil)
			continue
		}
		trial := maps.Clone(m)
		trial[key] = v
		o, err := logopts.Parse(optionDefaults(), trial)
		if err != nil {
			refuse(RefusedInvalid, err)
			continue
		}
		if key == "loki-pipeline-stages" && o.Pipeline.SetsTenant() {
			refuse(RefusedTenant, errors.New("a tenant stage chooses where entries go: only the operator's pipeline may have one"))
			continue
		}
		if key == "max-line-size" && o.MaxLineSize > operator.MaxLineSize {
			refuse(RefusedAboveBound, fmt.Errorf("%d bytes is above the operator's %d", o.MaxLineSize, operator.MaxLineSize))
			continue
		}
		m = trial
	}
	o, err := logopts.Parse(optionDefaults(), m)
	if err != nil { // each accepted label parsed with the ones before it
		return operator, refused, err
	}
	if c.Overflow.Overflow == spool.OverflowBlock {
		// Under block a batch is retried until Loki takes it: its lines
		// are still in the json-file logs and reading waits meanwhile, so
		// giving up would drop what nothing forces out.
		o.Loki.Retries = 0
	}
	return o, refused, nil
}
