package labels

import (
	"errors"
	"fmt"
	"strings"
	"text/template"
	"text/template/parse"
	"unicode/utf8"
)

// Loki's default limits on a stream's labels: limits_config's
// max_label_name_length, max_label_value_length and
// max_label_names_per_series (https://grafana.com/docs/loki/latest/configure/#limits_config;
// flags validation.max-length-label-name, validation.max-length-label-value
// and validation.max-label-names-per-series in Loki 3's
// pkg/validation/limits.go). Loki's distributor (pkg/distributor/validator.go)
// measures names and values in bytes, counts every label name of the stream
// (source too), and answers a push that breaks one with 400, which the
// dispatcher cannot retry: the Builder never makes such a stream.
const (
	// MaxLabelNameBytes is max_label_name_length.
	MaxLabelNameBytes = 1024
	// MaxLabelValueBytes is max_label_value_length.
	MaxLabelValueBytes = 2048
	// MaxLabelsPerStream is max_label_names_per_series, source included.
	MaxLabelsPerStream = 15
)

// Bounds of our own on what comes from outside: the options come from the
// operator, or in the sidecar from logferry.* container labels, which
// image authors write, and the metadata templates see is the image
// author's too.
const (
	// maxTemplateBytes bounds one loki-external-labels value, literal or
	// template: a literal cannot be longer than the value it becomes, and
	// a template that needs more text than a label value holds is not a
	// label template.
	maxTemplateBytes = MaxLabelValueBytes
	// maxExternalLabelsBytes bounds the whole loki-external-labels option:
	// as many name=value pairs as a stream can carry, each at its bounds.
	maxExternalLabelsBytes = MaxLabelsPerStream * (MaxLabelNameBytes + 1 + maxTemplateBytes + 1)
	// maxSelectedKeys bounds the keys of the labels and env options. At
	// most MaxLabelsPerStream names can come of them, but keys that
	// sanitize alike ("a.b", "a-b") are each looked up for every
	// container.
	maxSelectedKeys = 256
	// maxRegexBytes bounds labels-regex and env-regex. Go's regexp runs in
	// linear time, but compiling costs memory in proportion to the pattern.
	maxRegexBytes = 1024
	// maxTemplateString is the longest string a template function accepts
	// or returns, and the longest piece of container metadata a template
	// sees (longer ones are cut): twice a label value, room enough to
	// build one, and small enough that no chain of calls can grow a string
	// past it.
	maxTemplateString = 2 * MaxLabelValueBytes
)

// ErrLimit is wrapped by the errors of a value over one of the bounds
// above or Loki's: at validation together with ErrInvalidOption, at Build
// when a template function would pass one.
var ErrLimit = errors.New("over a limit")

// Cuts counts what Build left out to keep a Set within Loki's limits. Both
// capture styles count them in their metrics.
type Cuts struct {
	// ValuesTruncated is how many label values were longer than
	// MaxLabelValueBytes and were cut to it on a UTF-8 boundary.
	ValuesTruncated int
	// LabelsDropped is how many labels were left out: past
	// MaxLabelsPerStream (see Builder for which), or with a name longer
	// than MaxLabelNameBytes.
	LabelsDropped int
}

// boundValue makes v a label value Loki takes: valid UTF-8, each run of
// invalid bytes replaced with one U+FFFD as sanitizeValue does, of at most
// MaxLabelValueBytes, cut before a rune that would straddle the limit. It
// reports whether it cut. However long v is, it builds no more than the
// value it returns.
func boundValue(v string) (string, bool) {
	if len(v) <= MaxLabelValueBytes && utf8.ValidString(v) {
		return v, false
	}
	var b strings.Builder
	b.Grow(min(len(v), MaxLabelValueBytes))
	invalid := false
	for i := 0; i < len(v); {
		r, n := utf8.DecodeRuneInString(v[i:])
		piece := v[i : i+n]
		if r == utf8.RuneError && n == 1 {
			if i++; invalid {
				continue
			}
			invalid, piece = true, string(utf8.RuneError)
		} else {
			invalid = false
			i += n
		}
		if b.Len()+len(piece) > MaxLabelValueBytes {
			return b.String(), true
		}
		b.WriteString(piece)
	}
	return b.String(), false
}

// errValueFull stops a template that has written more than a label value
// holds.
var errValueFull = errors.New("label value full")

// valueWriter collects a template's output up to MaxLabelValueBytes and a
// rune more (so that the cut can find a rune boundary); a write past that
// fails with errValueFull, which stops the template: {{.Name}} repeated, a
// long literal or anything else cannot make the output longer.
type valueWriter struct {
	b strings.Builder
}

const valueWriterLimit = MaxLabelValueBytes + utf8.UTFMax

func (w *valueWriter) Write(p []byte) (int, error) {
	if room := valueWriterLimit - w.b.Len(); len(p) > room {
		w.b.Write(p[:room])
		return room, errValueFull
	}
	return w.b.Write(p)
}

// checkTemplate refuses, before it runs, what in a template could repeat
// work or output without a bound the writer or the functions see:
// {{range}} (over an integer, .ContainerCreated.Unix times), sub-templates
// ({{define}}, {{block}}, {{template}}, which can call themselves), and
// constant pad, truncate and printf counts past MaxLabelValueBytes, which
// are refused whichever branch holds them. Without loops or calls, each
// node of the template runs at most once.
func checkTemplate(t *template.Template) error {
	if len(t.Templates()) > 1 {
		return errors.New("{{define}} and {{block}} are not supported in a label template")
	}
	return checkNode(t.Root)
}

func checkNode(n parse.Node) error {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return nil
		}
		for _, c := range n.Nodes {
			if err := checkNode(c); err != nil {
				return err
			}
		}
	case *parse.ActionNode:
		return checkNode(n.Pipe)
	case *parse.IfNode:
		return checkBranch(&n.BranchNode)
	case *parse.WithNode:
		return checkBranch(&n.BranchNode)
	case *parse.RangeNode:
		return errors.New("{{range}} is not supported in a label template")
	case *parse.TemplateNode:
		return errors.New("{{template}} is not supported in a label template")
	case *parse.PipeNode:
		if n == nil {
			return nil
		}
		for _, c := range n.Cmds {
			if err := checkNode(c); err != nil {
				return err
			}
		}
	case *parse.ChainNode:
		return checkNode(n.Node)
	case *parse.CommandNode:
		for _, a := range n.Args {
			if err := checkNode(a); err != nil {
				return err
			}
		}
		return checkCall(n)
	}
	return nil
}

func checkBranch(n *parse.BranchNode) error {
	for _, c := range []parse.Node{n.Pipe, n.List, n.ElseList} {
		if err := checkNode(c); err != nil {
			return err
		}
	}
	return nil
}

// checkCall checks the constant arguments of pad, truncate and printf.
func checkCall(cmd *parse.CommandNode) error {
	fn, ok := cmd.Args[0].(*parse.IdentifierNode)
	if !ok {
		return nil
	}
	switch fn.Ident {
	case "pad", "truncate":
		total := 0
		for _, a := range cmd.Args[1:] {
			n, ok := a.(*parse.NumberNode)
			if !ok {
				continue
			}
			switch {
			case n.IsInt && n.Int64 <= 0:
			case n.IsInt && n.Int64 <= MaxLabelValueBytes:
				total += int(n.Int64)
			case n.IsInt, n.IsFloat && n.Float64 > MaxLabelValueBytes:
				total = MaxLabelValueBytes + 1
			}
		}
		if total > MaxLabelValueBytes {
			return fmt.Errorf("%w: %s: counts past %d bytes, what a label value holds (Loki's max_label_value_length)",
				ErrLimit, cmd, MaxLabelValueBytes)
		}
	case "printf":
		if len(cmd.Args) > 1 {
			if format, ok := cmd.Args[1].(*parse.StringNode); ok {
				return checkFormat(format.Text)
			}
		}
	}
	return nil
}
