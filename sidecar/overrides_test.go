package sidecar

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/logferry/logferry/shared/labels"
	"github.com/logferry/logferry/shared/logopts"
)

// operatorConfig is what an operator runs: a bearer token file of their own,
// a tenant, and label overrides as given.
func operatorConfig(t *testing.T, overrides bool, tenants ...string) Config {
	t.Helper()
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("OPERATOR-SECRET-TOKEN"), 0o600); err != nil {
		t.Fatal(err)
	}
	return Config{
		Options:        map[string]string{"loki-url": testURL, "loki-tenant-id": "ops", "loki-bearer-token-file": tok, "max-line-size": "64k"},
		LabelOverrides: overrides, OverrideTenants: tenants,
	}
}

func TestLabelOverridesAreAnAllowList(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "host-secret")
	if err := os.WriteFile(secret, []byte("root-only"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		overrides bool
		label     string
		value     string
		option    string // of the refusal; "" = applied
		reason    string
		check     func(o logopts.Options) bool
	}{
		{"url, overrides off", false, "loki-url", "http://127.0.0.1:1/evil", "loki-url", RefusedDisabled, nil},
		{"url", true, "loki-url", "http://127.0.0.1:1/evil", "loki-url", RefusedOperatorOnly, nil},
		{"proxy", true, "loki-proxy-url", "http://127.0.0.1:1", "loki-proxy-url", RefusedOperatorOnly, nil},
		{"token file", true, "loki-bearer-token-file", secret, "loki-bearer-token-file", RefusedOperatorOnly, nil},
		{"tls key", true, "loki-tls-key-file", secret, "loki-tls-key-file", RefusedOperatorOnly, nil},
		{"tls skip verify", true, "loki-tls-insecure-skip-verify", "true", "loki-tls-insecure-skip-verify", RefusedOperatorOnly, nil},
		{"queue size", true, "loki-queue-size", "8g", "loki-queue-size", RefusedOperatorOnly, nil},
		{"batch wait", true, "loki-batch-wait", "1ms", "loki-batch-wait", RefusedOperatorOnly, nil},
		{"unknown", true, "no-such-option", "x", "unknown", RefusedUnknown, nil},
		{"unknown, overrides off", false, "whatever", "x", "unknown", RefusedDisabled, nil},
		{"tenant not listed", true, "loki-tenant-id", "team-b", "loki-tenant-id", RefusedTenant, nil},
		{"tenant listed", true, "loki-tenant-id", "team-a", "", "",
			func(o logopts.Options) bool { return o.Loki.TenantID == "team-a" }},
		{"line size above the operator's", true, "max-line-size", "1m", "max-line-size", RefusedAboveBound, nil},
		{"line size within", true, "max-line-size", "32k", "", "",
			func(o logopts.Options) bool { return o.MaxLineSize == 32<<10 }},
		{"external labels", true, "loki-external-labels", "team=web", "", "",
			func(o logopts.Options) bool { return o.Labels.ExternalLabels == "team=web" }},
		{"invalid template", true, "loki-external-labels", "a={{.Nope}}", "loki-external-labels", RefusedInvalid, nil},
		{"invalid regex", true, "labels-regex", "(", "labels-regex", RefusedInvalid, nil},
		{"pipeline stages", true, "loki-pipeline-stages", "- static_labels:\n    team: web", "", "",
			func(o logopts.Options) bool { return o.Pipeline != nil }},
		{"pipeline stage file", true, "loki-pipeline-stage-file", secret, "loki-pipeline-stage-file", RefusedOperatorOnly, nil},
		{"pipeline with a tenant stage", true, "loki-pipeline-stages", "- tenant:\n    value: team-a", "loki-pipeline-stages", RefusedTenant, nil},
		{"pipeline with a tenant from the line", true, "loki-pipeline-stages", "- json: {expressions: {t: tenant}}\n- tenant: {source: t}", "loki-pipeline-stages", RefusedTenant, nil},
		{"bad pipeline", true, "loki-pipeline-stages", "- regex:\n    expression: '('", "loki-pipeline-stages", RefusedInvalid, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := operatorConfig(t, tt.overrides, "team-a")
			want, _, err := cfg.ContainerOptions(nil)
			if err != nil {
				t.Fatal(err)
			}
			o, refused, err := cfg.ContainerOptions(map[string]string{LabelPrefix + tt.label: tt.value, "com.example": "x"})
			if err != nil {
				t.Fatalf("the container is not shipped: %v", err)
			}
			if tt.option == "" {
				if len(refused) != 0 || !tt.check(o) {
					t.Fatalf("not applied: refused %v, options %+v", refused, o)
				}
				return
			}
			if len(refused) != 1 || refused[0].Option != tt.option || refused[0].Reason != tt.reason {
				t.Fatalf("refused %v, want one of %s for %s", refused, tt.option, tt.reason)
			}
			if o.Loki.Key() != want.Loki.Key() || o.MaxLineSize != want.MaxLineSize || o.Labels.ExternalLabels != want.Labels.ExternalLabels {
				t.Fatalf("a refused label changed the options:\n got %+v\nwant %+v", o, want)
			}
		})
	}
}

func TestRefusedInvalidLabelSaysWhy(t *testing.T) {
	cfg := operatorConfig(t, true)
	_, refused, err := cfg.ContainerOptions(map[string]string{"logferry.loki-external-labels": "a={{.Nope}}"})
	if err != nil || len(refused) != 1 || !errors.Is(refused[0].Err, labels.ErrInvalidOption) {
		t.Fatalf("refused %v, %v: want the template's error", refused, err)
	}
}

func TestLabelOverridesSettings(t *testing.T) {
	c, err := LoadConfig([]string{"--loki-url", testURL}, nil, io.Discard)
	if err != nil || c.LabelOverrides || c.Pprof || len(c.OverrideTenants) != 0 {
		t.Fatalf("defaults: overrides %v pprof %v tenants %v, %v", c.LabelOverrides, c.Pprof, c.OverrideTenants, err)
	}
	c, err = LoadConfig([]string{"--loki-url", testURL, "--label-overrides=true", "--label-override-tenants", "a, b", "--pprof=true"}, nil, io.Discard)
	if err != nil || !c.LabelOverrides || !c.Pprof || !slices.Equal(c.OverrideTenants, []string{"a", "b"}) {
		t.Fatalf("set: overrides %v pprof %v tenants %v, %v", c.LabelOverrides, c.Pprof, c.OverrideTenants, err)
	}
	if _, err := LoadConfig([]string{"--loki-url", testURL, "--label-overrides", "maybe"}, nil, io.Discard); err == nil {
		t.Fatal("label-overrides=maybe accepted")
	}
}

func TestWarnsOfAPasswordOnTheCommandLine(t *testing.T) {
	withPassword := "http://user:secret@127.0.0.1:3100/loki/api/v1/push"
	c, err := LoadConfig([]string{"--loki-url", withPassword}, nil, io.Discard)
	if err != nil || len(c.Warnings) != 1 {
		t.Fatalf("flag: warnings %q, %v", c.Warnings, err)
	}
	c, err = LoadConfig(nil, []string{"LOGFERRY_LOKI_URL=" + withPassword}, io.Discard)
	if err != nil || len(c.Warnings) != 0 {
		t.Fatalf("environment: warnings %q, %v", c.Warnings, err)
	}
}

// FuzzContainerOptions: whatever labels an image carries, the container is
// shipped (no error), to the operator's endpoint with the operator's
// transport, and refusals name only known options or "unknown".
func FuzzContainerOptions(f *testing.F) {
	f.Add("logferry.loki-url", "http://127.0.0.1:1/x", "logferry.loki-external-labels", "a={{.Name}}")
	f.Add("logferry.loki-external-labels", "x={{pad .Name 300000000 0}}", "logferry.max-line-size", "1g")
	f.Add("logferry.loki-tenant-id", "team-a", "logferry.labels-regex", "(")
	f.Add("logferry.\x00", "\xff", "logferry.env", "A,B")
	tok := filepath.Join(f.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("T"), 0o600); err != nil {
		f.Fatal(err)
	}
	cfg := Config{
		Options:        map[string]string{"loki-url": testURL, "loki-bearer-token-file": tok, "max-line-size": "64k"},
		LabelOverrides: true, OverrideTenants: []string{"team-a"},
	}
	want, _, err := cfg.ContainerOptions(nil)
	if err != nil {
		f.Fatal(err)
	}
	known := append(logopts.Keys(), unknownOption)
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		o, refused, err := cfg.ContainerOptions(map[string]string{k1: v1, k2: v2})
		if err != nil {
			t.Fatalf("labels %q=%q %q=%q: the container would not be shipped: %v", k1, v1, k2, v2, err)
		}
		if o.Loki.Key() != want.Loki.Key() && o.Loki.TenantID != "team-a" {
			t.Fatalf("labels changed the transport: %q", o.Loki.Key())
		}
		if o.MaxLineSize > want.MaxLineSize {
			t.Fatalf("max-line-size %d above the operator's %d", o.MaxLineSize, want.MaxLineSize)
		}
		for _, r := range refused {
			if !slices.Contains(known, r.Option) {
				t.Fatalf("refusal names option %q, which is no option", r.Option)
			}
		}
	})
}

func TestRelabelConfigInTheConfigFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "sidecar.yaml")
	yml := "loki-url: " + testURL + "\nloki-relabel-config:\n  - action: labeldrop\n    regex: host\n"
	if err := os.WriteFile(file, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig([]string{"--config", file}, nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	o, _, err := c.ContainerOptions(nil)
	if err != nil || o.Labels.RelabelConfig == "" {
		t.Fatalf("relabel config %q, %v", o.Labels.RelabelConfig, err)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("loki-url: "+testURL+"\nloki-relabel-config:\n  - action: explode\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig([]string{"--config", bad}, nil, io.Discard); err == nil || !strings.Contains(err.Error(), "loki-relabel-config: rule 1") {
		t.Fatalf("bad rule: %v", err)
	}
}
