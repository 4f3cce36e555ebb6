package loki

import (
	"regexp"
	"strconv"
	"strings"
)

// What a 400 from Loki means, as Loki v3.7.8 writes it (facts from its
// sources; the texts below are its message formats, not its code):
//
//   - The distributor (pkg/distributor/distributor.go, PushWithResolver)
//     validates every stream and entry, drops the invalid ones, sends the
//     valid rest to the ingesters and, once they stored it, answers 400 with
//     the errors of the invalid ones: one error text, or texts grouped as
//     "N errors like: <text>; M errors like: <text>" (pkg/util/errors.go,
//     GroupedErrors). Only when no entry was valid is nothing stored.
//   - The ingester (pkg/ingester/stream.go, errorForFailedEntries) stores the
//     valid entries of a stream and answers 400 for those too far behind or
//     out of order: up to 10 lines "entry with timestamp T ignored, reason:
//     '...'," then "user 'U', total ignored: N out of M for stream: S".
//   - Before any of that, the push parser (pkg/loghttp/push/push.go,
//     ParseLokiRequest) refuses the whole push, storing nothing, when one
//     stream's labels do not parse: "couldn't parse labels: ...".
//
// So a 400 is, but for the last case, an acknowledgement of everything it
// does not name: sending the batch again would store those entries twice
// (Loki's count_over_time counts duplicates), and the named ones would be
// refused again.

// refusalKind says what a 400 tells about the push.
type refusalKind int

const (
	// refusalUnknown: not Loki's validation answer; nothing is known of
	// what was kept.
	refusalUnknown refusalKind = iota
	// refusalPartial: Loki stored every entry the answer does not name.
	refusalPartial
	// refusalLabels: a stream's labels did not parse; Loki stored nothing.
	refusalLabels
)

// refusal is one kind of error a 400 named.
type refusal struct {
	reason string // drop reason
	count  int    // entries, or for a stream error the streams, it names
	// stream, for an error that refused a whole stream, is the stream's
	// labels as the text gives them ("" when it does not): the dispatcher
	// counts that stream's entries in the batch.
	stream string
}

// labelsRefusalPrefix starts the parser's answer for unparsable labels.
const labelsRefusalPrefix = "couldn't parse labels"

// groupHead matches the head of one group of Loki's grouped errors.
var groupHead = regexp.MustCompile(`(?:^|; )([0-9]+) errors like: `)

// ingesterTotal matches the last line of the ingester's answer.
var ingesterTotal = regexp.MustCompile(`^user '.*', total ignored: ([0-9]+) out of [0-9]+ for stream: `)

// parseRefusal reads the text of a 400 answer.
func parseRefusal(body string) (refusalKind, []refusal) {
	body = strings.TrimRight(body, "\r\n")
	if strings.HasPrefix(body, labelsRefusalPrefix) {
		return refusalLabels, nil
	}
	if strings.Contains(body, "total ignored: ") {
		if r := parseIngesterRefusal(body); len(r) > 0 {
			return refusalPartial, r
		}
	}
	var out []refusal
	known := false
	for _, g := range splitGroups(body) {
		r, ok := classifyRefusal(g.text)
		r.count = g.n
		known = known || ok
		out = append(out, r)
	}
	if !known {
		return refusalUnknown, nil
	}
	return refusalPartial, out
}

type errorGroup struct {
	n    int
	text string
}

// splitGroups splits Loki's grouped errors; a text without groups is one
// error.
func splitGroups(body string) []errorGroup {
	heads := groupHead.FindAllStringSubmatchIndex(body, -1)
	if len(heads) == 0 || heads[0][0] != 0 {
		return []errorGroup{{n: 1, text: body}}
	}
	out := make([]errorGroup, 0, len(heads))
	for i, h := range heads {
		end := len(body)
		if i+1 < len(heads) {
			end = heads[i+1][0]
		}
		n, err := strconv.Atoi(body[h[2]:h[3]])
		if err != nil || n < 1 {
			n = 1
		}
		out = append(out, errorGroup{n: n, text: body[h[1]:end]})
	}
	return out
}

// classifyRefusal names the reason of one of Loki's validation errors; ok
// is false for a text Loki's validation does not write. The reasons are
// Loki's own discard reasons where logferry had none (line_too_long,
// too_far_in_future, invalid_labels, missing_enforced_labels); too_old is
// Loki's greater_than_max_sample_age.
func classifyRefusal(text string) (r refusal, ok bool) {
	between := func(prefix, suffix string) string {
		rest := strings.TrimPrefix(text, prefix)
		if i := strings.LastIndex(rest, suffix); i >= 0 {
			return rest[:i]
		}
		return ""
	}
	switch {
	case strings.HasPrefix(text, "max entry size '"):
		return refusal{reason: "line_too_long"}, true
	case strings.HasPrefix(text, "entry for stream '"):
		switch {
		case strings.Contains(text, "' has timestamp too old: "):
			return refusal{reason: "too_old"}, true
		case strings.Contains(text, "' has timestamp too new: "):
			return refusal{reason: "too_far_in_future"}, true
		case strings.Contains(text, " label names; limit "):
			return refusal{reason: "invalid_labels", stream: between("entry for stream '", "' has ")}, true
		}
	case strings.HasPrefix(text, "stream '"):
		switch {
		case strings.Contains(text, "' includes structured metadata, but this feature is disallowed"),
			strings.Contains(text, "' has structured metadata too large: "),
			strings.Contains(text, "' has too many structured metadata labels: "):
			return refusal{reason: "structured_metadata"}, true
		case strings.Contains(text, "' has label name too long: "),
			strings.Contains(text, "' has label value too long: "),
			strings.Contains(text, "' has duplicate label name: "):
			return refusal{reason: "invalid_labels", stream: between("stream '", "' has ")}, true
		}
	case strings.HasPrefix(text, "error parsing labels '"):
		return refusal{reason: "invalid_labels", stream: between("error parsing labels '", "' with error: ")}, true
	case text == "error at least one label pair is required per stream":
		return refusal{reason: "invalid_labels", stream: "{}"}, true
	case strings.HasPrefix(text, "missing required labels '"):
		stream := text
		if i := strings.Index(stream, "' for stream '"); i >= 0 {
			stream = stream[i+len("' for stream '"):]
			if j := strings.LastIndex(stream, "' (policy: '"); j >= 0 {
				return refusal{reason: "missing_enforced_labels", stream: stream[:j]}, true
			}
		}
		return refusal{reason: "missing_enforced_labels"}, true
	}
	return refusal{reason: "bad_request"}, false
}

// parseIngesterRefusal reads the ingester's answer: each stream's block of
// listed entries ends with its total. The reason of a block is its first
// listed entry's (one stream's errors are all of one kind).
func parseIngesterRefusal(body string) []refusal {
	var out []refusal
	reason := ""
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "entry with timestamp ") && reason == "" {
			_, why, _ := strings.Cut(line, " ignored, reason: '")
			switch {
			case strings.HasPrefix(why, "entry too far behind"):
				reason = "too_far_behind"
			case strings.HasPrefix(why, "entry out of order"):
				reason = "out_of_order"
			default:
				reason = "bad_request"
			}
			continue
		}
		m := ingesterTotal.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		n, err := strconv.Atoi(m[1])
		if err != nil || n < 1 {
			n = 1
		}
		if reason == "" {
			reason = "bad_request"
		}
		out = append(out, refusal{reason: reason, count: n})
		reason = ""
	}
	return out
}
