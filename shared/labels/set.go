package labels

import (
	"strconv"
)

// Source values Docker gives an entry, the ones Set precomputes streams for.
const (
	SourceStdout = "stdout"
	SourceStderr = "stderr"
)

// Set is one container's labels and structured metadata, ready for every
// entry: Stream returns the Loki stream selector without building it again.
// A Set is immutable; share it, do not modify its slices.
type Set struct {
	// Labels are sorted by name, without source, without empty values.
	Labels []Pair
	// StructuredMetadata is sorted by name, without empty values.
	StructuredMetadata []Pair
	// Cuts counts what Build cut or left out to keep Loki's limits; the
	// caller adds them to its metrics once, when it builds the Set.
	Cuts Cuts
	// Dropped: loki-relabel-config dropped the container (or left it no
	// label). Its lines are not shipped; the Set has nothing else.
	Dropped bool

	stdout, stderr string
}

func newSet(labels, sm []Pair, cuts Cuts) Set {
	return Set{
		Labels:             labels,
		StructuredMetadata: sm,
		Cuts:               cuts,
		stdout:             formatStream(labels, SourceStdout),
		stderr:             formatStream(labels, SourceStderr),
	}
}

// Stream returns the Loki stream labels for entries from source, in the
// text form Loki's push API parses and Prometheus prints:
// {compose_project="shop", container_name="web", host="h1", source="stdout"}
// with names sorted and values quoted as Go string literals (Loki unquotes
// them with Go's rules). stdout and stderr are precomputed; any other source
// is formatted on each call, and "" leaves source out.
func (s Set) Stream(source string) string {
	switch {
	case source == SourceStdout && s.stdout != "":
		return s.stdout
	case source == SourceStderr && s.stderr != "":
		return s.stderr
	}
	return formatStream(s.Labels, source)
}

// String returns the stream selector without source.
func (s Set) String() string { return formatStream(s.Labels, "") }

// formatStream formats sorted labels plus source (omitted if empty), sized
// up front so the buffer rarely grows.
func formatStream(labels []Pair, source string) string {
	n := 2 + len(LabelSource) + len(source) + 5
	for _, p := range labels {
		n += len(p.Name) + len(p.Value) + 6 // =, quotes, ", " and a little for escapes
	}
	buf := make([]byte, 0, n)
	buf = append(buf, '{')
	first := true
	add := func(name, value string) {
		if !first {
			buf = append(buf, ", "...)
		}
		first = false
		buf = append(buf, name...)
		buf = append(buf, '=')
		buf = strconv.AppendQuote(buf, value)
	}
	pending := source != ""
	for _, p := range labels {
		if pending && p.Name > LabelSource {
			add(LabelSource, source)
			pending = false
		}
		add(p.Name, p.Value)
	}
	if pending {
		add(LabelSource, source)
	}
	buf = append(buf, '}')
	return string(buf)
}
