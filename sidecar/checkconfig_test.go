package sidecar

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteEffective: the merged configuration names each value's
// origin, hides credentials, and is itself a configuration file that
// loads to the same settings.
func TestWriteEffective(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "sidecar.yaml")
	if err := os.WriteFile(file, []byte("loki-url: http://u:s3cret@127.0.0.1:3100/loki/api/v1/push?token=t0k\n"+
		"max-label-values: 200\nloki-pipeline-stages:\n  - regex:\n      expression: 'level=(?P<level>\\w+)'\n  - labels:\n      level:\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig([]string{"--config", file, "--max-streams", "500", "--state-dir", dir}, []string{"LOGFERRY_LOKI_TENANT_ID=ops"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	o, _, err := c.ContainerOptions(nil)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := c.WriteEffective(&b, o); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"max-label-values: 200 # " + file,
		"max-streams: 500 # flag",
		"loki-tenant-id: ops # env LOGFERRY_LOKI_TENANT_ID",
		"loki-url: http://u:xxxxx@127.0.0.1:3100/loki/api/v1/push?token=xxxxx # " + file,
		"loki-batch-wait: 1s # default",
		"loki-retries: 0 # overflow block",
		"spool-dir: " + filepath.Join(dir, "spool"),
		"expression: level=(?P<level>\\w+)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	for _, secret := range []string{"s3cret", "t0k"} {
		if strings.Contains(out, secret) {
			t.Errorf("%q shown:\n%s", secret, out)
		}
	}
	again := filepath.Join(dir, "effective.yaml")
	if err := os.WriteFile(again, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	c2, err := LoadConfig([]string{"--config", again}, nil, io.Discard)
	if err != nil {
		t.Fatalf("the printed configuration does not load: %v", err)
	}
	o2, _, err := c2.ContainerOptions(nil)
	if err != nil {
		t.Fatal(err)
	}
	if o2.Loki.TenantID != "ops" || c2.Guard != c.Guard || o2.Loki.BatchWait != o.Loki.BatchWait || o2.Pipeline == nil {
		t.Errorf("loaded back: tenant %q guard %+v batch wait %v pipeline %v; want ops %+v %v and a pipeline",
			o2.Loki.TenantID, c2.Guard, o2.Loki.BatchWait, o2.Pipeline != nil, c.Guard, o.Loki.BatchWait)
	}
}
