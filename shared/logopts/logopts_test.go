package logopts

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logferry/logferry/shared/labels"
	"github.com/logferry/logferry/shared/loki"
)

const url = "http://127.0.0.1:3100/loki/api/v1/push"

func TestParseDefaultsMatchTheLokiDriver(t *testing.T) {
	o, err := Parse(Defaults(), map[string]string{"loki-url": url, "mode": "non-blocking", "max-buffer-size": "4m"})
	if err != nil {
		t.Fatal(err)
	}
	l := o.Loki
	if l.BatchSize != 1<<20 || l.BatchWait != time.Second || l.Timeout != 10*time.Second ||
		l.MinBackoff != 500*time.Millisecond || l.MaxBackoff != 5*time.Minute || l.Retries != 10 {
		t.Fatalf("defaults differ from the Loki driver's: %+v", l)
	}
}

func TestParseEveryKey(t *testing.T) {
	m := map[string]string{
		"loki-url":                      url,
		"loki-tenant-id":                "t1",
		"loki-batch-size":               "2048000",
		"loki-batch-wait":               "250ms",
		"loki-timeout":                  "3s",
		"loki-min-backoff":              "100ms",
		"loki-max-backoff":              "10s",
		"loki-retries":                  "0",
		"loki-tls-server-name":          "loki.internal",
		"loki-tls-insecure-skip-verify": "true",
		"loki-proxy-url":                "http://127.0.0.1:8080",
		"loki-queue-size":               "32m",
		"loki-external-labels":          "job=docker,cluster=c1",
		"labels":                        "team, tier",
		"labels-regex":                  "^com\\.example",
		"env":                           "APP_ENV",
		"env-regex":                     "^APP_",
		"max-size":                      "5m",
		"max-file":                      "2",
		"keep-file":                     "true",
		"no-file":                       "false",
		"max-line-size":                 "1m",
	}
	o, err := Parse(Defaults(), m)
	if err != nil {
		t.Fatal(err)
	}
	want := Options{
		Loki: loki.Config{URL: url, TenantID: "t1", BatchSize: 2048000, BatchWait: 250 * time.Millisecond,
			Timeout: 3 * time.Second, MinBackoff: 100 * time.Millisecond, MaxBackoff: 10 * time.Second, Retries: 0,
			TLSServerName: "loki.internal", TLSInsecureSkipVerify: true, ProxyURL: "http://127.0.0.1:8080", QueueBytes: 32 << 20},
		File:        FileConfig{MaxSize: 5 << 20, MaxFile: 2, KeepFile: true},
		MaxLineSize: 1 << 20,
	}
	if o.Loki != want.Loki || o.File != want.File || o.MaxLineSize != want.MaxLineSize {
		t.Fatalf("got %+v\nwant %+v", o, want)
	}
	if o.Labels.ExternalLabels != "job=docker,cluster=c1" || strings.Join(o.Labels.Labels, "|") != "team|tier" ||
		o.Labels.Env[0] != "APP_ENV" || o.Labels.LabelsRegex == "" || o.Labels.EnvRegex == "" {
		t.Fatalf("labels %+v", o.Labels)
	}
}

func TestParseErrorsNameTheOption(t *testing.T) {
	tests := []struct {
		name string
		m    map[string]string
		key  string
		is   error
	}{
		{"unknown", map[string]string{"loki-url": url, "loki-batchsize": "1"}, "loki-batchsize", ErrUnknownOption},
		{"refused", map[string]string{"loki-url": url, "tag": "{{.Name}}"}, "tag", ErrUnsupportedOption},
		{"bad pipeline", map[string]string{"loki-url": url, "loki-pipeline-stages": "- json: {}"}, "loki-pipeline-stages", ErrInvalidValue},
		{"bad preset", map[string]string{"loki-url": url, "multiline": "cobol"}, "multiline", ErrInvalidValue},
		{"two multilines", map[string]string{"loki-url": url, "multiline": "java", "loki-pipeline-stages": "- multiline:\n    firstline: x"}, "multiline", ErrInvalidValue},
		{"no stage file", map[string]string{"loki-url": url, "loki-pipeline-stage-file": "/nonexistent/stages.yml"}, "loki-pipeline-stage-file", ErrInvalidValue},
		{"bad duration", map[string]string{"loki-url": url, "loki-batch-wait": "soon"}, "loki-batch-wait", ErrInvalidValue},
		{"bad int", map[string]string{"loki-url": url, "loki-retries": "many"}, "loki-retries", ErrInvalidValue},
		{"bad bool", map[string]string{"loki-url": url, "no-file": "maybe"}, "no-file", ErrInvalidValue},
		{"bad size", map[string]string{"loki-url": url, "max-size": "10q"}, "max-size", ErrInvalidValue},
		{"no url", map[string]string{}, "loki-url", loki.ErrInvalidConfig},
		{"negative retries", map[string]string{"loki-url": url, "loki-retries": "-1"}, "loki-retries", loki.ErrInvalidConfig},
		{"bad label template", map[string]string{"loki-url": url, "loki-external-labels": "a={{.Nope}}"}, "loki-external-labels", labels.ErrInvalidOption},
		{"bad regex", map[string]string{"loki-url": url, "labels-regex": "("}, "labels-regex", labels.ErrInvalidOption},
		{"max-file zero", map[string]string{"loki-url": url, "max-file": "0"}, "max-file", ErrInvalidValue},
		{"line size", map[string]string{"loki-url": url, "max-line-size": "1k"}, "max-line-size", ErrInvalidValue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(Defaults(), tt.m)
			if !errors.Is(err, tt.is) {
				t.Fatalf("got %v, want %v", err, tt.is)
			}
			if !strings.HasPrefix(err.Error(), tt.key+":") {
				t.Fatalf("error %q does not start with the option name %q", err, tt.key)
			}
		})
	}
}

func TestParseReportsEveryBadKeyAndHidesSecrets(t *testing.T) {
	_, err := Parse(Defaults(), map[string]string{
		"loki-url":        "http://u:topsecret@[::1",
		"loki-batch-wait": "x",
		"colour":          "blue",
		"loki-batchsize":  "1",
	})
	msg := err.Error()
	for _, want := range []string{"colour:", "loki-batch-wait:", "did you mean loki-batch-size?"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	_, err = Parse(Defaults(), map[string]string{"loki-url": "http://u:topsecret@[::1"})
	if err == nil || strings.Contains(err.Error(), "topsecret") {
		t.Fatalf("error %v leaks the password", err)
	}
	_, err = Parse(Defaults(), map[string]string{"loki-url": "ftp://u:topsecret@host/"})
	if err == nil || strings.Contains(err.Error(), "topsecret") {
		t.Fatalf("error %v leaks the password", err)
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1048576", 1 << 20, true}, {"10m", 10 << 20, true}, {"10M", 10 << 20, true}, {"512k", 512 << 10, true},
		{"1g", 1 << 30, true}, {"1.5k", 1536, true}, {" 2 mb ", 2 << 20, true}, {"1MiB", 1 << 20, true},
		{"", 0, false}, {"m", 0, false}, {"10x", 0, false}, {"-1", 0, false}, {"1e99", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err == nil) != tt.ok || (tt.ok && got != tt.want) {
			t.Errorf("ParseSize(%q) = %d, %v", tt.in, got, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("loki-url", url, "loki-batch-size", "10m")
	f.Add("loki-external-labels", "a={{.Name}},b=c", "labels-regex", "^x")
	f.Add("max-size", "1.5g", "max-line-size", "16k")
	f.Add("loki-url", "http://u:p@h/", "loki-retries", "-0")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		m := map[string]string{k1: v1, k2: v2}
		if _, ok := m["loki-url"]; !ok {
			m["loki-url"] = url
		}
		o, err := Parse(Defaults(), m)
		if err != nil {
			// Every error names a key that was given.
			for k := range m {
				if strings.HasPrefix(err.Error(), printable(k)+":") {
					return
				}
			}
			t.Fatalf("error %q names no given key", err)
		}
		// What parses, validates.
		if err := o.Validate(); err != nil {
			t.Fatalf("parsed options do not validate: %v", err)
		}
	})
}

func TestPipelineOptions(t *testing.T) {
	const url = "http://127.0.0.1:3100/loki/api/v1/push"
	o, err := Parse(Defaults(), map[string]string{"loki-url": url, "loki-pipeline-stages": ""})
	if err != nil || o.Pipeline != nil {
		t.Fatalf("empty loki-pipeline-stages: %v, %v", o.Pipeline, err)
	}
	stages := "- regex:\n    expression: 'level=(?P<level>\\w+)'\n- labels:\n    level:\n"
	o, err = Parse(Defaults(), map[string]string{"loki-url": url, "loki-pipeline-stages": stages})
	if err != nil || o.Pipeline == nil {
		t.Fatalf("loki-pipeline-stages: %v, %v", o.Pipeline, err)
	}
	file := filepath.Join(t.TempDir(), "stages.yml")
	if err := os.WriteFile(file, []byte(stages), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err = Parse(Defaults(), map[string]string{"loki-url": url, "loki-pipeline-stage-file": file})
	if err != nil || o.Pipeline == nil {
		t.Fatalf("loki-pipeline-stage-file: %v, %v", o.Pipeline, err)
	}
	_, err = Parse(Defaults(), map[string]string{"loki-url": url, "loki-pipeline-stage-file": file, "loki-pipeline-stages": stages})
	if err == nil || !strings.Contains(err.Error(), "only one of") {
		t.Fatalf("both: %v", err)
	}
	o, err = Parse(Defaults(), map[string]string{"loki-url": url, "loki-pipeline-stages": "- tenant:\n    value: team-a"})
	if err != nil || !o.Pipeline.SetsTenant() {
		t.Fatalf("a tenant stage: %v, %v", o.Pipeline, err)
	}
}
