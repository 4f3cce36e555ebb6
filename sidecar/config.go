// Package sidecar is logferry's host agent for containers that keep a
// non-plugin log driver: it discovers containers through the Engine API,
// routes each to the json-file tailer or the Engine's logs stream (or skips
// it), and ships what it reads through the shared core, moving its saved
// positions only after Loki has accepted the lines.
package sidecar

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/logferry/logferry/shared/logopts"
	"github.com/logferry/logferry/shared/loki"
	"github.com/logferry/logferry/shared/pipeline"
	"github.com/logferry/logferry/shared/spool"
)

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("invalid sidecar configuration")

// Config is the sidecar's configuration: its own settings, and the log
// options (the plugin's log-opt names) applied to every container it ships.
type Config struct {
	DockerHost    string        // docker-host: "" = $DOCKER_HOST, then the local socket
	StateDir      string        // state-dir: positions
	Listen        string        // listen: /metrics and /ready
	ContainersDir string        // containers-dir: where json-file logs are
	PluginName    string        // plugin-name: containers on this log driver are the plugin's
	PollInterval  time.Duration // poll-interval: file polling when fsnotify cannot watch
	// Fanotify (fanotify: auto, on, off) holds the log files dockerd
	// closes at a rotation until they are read, so a log that rotates
	// faster than the sidecar is scheduled loses nothing. It needs
	// CAP_SYS_ADMIN; auto uses it when permitted, on fails the start
	// without it.
	Fanotify  string
	HostLabel string // host-label: "" = the Engine's host name, as the plugin's hostname
	LogLevel  string // log-level
	// DrainTimeout (drain-timeout) bounds how long the lines of a stopped
	// container, or of an endpoint no container uses any more, keep being
	// retried against Loki before they are dropped and counted.
	DrainTimeout time.Duration
	// Overflow (overflow, spool-*) says what happens to lines Loki cannot
	// take now: block (default) pauses reading files, spool writes them to
	// a disk spool under spool-dir (positions then advance once they are
	// spooled), drop drops and counts them.
	Overflow spool.Settings
	// LabelOverrides (label-overrides) lets a container's
	// logferry.<option> labels set the options that shape its own data
	// (OverridableOptions); off by default, because an image's labels
	// become its containers' labels. OverrideTenants
	// (label-override-tenants) are the tenants such a label may choose.
	LabelOverrides  bool
	OverrideTenants []string
	// Pprof (pprof) serves /debug/pprof/ on the listener; off by default.
	Pprof bool
	// WatchConfig (watch-config) reloads when the --config file changes,
	// as SIGHUP does; off by default.
	WatchConfig bool
	// File is the --config file ("" none).
	File string
	// Selection (include-*, exclude-*, selection-relabel-config) says
	// which containers are shipped; see Selection.
	Selection Selection
	// Options are log-opts for every container (see ContainerOptions).
	Options map[string]string
	// Warnings are what LoadConfig found risky but valid, for the log.
	Warnings []string
	// Guard (max-label-values, max-streams) bounds, per endpoint, the
	// labels pipelines take from lines. Guards is what the caller makes
	// of it (pipeline.NewGuards) before NewRouter; nil: no bound.
	Guard  pipeline.GuardConfig
	Guards *pipeline.Guards
	// Effective is every setting and log option as merged (defaults, the
	// file, the environment, flags), with where each came from, for
	// check-config.
	Effective []Setting
}

// Setting is one merged setting: its key, value and origin ("default",
// the file's path, "env NAME" or "flag").
type Setting struct {
	Key, Value, Origin string
}

// Own keys and their defaults.
var ownKeys = map[string]string{
	"docker-host":    "",
	"state-dir":      "/var/lib/logferry-sidecar",
	"listen":         "127.0.0.1:9376",
	"containers-dir": "/var/lib/docker/containers",
	"plugin-name":    "logferry",
	"poll-interval":  "1s",
	"fanotify":       "auto",
	"host-label":     "",
	"log-level":      "info",
	"drain-timeout":  "5m",
	"pprof":          "false",
	"watch-config":   "false",
	// The cardinality guard, see pipeline.GuardConfig.
	"max-label-values": "1000",
	"max-streams":      "10000",
	// Selection: see Selection; lists are comma-separated.
	"include-labels":           "",
	"exclude-labels":           "",
	"include-names":            "",
	"exclude-names":            "",
	"include-images":           "",
	"exclude-images":           "",
	"selection-relabel-config": "",
	// label-overrides: see Config.LabelOverrides.
	"label-overrides":        "false",
	"label-override-tenants": "",
	// spool.SettingKeys; spool-dir's default is <state-dir>/spool.
	"overflow":          spool.OverflowBlock,
	"spool-dir":         "",
	"spool-max-size":    "1g",
	"spool-fsync":       "1s",
	"spool-full-policy": string(spool.DropOldest),
}

// LabelPrefix marks per-container overrides: logferry.loki-tenant-id=t1.
const LabelPrefix = "logferry."

// EnvPrefix names settings in the environment: LOGFERRY_LOKI_URL.
const EnvPrefix = "LOGFERRY_"

func envName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, "-", "_"))
}

// LoadConfig reads the configuration: defaults, then the YAML file named by
// --config (or LOGFERRY_CONFIG), then the environment (LOGFERRY_<KEY>), then
// flags (--<key>), the later winning. Keys are the sidecar's own and every
// log-opt the plugin accepts; an unknown key is an error naming it, in
// every source.
func LoadConfig(args []string, environ []string, stderr io.Writer) (Config, error) {
	values := maps.Clone(ownKeys)
	optKeys := logopts.Keys()
	known := func(k string) bool {
		_, own := ownKeys[k]
		return own || slices.Contains(optKeys, k)
	}

	fs := flag.NewFlagSet("logferry-sidecar", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", "", "YAML configuration file (keys as the flags, without --)")
	flagVals := map[string]*string{}
	for k, def := range ownKeys {
		flagVals[k] = fs.String(k, def, "sidecar setting (env "+envName(k)+")")
	}
	for _, k := range optKeys {
		flagVals[k] = fs.String(k, "", "log option for every container, as the plugin's --log-opt "+k+" (env "+envName(k)+")")
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("%w: unexpected arguments %q", ErrConfig, fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	file := *configFile
	if file == "" {
		file = env[EnvPrefix+"CONFIG"]
	}
	opts := map[string]string{}
	origin := map[string]string{}
	put := func(k, v, from string) {
		if _, own := ownKeys[k]; own {
			values[k] = v
		} else {
			opts[k] = v
		}
		origin[k] = from
	}
	if file != "" {
		fromFile, err := readConfigFile(file)
		if err != nil {
			return Config{}, err
		}
		for _, k := range slices.Sorted(maps.Keys(fromFile)) {
			if !known(k) {
				return Config{}, fmt.Errorf("%s: %s: %w: unknown key", file, k, ErrConfig)
			}
			put(k, fromFile[k], file)
		}
	}
	for k, v := range env {
		if !strings.HasPrefix(k, EnvPrefix) || k == EnvPrefix+"CONFIG" {
			continue
		}
		key := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(k, EnvPrefix), "_", "-"))
		if !known(key) {
			return Config{}, fmt.Errorf("%s: %w: unknown setting (keys: the flags of logferry-sidecar -h)", k, ErrConfig)
		}
		put(key, v, "env "+k)
	}
	for k := range set {
		if k != "config" {
			put(k, *flagVals[k], "flag")
		}
	}
	poll, err := time.ParseDuration(values["poll-interval"])
	if err != nil || poll <= 0 {
		return Config{}, fmt.Errorf("poll-interval: %w: want a positive duration such as 1s", ErrConfig)
	}
	drain, err := time.ParseDuration(values["drain-timeout"])
	if err != nil || drain <= 0 {
		return Config{}, fmt.Errorf("drain-timeout: %w: want a positive duration such as 5m", ErrConfig)
	}
	overrides, err := strconv.ParseBool(values["label-overrides"])
	if err != nil {
		return Config{}, fmt.Errorf("label-overrides: %w: want true or false", ErrConfig)
	}
	pprofOn, err := strconv.ParseBool(values["pprof"])
	if err != nil {
		return Config{}, fmt.Errorf("pprof: %w: want true or false", ErrConfig)
	}
	watch, err := strconv.ParseBool(values["watch-config"])
	if err != nil {
		return Config{}, fmt.Errorf("watch-config: %w: want true or false", ErrConfig)
	}
	if watch && file == "" {
		return Config{}, fmt.Errorf("watch-config: %w: needs a --config file to watch", ErrConfig)
	}
	var guard pipeline.GuardConfig
	for key, field := range map[string]*int{"max-label-values": &guard.MaxLabelValues, "max-streams": &guard.MaxStreams} {
		n, err := strconv.Atoi(values[key])
		if err != nil || n < 1 {
			return Config{}, fmt.Errorf("%s: %w: want a positive whole number", key, ErrConfig)
		}
		*field = n
	}
	selection, err := parseSelection(values)
	if err != nil {
		return Config{}, err
	}
	var tenants []string
	for _, t := range strings.Split(values["label-override-tenants"], ",") {
		if t = strings.TrimSpace(t); t != "" {
			tenants = append(tenants, t)
		}
	}
	overflow, err := spool.ParseSettings(func(k string) string { return values[k] }, func(k string) string { return k },
		filepath.Join(values["state-dir"], "spool"), spool.OverflowBlock, spool.OverflowSpool, spool.OverflowDrop)
	if err != nil {
		return Config{}, fmt.Errorf("%w (%w)", err, ErrConfig)
	}
	c := Config{
		DockerHost: values["docker-host"], StateDir: values["state-dir"], Listen: values["listen"],
		ContainersDir: values["containers-dir"], PluginName: values["plugin-name"], PollInterval: poll,
		Fanotify:  values["fanotify"],
		HostLabel: values["host-label"], LogLevel: values["log-level"], DrainTimeout: drain,
		Overflow: overflow, Options: opts,
		LabelOverrides: overrides, OverrideTenants: tenants, Pprof: pprofOn, Selection: selection, Guard: guard,
		WatchConfig: watch, File: file,
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	for _, k := range slices.Sorted(maps.Keys(values)) {
		c.Effective = append(c.Effective, Setting{Key: k, Value: values[k], Origin: cmp.Or(origin[k], "default")})
	}
	for _, k := range slices.Sorted(maps.Keys(opts)) {
		c.Effective = append(c.Effective, Setting{Key: k, Value: opts[k], Origin: origin[k]})
	}
	if set["loki-url"] && loki.URLHasPassword(*flagVals["loki-url"]) {
		c.Warnings = append(c.Warnings, "--loki-url carries a password: every local user can read it in /proc/<pid>/cmdline; "+
			"set it in the environment ("+envName("loki-url")+") or the --config file, or use --loki-bearer-token-file")
	}
	if len(c.OverrideTenants) > 0 && !c.LabelOverrides {
		c.Warnings = append(c.Warnings, "label-override-tenants is set but label-overrides is off: no label can choose a tenant")
	}
	return c, nil
}

// Validate checks the settings and that the log options parse.
func (c Config) Validate() error {
	if c.StateDir == "" {
		return fmt.Errorf("state-dir: %w: must not be empty", ErrConfig)
	}
	if c.ContainersDir == "" {
		return fmt.Errorf("containers-dir: %w: must not be empty", ErrConfig)
	}
	if c.PluginName == "" {
		return fmt.Errorf("plugin-name: %w: must not be empty", ErrConfig)
	}
	switch c.Fanotify {
	case "", "auto", "on", "off": // "": auto
	default:
		return fmt.Errorf("fanotify: %w: want auto, on or off", ErrConfig)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log-level: %w: want debug, info, warn or error", ErrConfig)
	}
	if _, err := logopts.Parse(optionDefaults(), c.Options); err != nil {
		return err
	}
	return nil
}

// yamlValued are the options whose value is itself YAML: in the --config
// file they may be written as YAML lists, not only as a string.
var yamlValued = map[string]bool{"loki-relabel-config": true, "loki-pipeline-stages": true, selectionRelabelKey: true}

func readConfigFile(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	var raw map[string]any
	if err := yaml.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("%s: %w: %v", path, ErrConfig, err)
	}
	out := map[string]string{}
	for k, v := range raw {
		switch v := v.(type) {
		case string:
			out[k] = v
		case int, int64, float64, bool:
			out[k] = fmt.Sprint(v)
		case nil:
			out[k] = ""
		case []any:
			if !yamlValued[k] {
				return nil, fmt.Errorf("%s: %s: %w: want a single value", path, k, ErrConfig)
			}
			// Written as YAML in the file, read as the YAML text the
			// log-opt takes.
			b, err := yaml.Marshal(v)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w: %v", path, k, ErrConfig, err)
			}
			out[k] = string(b)
		default:
			return nil, fmt.Errorf("%s: %s: %w: want a single value", path, k, ErrConfig)
		}
	}
	return out, nil
}

// DefaultQueueBytes is the sidecar's loki-queue-size unless configured:
// smaller than the plugin's 64 MiB, because the sidecar's lines wait on disk
// (policy block: reading pauses while the queue is full) and its rotated
// files are held open until read, so the queue only has to keep Loki busy.
// 16 MiB is 16 default batches; it keeps the sidecar's RSS under 64 MiB at
// full speed (BENCHMARKS.md, Sidecar).
const DefaultQueueBytes = 16 << 20

func optionDefaults() logopts.Options {
	o := logopts.Defaults()
	o.Loki.QueueBytes = DefaultQueueBytes
	return o
}
