package labels

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/logferry/logferry/shared/metadata"
)

// tagContext is what a loki-external-labels template sees: the part of
// Docker's logger.Info template surface (moby daemon/logger/loginfo.go) that
// a metadata.Container can fill, so templates written for Docker's tag
// option or the Loki driver work unchanged. Fields are methods here so that
// one copy is all a Build allocates for it, and only when a template needs
// it. Not supported: .Command,
// .ContainerEntrypoint, .ContainerArgs, .Config, .LogPath, .ExtraAttributes
// (capture-style specific or unknown to the sidecar); using them fails
// Validate.
//
// The image author writes the metadata: every string a template gets from
// it is cut to maxTemplateString bytes, and the labels and environment
// print within that bound too (see labelMap, envList), so that what a
// template does with them is bounded by the template's length.
type tagContext struct {
	c    metadata.Container
	host string
	// labels and env are the bounded views of c.Labels and c.Env, made
	// on first use; a tagContext is used by one goroutine.
	labels labelMap
	env    envList
	viewed bool
}

// ID is the first 12 characters of the container id.
func (t *tagContext) ID() string { return truncateBytes(t.c.ID, 12) }

// FullID is the container id.
func (t *tagContext) FullID() string { return clip(t.c.ID) }

// Name is the container name without a leading '/'.
func (t *tagContext) Name() string { return clip(strings.TrimPrefix(t.c.Name, "/")) }

// ImageID is the first 12 characters of the image id, which like Docker's
// includes the algorithm: "sha256:1234a".
func (t *tagContext) ImageID() string { return truncateBytes(t.c.ImageID, 12) }

// ImageFullID is the image id.
func (t *tagContext) ImageFullID() string { return clip(t.c.ImageID) }

// ImageName is the image name the container was created from.
func (t *tagContext) ImageName() string { return clip(t.c.ImageName) }

// DaemonName is Docker's daemon name ("docker").
func (t *tagContext) DaemonName() string { return clip(t.c.DaemonName) }

// Hostname is the host name the Builder was given. Docker returns
// os.Hostname(), which inside a plugin or the sidecar's container may not be
// the host's.
func (t *tagContext) Hostname() string { return clip(t.host) }

// ContainerID is logger.Info.ContainerID.
func (t *tagContext) ContainerID() string { return clip(t.c.ID) }

// ContainerName is logger.Info.ContainerName, which has the leading '/'.
func (t *tagContext) ContainerName() string { return "/" + t.Name() }

// ContainerImageID is logger.Info.ContainerImageID.
func (t *tagContext) ContainerImageID() string { return clip(t.c.ImageID) }

// ContainerImageName is logger.Info.ContainerImageName.
func (t *tagContext) ContainerImageName() string { return clip(t.c.ImageName) }

// ContainerLabels is logger.Info.ContainerLabels.
func (t *tagContext) ContainerLabels() labelMap {
	t.view()
	return t.labels
}

// ContainerEnv is logger.Info.ContainerEnv.
func (t *tagContext) ContainerEnv() envList {
	t.view()
	return t.env
}

// ContainerCreated is logger.Info.ContainerCreated.
func (t *tagContext) ContainerCreated() time.Time { return t.c.Created }

// String makes {{.}} print nothing: the whole container is no label value,
// and printing it field by field would copy all its labels and
// environment.
func (t *tagContext) String() string { return "" }

func (t *tagContext) view() {
	if t.viewed {
		return
	}
	t.viewed = true
	t.labels = labelMap(t.c.Labels)
	for _, v := range t.c.Labels {
		if len(v) > maxTemplateString {
			t.labels = make(labelMap, len(t.c.Labels))
			for k, v := range t.c.Labels {
				t.labels[k] = clip(v)
			}
			break
		}
	}
	t.env = envList(t.c.Env)
	for _, kv := range t.c.Env {
		if len(kv) > maxTemplateString {
			t.env = make(envList, len(t.c.Env))
			for i, kv := range t.c.Env {
				t.env[i] = clip(kv)
			}
			break
		}
	}
}

// clip cuts a string from the container's metadata to what a template may
// hold.
func clip(s string) string { return truncateBytes(s, maxTemplateString) }

// labelMap is a container's labels as templates see them: index and len
// work as on any map; printing it (fmt's %v, print, printf, json) is
// bounded like every string a template makes.
type labelMap map[string]string

// String prints m as fmt does, map[k:v k2:v2] with keys sorted, when that
// fits maxTemplateString; otherwise only how many labels there are, so that
// printing costs the same for ten labels and ten thousand.
func (m labelMap) String() string {
	size := len("map[]")
	for k, v := range m {
		if size += len(k) + len(v) + 2; size > maxTemplateString {
			return "map[" + strconv.Itoa(len(m)) + " labels]"
		}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	b.Grow(size)
	b.WriteString("map[")
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k)
		b.WriteByte(':')
		b.WriteString(m[k])
	}
	b.WriteByte(']')
	return b.String()
}

// envList is a container's environment as templates see it.
type envList []string

// String prints l as fmt does, [A=1 B=2], but stops before an entry that
// would take it past maxTemplateString bytes.
func (l envList) String() string {
	var b strings.Builder
	b.WriteByte('[')
	for i, kv := range l {
		if b.Len()+len(kv) > maxTemplateString {
			break
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(kv)
	}
	b.WriteByte(']')
	return b.String()
}

// sampleContainer is the container Validate dry-runs templates on.
var sampleContainer = metadata.Container{
	ID:         strings.Repeat("0123456789abcdef", 4),
	Name:       "sample",
	ImageName:  "sample:latest",
	ImageID:    "sha256:" + strings.Repeat("fedcba9876543210", 4),
	Labels:     map[string]string{metadata.LabelComposeProject: "sample", metadata.LabelComposeService: "sample"},
	Env:        []string{"PATH=/usr/bin"},
	Created:    time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
	DaemonName: "docker",
}

const sampleHost = "sample-host"

// templateFuncs are Docker's tag template functions (moby
// daemon/logger/templates/templates.go), with the same names and arguments,
// and text/template's builtins that build strings, each bounded: a string
// argument longer than maxTemplateString, or a result that would be, is an
// error wrapping ErrLimit, found before the work that would allocate it.
// Differences from Docker, all where Docker would panic, cut a character
// in half, or allocate what a label value cannot hold: truncate never
// splits a UTF-8 sequence, negative counts are zero, and pad adds at most
// MaxLabelValueBytes. The other builtins (and, or, not, len, index, slice,
// eq, ne, lt, le, gt, ge) build nothing and are left as they are.
var templateFuncs = template.FuncMap{
	"json":     jsonString,
	"split":    split,
	"join":     join,
	"title":    title,
	"lower":    lower,
	"upper":    upper,
	"pad":      pad,
	"truncate": truncateBytes,

	"print":    boundedPrint("print", fmt.Sprint),
	"println":  boundedPrint("println", fmt.Sprintln),
	"printf":   printf,
	"html":     boundedPrint("html", template.HTMLEscaper),
	"js":       boundedPrint("js", template.JSEscaper),
	"urlquery": boundedPrint("urlquery", template.URLQueryEscaper),
}

func tooLong(fn string, n int) error {
	return fmt.Errorf("%w: %s: %d bytes, more than %d", ErrLimit, fn, n, maxTemplateString)
}

func checkArg(fn, s string) error {
	if len(s) > maxTemplateString {
		return tooLong(fn, len(s))
	}
	return nil
}

func checkResult(fn, s string) (string, error) {
	if len(s) > maxTemplateString {
		return "", tooLong(fn, len(s))
	}
	return s, nil
}

// jsonString is Docker's json: v encoded without HTML escaping. A list or
// map is measured before it is encoded.
func jsonString(v any) (string, error) {
	size := 0
	switch v := v.(type) {
	case string:
		size = len(v)
	case labelMap:
		for k, e := range v {
			if size += len(k) + len(e) + 6; size > maxTemplateString {
				break
			}
		}
	case envList:
		size = listSize(v)
	case []string:
		size = listSize(v)
	}
	if size > maxTemplateString {
		return "", tooLong("json", size)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return checkResult("json", strings.TrimSpace(b.String()))
}

// listSize is at least what printing or encoding l takes, counted only
// until it passes maxTemplateString.
func listSize(l []string) int {
	size := 2
	for _, s := range l {
		if size += len(s) + 3; size > maxTemplateString {
			break
		}
	}
	return size
}

// maxSplitParts bounds what split returns: split .Name "" would otherwise
// make a slice header per character.
const maxSplitParts = 256

func split(s, sep string) ([]string, error) {
	if err := checkArg("split", s); err != nil {
		return nil, err
	}
	if n := strings.Count(s, sep) + 1; n > maxSplitParts {
		return nil, fmt.Errorf("%w: split: %d parts, more than %d", ErrLimit, n, maxSplitParts)
	}
	return strings.Split(s, sep), nil
}

func join(elems []string, sep string) (string, error) {
	size := 0
	for i, e := range elems {
		if size += len(e); i > 0 {
			size += len(sep)
		}
		if size > maxTemplateString {
			return "", tooLong("join", size)
		}
	}
	return strings.Join(elems, sep), nil
}

func lower(s string) (string, error) {
	if err := checkArg("lower", s); err != nil {
		return "", err
	}
	return checkResult("lower", strings.ToLower(s))
}

func upper(s string) (string, error) {
	if err := checkArg("upper", s); err != nil {
		return "", err
	}
	return checkResult("upper", strings.ToUpper(s))
}

// title upper-cases the first letter of each word, as the deprecated
// strings.Title Docker uses does for the ASCII and Latin text names hold.
func title(s string) (string, error) {
	if err := checkArg("title", s); err != nil {
		return "", err
	}
	prev := ' '
	return checkResult("title", strings.Map(func(r rune) rune {
		isSep := unicode.IsSpace(prev) || (prev < utf8.RuneSelf && prev != '_' &&
			!unicode.IsLetter(prev) && !unicode.IsDigit(prev))
		prev = r
		if isSep {
			return unicode.ToTitle(r)
		}
		return r
	}, s))
}

// pad is Docker's pad: prefix spaces, s, suffix spaces, and s unchanged if
// it is empty. The spaces together are at most MaxLabelValueBytes, checked
// before anything is allocated: a label value cannot hold more.
func pad(s string, prefix, suffix int) (string, error) {
	prefix, suffix = max(prefix, 0), max(suffix, 0)
	if prefix > MaxLabelValueBytes || suffix > MaxLabelValueBytes || prefix+suffix > MaxLabelValueBytes {
		return "", padError(prefix, suffix)
	}
	if s == "" {
		return s, nil
	}
	if n := prefix + len(s) + suffix; n > maxTemplateString {
		return "", tooLong("pad", n)
	}
	return strings.Repeat(" ", prefix) + s + strings.Repeat(" ", suffix), nil
}

func padError(prefix, suffix int) error {
	return fmt.Errorf("%w: pad adds %d+%d spaces, more than a label value holds (%d bytes, Loki's max_label_value_length)",
		ErrLimit, prefix, suffix, MaxLabelValueBytes)
}

// truncateBytes returns at most n bytes of s, fewer if the n-th would split
// a UTF-8 sequence. It never allocates, whatever n is.
func truncateBytes(s string, n int) string {
	if n < 0 {
		n = 0
	}
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// boundedPrint wraps one of text/template's printing builtins: its
// arguments print within maxTemplateString each (see printable), and so
// does its result.
func boundedPrint(name string, f func(...any) string) func(...any) (string, error) {
	return func(args ...any) (string, error) {
		return checkResult(name, f(printable(args)...))
	}
}

// printf is text/template's printf with widths and precisions bounded:
// fmt allows up to a million for each verb.
func printf(format string, args ...any) (string, error) {
	if err := checkFormat(format); err != nil {
		return "", err
	}
	return checkResult("printf", fmt.Sprintf(format, printable(args)...))
}

// checkFormat refuses a printf format that could make fmt write more than
// a label value holds whatever its arguments: a '*' width or precision, or
// widths and precisions adding up to more than MaxLabelValueBytes.
func checkFormat(format string) error {
	if err := checkArg("printf", format); err != nil {
		return err
	}
	total := 0
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
		n := 0
	verb:
		for i++; i < len(format); i++ {
			switch c := format[i]; {
			case c >= '0' && c <= '9':
				n = n*10 + int(c-'0')
				if total+n > MaxLabelValueBytes {
					return fmt.Errorf("%w: printf: widths and precisions add up to more than a label value holds (%d bytes, Loki's max_label_value_length)",
						ErrLimit, MaxLabelValueBytes)
				}
			case c == '*':
				return fmt.Errorf("%w: printf: a '*' width or precision is not supported in a label template", ErrLimit)
			case c == '[':
				// An argument index, not a width.
				if end := strings.IndexByte(format[i:], ']'); end >= 0 {
					i += end
				}
				total, n = total+n, 0
			case c == '.' || c == '+' || c == '-' || c == '#' || c == ' ':
				total, n = total+n, 0
			default:
				break verb
			}
		}
		total += n
	}
	return nil
}

// printable replaces what fmt would print without bound (a container's
// labels and environment, the container itself, which %#v or %d print
// field by field whatever their String methods say) with their bounded
// String. It may modify args, which text/template made for the call.
func printable(args []any) []any {
	for i, a := range args {
		switch a := a.(type) {
		case labelMap:
			args[i] = a.String()
		case envList:
			args[i] = a.String()
		case *tagContext:
			args[i] = a.String()
		}
	}
	return args
}
