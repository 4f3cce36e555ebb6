// Package logopts owns the one parser from a string map (the plugin's
// log-opts, the sidecar's configuration and container-label overrides) to
// the configurations of the shared packages. Names and defaults follow
// Grafana's Loki Docker driver where it has the option.
package logopts

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/logferry/logferry/shared/labels"
	"github.com/logferry/logferry/shared/loki"
	"github.com/logferry/logferry/shared/pipeline"
)

var (
	// ErrUnknownOption is wrapped for a key logferry does not know.
	ErrUnknownOption = errors.New("unknown option")
	// ErrUnsupportedOption is wrapped for a Loki driver option logferry
	// refuses, with the reason.
	ErrUnsupportedOption = errors.New("option not supported by logferry")
	// ErrInvalidValue is wrapped for a value that does not parse.
	ErrInvalidValue = errors.New("invalid value")
)

// FileConfig is the local copy the plugin keeps for `docker logs`.
type FileConfig struct {
	MaxSize  int64 // max-size: bytes per file before rotation
	MaxFile  int   // max-file: files kept, the current one included
	KeepFile bool  // keep-file: keep the copy after the container is removed
	NoFile   bool  // no-file: keep no copy (docker logs then has nothing to read)
}

// Options is everything a map of log-opts configures.
type Options struct {
	Loki   loki.Config
	Labels labels.Config
	File   FileConfig
	// MaxLineSize (max-line-size, logferry's own) is where a line that the
	// daemon split into 16 KiB chunks is cut when joined; the cut is counted.
	MaxLineSize int
	// Pipeline (loki-pipeline-stages or loki-pipeline-stage-file) is the
	// parsed Promtail stage list; nil: none. Each container runs its own
	// Instance of it.
	Pipeline *pipeline.Pipeline
	// pipelineFrom names the option Pipeline came from, to refuse both.
	pipelineFrom string
	// Multiline (multiline, logferry's own) is a preset multiline joiner:
	// java, python, go or nodejs; nil: none (a pipeline may have its own
	// multiline stage: see MultilineConfig).
	Multiline *pipeline.MultilineConfig
}

// MultilineConfig is the multiline joiner a container's lines go through:
// the multiline preset, or the pipeline's leading multiline stage; nil:
// none.
func (o Options) MultilineConfig() *pipeline.MultilineConfig {
	if o.Multiline != nil {
		return o.Multiline
	}
	return o.Pipeline.Multiline()
}

// Defaults.
const (
	DefaultMaxSize     = 20 << 20
	DefaultMaxFile     = 5
	DefaultMaxLineSize = 256 << 10
	maxMaxLineSize     = 64 << 20
)

// Defaults returns Options with every default and no Loki URL.
func Defaults() Options {
	return Options{
		Loki:        loki.DefaultConfig(),
		Labels:      labels.DefaultConfig(),
		File:        FileConfig{MaxSize: DefaultMaxSize, MaxFile: DefaultMaxFile},
		MaxLineSize: DefaultMaxLineSize,
	}
}

// setter parses one value into o.
type setter func(o *Options, v string) error

// options maps each accepted key to its setter. The daemon adds mode and
// max-buffer-size to every plugin's options; they govern the daemon's side
// of the FIFO and need nothing from us.
var options = map[string]setter{
	"loki-url":                      func(o *Options, v string) error { o.Loki.URL = v; return nil },
	"loki-tenant-id":                func(o *Options, v string) error { o.Loki.TenantID = v; return nil },
	"loki-batch-size":               intSize(func(o *Options) *int { return &o.Loki.BatchSize }),
	"loki-batch-wait":               duration(func(o *Options) *time.Duration { return &o.Loki.BatchWait }),
	"loki-timeout":                  duration(func(o *Options) *time.Duration { return &o.Loki.Timeout }),
	"loki-min-backoff":              duration(func(o *Options) *time.Duration { return &o.Loki.MinBackoff }),
	"loki-max-backoff":              duration(func(o *Options) *time.Duration { return &o.Loki.MaxBackoff }),
	"loki-retries":                  integer(func(o *Options) *int { return &o.Loki.Retries }),
	"loki-tls-ca-file":              func(o *Options, v string) error { o.Loki.TLSCAFile = v; return nil },
	"loki-tls-cert-file":            func(o *Options, v string) error { o.Loki.TLSCertFile = v; return nil },
	"loki-tls-key-file":             func(o *Options, v string) error { o.Loki.TLSKeyFile = v; return nil },
	"loki-tls-server-name":          func(o *Options, v string) error { o.Loki.TLSServerName = v; return nil },
	"loki-tls-insecure-skip-verify": boolean(func(o *Options) *bool { return &o.Loki.TLSInsecureSkipVerify }),
	"loki-proxy-url":                func(o *Options, v string) error { o.Loki.ProxyURL = v; return nil },
	"loki-bearer-token-file":        func(o *Options, v string) error { o.Loki.BearerTokenFile = v; return nil },
	"loki-queue-size":               intSize(func(o *Options) *int { return &o.Loki.QueueBytes }),
	"loki-external-labels":          func(o *Options, v string) error { o.Labels.ExternalLabels = v; return nil },
	"labels":                        func(o *Options, v string) error { o.Labels.Labels = splitList(v); return nil },
	"labels-regex":                  func(o *Options, v string) error { o.Labels.LabelsRegex = v; return nil },
	"env":                           func(o *Options, v string) error { o.Labels.Env = splitList(v); return nil },
	"env-regex":                     func(o *Options, v string) error { o.Labels.EnvRegex = v; return nil },
	"loki-relabel-config":           func(o *Options, v string) error { o.Labels.RelabelConfig = v; return nil },
	"max-size":                      size64(func(o *Options) *int64 { return &o.File.MaxSize }),
	"max-file":                      integer(func(o *Options) *int { return &o.File.MaxFile }),
	"keep-file":                     boolean(func(o *Options) *bool { return &o.File.KeepFile }),
	"no-file":                       boolean(func(o *Options) *bool { return &o.File.NoFile }),
	"max-line-size":                 intSize(func(o *Options) *int { return &o.MaxLineSize }),
	"multiline": func(o *Options, v string) error {
		v = strings.TrimSpace(v)
		if v == "" {
			o.Multiline = nil
			return nil
		}
		c, err := pipeline.MultilinePreset(v)
		if err != nil {
			return fmt.Errorf("want one of %s", strings.Join(pipeline.MultilinePresets(), ", "))
		}
		o.Multiline = c
		return nil
	},
	"loki-pipeline-stages":     pipelineSetter("loki-pipeline-stages", func(v string) (string, error) { return v, nil }),
	"loki-pipeline-stage-file": pipelineSetter("loki-pipeline-stage-file", readStageFile),
	"mode":                     func(*Options, string) error { return nil },
	"max-buffer-size":          func(*Options, string) error { return nil },
}

// refused are options of Grafana's Loki driver that logferry does not
// implement, with the reason shown to the user.
var refused = map[string]string{
	"tag": "use loki-external-labels, which takes the same templates",
}

// pipelineSetter parses a stage list that text(v) returns. Only one of
// the two pipeline options may be given, as in the Loki driver.
func pipelineSetter(key string, text func(v string) (string, error)) setter {
	return func(o *Options, v string) error {
		if o.pipelineFrom != "" && o.pipelineFrom != key {
			return fmt.Errorf("give only one of loki-pipeline-stages and loki-pipeline-stage-file")
		}
		t, err := text(v)
		if err != nil {
			return err
		}
		p, err := pipeline.ParseOption(key, t)
		if err != nil {
			return err
		}
		o.Pipeline, o.pipelineFrom = p, key
		return nil
	}
}

// maxStageFile bounds a loki-pipeline-stage-file, as the stage list's own
// bound does for loki-pipeline-stages.
const maxStageFile = 64 << 10

// readStageFile reads loki-pipeline-stage-file: a path the operator gives
// (inside the plugin's root filesystem for the plugin; on the host for the
// sidecar, which never takes it from a container label).
func readStageFile(path string) (string, error) {
	if strings.TrimSpace(path) == "" {
		return "", nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxStageFile+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxStageFile {
		return "", fmt.Errorf("larger than %d bytes", maxStageFile)
	}
	return string(b), nil
}

// Keys returns every accepted key, sorted.
func Keys() []string { return slices.Sorted(maps.Keys(options)) }

// secret reports whether a key's value must never appear in error text.
func secret(key string) bool { return key == "loki-url" || key == "loki-proxy-url" }

// Parse applies m on top of base (usually Defaults(), perhaps with an
// endpoint from the environment) and validates the result. Every bad key is
// reported, each error naming its key; values of keys that may hold
// credentials are never repeated.
func Parse(base Options, m map[string]string) (Options, error) {
	o := base
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v := m[k]
		if why, ok := refused[k]; ok {
			errs = append(errs, fmt.Errorf("%s: %w: %s", k, ErrUnsupportedOption, why))
			continue
		}
		set, ok := options[k]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: %w%s", printable(k), ErrUnknownOption, suggest(k)))
			continue
		}
		if err := set(&o, v); err != nil {
			shown := strconv.Quote(v)
			if secret(k) {
				shown = "(value hidden)"
			}
			errs = append(errs, fmt.Errorf("%s: %w %s: %w", k, ErrInvalidValue, shown, err))
		}
	}
	if len(errs) > 0 {
		return Options{}, errors.Join(errs...)
	}
	if err := o.Validate(); err != nil {
		return Options{}, err
	}
	return o, nil
}

// Validate checks the whole configuration; errors name the option.
func (o Options) Validate() error {
	if err := o.Loki.Validate(); err != nil {
		return err
	}
	if err := o.Labels.Validate(); err != nil {
		return err
	}
	if o.File.MaxSize <= 0 {
		return fmt.Errorf("max-size: %w: must be positive", ErrInvalidValue)
	}
	if o.File.MaxFile < 1 {
		return fmt.Errorf("max-file: %w: must be at least 1", ErrInvalidValue)
	}
	if o.Multiline != nil && o.Pipeline.Multiline() != nil {
		return fmt.Errorf("multiline: %w: the pipeline (%s) has a multiline stage already; give one", ErrInvalidValue, o.pipelineFrom)
	}
	if o.MaxLineSize < 16<<10 || o.MaxLineSize > maxMaxLineSize {
		return fmt.Errorf("max-line-size: %w: must be between 16KiB and 64MiB", ErrInvalidValue)
	}
	return nil
}

// printable keeps an unknown key readable in an error without letting it
// inject line breaks or control characters into logs.
func printable(k string) string {
	if len(k) > 64 {
		k = k[:64] + "..."
	}
	if strings.IndexFunc(k, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return strconv.Quote(k)
	}
	return k
}

// suggest names a known key close to an unknown one ("loki-batchsize").
func suggest(k string) string {
	norm := func(s string) string {
		return strings.NewReplacer("-", "", "_", "", ".", "").Replace(strings.ToLower(s))
	}
	for _, known := range Keys() {
		if norm(known) == norm(k) {
			return fmt.Sprintf(" (did you mean %s?)", known)
		}
	}
	return ""
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func duration(field func(*Options) *time.Duration) setter {
	return func(o *Options, v string) error {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			return errors.New("want a duration such as 500ms, 1s or 5m")
		}
		*field(o) = d
		return nil
	}
}

func integer(field func(*Options) *int) setter {
	return func(o *Options, v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return errors.New("want a whole number")
		}
		*field(o) = n
		return nil
	}
}

func boolean(field func(*Options) *bool) setter {
	return func(o *Options, v string) error {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return errors.New("want true or false")
		}
		*field(o) = b
		return nil
	}
}

func intSize(field func(*Options) *int) setter {
	return func(o *Options, v string) error {
		n, err := ParseSize(v)
		if err != nil {
			return err
		}
		if n > int64(^uint(0)>>1) {
			return errors.New("too large")
		}
		*field(o) = int(n)
		return nil
	}
}

func size64(field func(*Options) *int64) setter {
	return func(o *Options, v string) error {
		n, err := ParseSize(v)
		if err != nil {
			return err
		}
		*field(o) = n
		return nil
	}
}

// ParseSize reads a byte size as Docker's max-size does: a number with an
// optional binary unit k, m, g (also kb, kib, ...; any case): "10m" is
// 10 MiB. A plain number is bytes, as in the Loki driver's loki-batch-size.
func ParseSize(v string) (int64, error) {
	s := strings.ToLower(strings.TrimSpace(v))
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	num, unit := s[:i], strings.TrimSpace(s[i:])
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || num == "" {
		return 0, errors.New("want a size such as 1048576, 512k or 10m")
	}
	mult := map[string]float64{
		"": 1, "b": 1,
		"k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
		"m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
		"g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
	}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("unknown size unit %q (use k, m or g)", unit)
	}
	n := f * mult
	if n > 1<<50 {
		return 0, errors.New("too large")
	}
	return int64(n), nil
}

// DefaultValues returns, for the options whose value o holds as one
// setting, that value as Parse takes it: what an option left unset stands
// for, for check-config. Options without such a value (lists, templates,
// pipelines) are absent.
func (o Options) DefaultValues() map[string]string {
	d := func(v time.Duration) string { return v.String() }
	return map[string]string{
		"loki-batch-size":               strconv.Itoa(o.Loki.BatchSize),
		"loki-batch-wait":               d(o.Loki.BatchWait),
		"loki-timeout":                  d(o.Loki.Timeout),
		"loki-min-backoff":              d(o.Loki.MinBackoff),
		"loki-max-backoff":              d(o.Loki.MaxBackoff),
		"loki-retries":                  strconv.Itoa(o.Loki.Retries),
		"loki-queue-size":               strconv.Itoa(o.Loki.QueueBytes),
		"loki-tls-insecure-skip-verify": strconv.FormatBool(o.Loki.TLSInsecureSkipVerify),
		"max-size":                      strconv.FormatInt(o.File.MaxSize, 10),
		"max-file":                      strconv.Itoa(o.File.MaxFile),
		"keep-file":                     strconv.FormatBool(o.File.KeepFile),
		"no-file":                       strconv.FormatBool(o.File.NoFile),
		"max-line-size":                 strconv.Itoa(o.MaxLineSize),
	}
}

// Secret reports whether the value of option key may carry a credential
// (a URL's userinfo): print it through RedactURL.
func Secret(key string) bool { return secret(key) }
