package pipeline

import (
	"errors"
	"fmt"
	"strings"
)

// Options of the Loki Docker driver that hold pipeline stages; Parse names
// the first in its errors, ParseOption any other.
const (
	OptPipelineStages    = "loki-pipeline-stages"
	OptPipelineStageFile = "loki-pipeline-stage-file"
)

// Bounds on what a configuration may ask for. Image authors can write
// this option (sidecar label overrides), so each one bounds memory or CPU
// per container: the text and its tree, the number of compiled stages,
// the size of each program (regex, template, JMESPath) and, at run time,
// the size of what templates and replace produce from each line.
const (
	// MaxConfigBytes bounds the YAML text.
	MaxConfigBytes = 64 << 10
	// MaxStages bounds the stages of a pipeline, nested ones included.
	MaxStages = 64
	// MaxDepth bounds the nesting of match stages: 1 is a pipeline
	// without match, 4 allows match in match in match.
	MaxDepth = 4
	// MaxRegexBytes bounds a regular expression (regex, replace, drop,
	// multiline firstline, selector matchers). Go's regexp runs in linear
	// time, but compiling costs memory in proportion to the pattern.
	MaxRegexBytes = 4 << 10
	// MaxTemplateBytes bounds a template's text (template, replace).
	MaxTemplateBytes = 4 << 10
	// MaxExpressionBytes bounds a JMESPath expression or a selector.
	MaxExpressionBytes = 4 << 10
	// MaxFieldsPerStage bounds the keys of one stage's map (json
	// expressions, logfmt mapping, labels...) or list (labeldrop...).
	MaxFieldsPerStage = 64
	// MaxValueBytes bounds what a template, a template function or a
	// replace stage produces from one line: Loki's default
	// max_line_size. Past it the stage leaves its target unchanged and
	// the failure is counted.
	MaxValueBytes = 256 << 10
	// MaxReasonBytes bounds a drop_counter_reason, which becomes a metric
	// label value.
	MaxReasonBytes = 64
	// MaxDistinctLabels bounds the limit stage's max_distinct_labels (and
	// is its default, as in Promtail).
	MaxDistinctLabels = 10000
	// MaxStructuredMetadata and MaxStructuredMetadataBytes are Loki's
	// default max_structured_metadata_entries_count and
	// max_structured_metadata_size: a stage adds no field past them.
	MaxStructuredMetadata      = 128
	MaxStructuredMetadataBytes = 64 << 10
	// maxTenantBytes is Loki's limit on a tenant ID.
	maxTenantBytes = 150
)

var (
	// ErrInvalid is wrapped by every error of Parse, ParseOption and the
	// multiline constructors.
	ErrInvalid = errors.New("invalid pipeline stages")
	// ErrLimit is wrapped, with ErrInvalid, when a configuration passes one
	// of the bounds above.
	ErrLimit = errors.New("over a limit")
)

// StageError is the error of a bad configuration: the option, where in it
// (the stage's path, the YAML line) and which field. Err is the cause; the
// error also matches ErrInvalid.
type StageError struct {
	Option string
	// Path is the stage's position, 1-based, with its kind, nested
	// positions joined by " > ": "stage 3 (match) > stage 1 (regex)".
	// Empty for an error about the whole text.
	Path string
	// Field is the stage's field at fault, or "" for the stage itself.
	Field string
	// Line is the YAML line, 0 when unknown.
	Line int
	Err  error
}

func (e *StageError) Error() string {
	var b strings.Builder
	b.WriteString(e.Option)
	switch {
	case e.Path != "" && e.Line > 0:
		fmt.Fprintf(&b, ": %s (line %d)", e.Path, e.Line)
	case e.Path != "":
		b.WriteString(": ")
		b.WriteString(e.Path)
	case e.Line > 0:
		fmt.Fprintf(&b, ": line %d", e.Line)
	}
	if e.Field != "" {
		b.WriteString(": ")
		b.WriteString(e.Field)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap lets errors.Is find ErrInvalid and whatever Err wraps.
func (e *StageError) Unwrap() []error { return []error{ErrInvalid, e.Err} }

// overLimit is the cause of an error past one of our bounds.
func overLimit(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrLimit, fmt.Sprintf(format, args...))
}
