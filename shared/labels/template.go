package labels

import (
	"bytes"
	"encoding/json"
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
// one copy is all a Build allocates for it, and only when a template needs it. Not supported: .Command,
// .ContainerEntrypoint, .ContainerArgs, .Config, .LogPath, .ExtraAttributes
// (capture-style specific or unknown to the sidecar); using them fails
// Validate.
type tagContext struct {
	c    metadata.Container
	host string
}

// ID is the first 12 characters of the container id.
func (t *tagContext) ID() string { return truncateBytes(t.c.ID, 12) }

// FullID is the container id.
func (t *tagContext) FullID() string { return t.c.ID }

// Name is the container name without a leading '/'.
func (t *tagContext) Name() string { return strings.TrimPrefix(t.c.Name, "/") }

// ImageID is the first 12 characters of the image id, which like Docker's
// includes the algorithm: "sha256:1234a".
func (t *tagContext) ImageID() string { return truncateBytes(t.c.ImageID, 12) }

// ImageFullID is the image id.
func (t *tagContext) ImageFullID() string { return t.c.ImageID }

// ImageName is the image name the container was created from.
func (t *tagContext) ImageName() string { return t.c.ImageName }

// DaemonName is Docker's daemon name ("docker").
func (t *tagContext) DaemonName() string { return t.c.DaemonName }

// Hostname is the host name the Builder was given. Docker returns
// os.Hostname(), which inside a plugin or the sidecar's container may not be
// the host's.
func (t *tagContext) Hostname() string { return t.host }

// ContainerID is logger.Info.ContainerID.
func (t *tagContext) ContainerID() string { return t.c.ID }

// ContainerName is logger.Info.ContainerName, which has the leading '/'.
func (t *tagContext) ContainerName() string { return "/" + strings.TrimPrefix(t.c.Name, "/") }

// ContainerImageID is logger.Info.ContainerImageID.
func (t *tagContext) ContainerImageID() string { return t.c.ImageID }

// ContainerImageName is logger.Info.ContainerImageName.
func (t *tagContext) ContainerImageName() string { return t.c.ImageName }

// ContainerLabels is logger.Info.ContainerLabels.
func (t *tagContext) ContainerLabels() map[string]string { return t.c.Labels }

// ContainerEnv is logger.Info.ContainerEnv.
func (t *tagContext) ContainerEnv() []string { return t.c.Env }

// ContainerCreated is logger.Info.ContainerCreated.
func (t *tagContext) ContainerCreated() time.Time { return t.c.Created }

// sampleTagContext is the container Validate dry-runs templates on.
var sampleTagContext = &tagContext{
	c: metadata.Container{
		ID:         strings.Repeat("0123456789abcdef", 4),
		Name:       "sample",
		ImageName:  "sample:latest",
		ImageID:    "sha256:" + strings.Repeat("fedcba9876543210", 4),
		Labels:     map[string]string{metadata.LabelComposeProject: "sample", metadata.LabelComposeService: "sample"},
		Env:        []string{"PATH=/usr/bin"},
		Created:    time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		DaemonName: "docker",
	},
	host: "sample-host",
}

// templateFuncs are Docker's tag template functions (moby
// daemon/logger/templates/templates.go), with the same names and arguments.
// Differences, all where Docker would panic or cut a character in half:
// truncate never splits a UTF-8 sequence, negative counts are zero.
var templateFuncs = template.FuncMap{
	"json":     jsonString,
	"split":    strings.Split,
	"join":     strings.Join,
	"title":    title,
	"lower":    strings.ToLower,
	"upper":    strings.ToUpper,
	"pad":      pad,
	"truncate": truncateBytes,
}

func jsonString(v any) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return strings.TrimSpace(b.String()), nil
}

// title upper-cases the first letter of each word, as the deprecated
// strings.Title Docker uses does for the ASCII and Latin text names hold.
func title(s string) string {
	prev := ' '
	return strings.Map(func(r rune) rune {
		isSep := unicode.IsSpace(prev) || (prev < utf8.RuneSelf && prev != '_' &&
			!unicode.IsLetter(prev) && !unicode.IsDigit(prev))
		prev = r
		if isSep {
			return unicode.ToTitle(r)
		}
		return r
	}, s)
}

func pad(s string, prefix, suffix int) string {
	if s == "" {
		return s
	}
	return strings.Repeat(" ", max(prefix, 0)) + s + strings.Repeat(" ", max(suffix, 0))
}

// truncateBytes returns at most n bytes of s, fewer if the n-th would split
// a UTF-8 sequence.
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
