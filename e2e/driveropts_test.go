package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/logferry/logferry/internal/loggen"
)

// TestDriverOptions runs every log-opt of Grafana's Loki Docker driver
// (v3.7.8: the options its validateDriverOpt accepts) through docker run
// --log-driver logferry: every one is accepted, and the container's lines
// reach Loki with the labels the options ask for.
func TestDriverOptions(t *testing.T) {
	e := setupPlugin(t)
	caFile := "/etc/ssl/certs/ca-certificates.crt" // in the plugin's rootfs
	accepted := []string{
		"loki-url=" + e.loki.PushURL(),
		"loki-external-labels=job=dropin,container_name={{.Name}}",
		"loki-tls-ca-file=" + caFile,
		"loki-tls-server-name=loki.example",
		"loki-tls-insecure-skip-verify=false",
		"loki-timeout=5s",
		"loki-batch-wait=200ms",
		"loki-batch-size=102400",
		"loki-min-backoff=100ms",
		"loki-max-backoff=2s",
		"loki-retries=5",
		"loki-tenant-id=team-a",
		"loki-relabel-config=- action: labeldrop\n  regex: job_unused",
		"no-file=false",
		"keep-file=false",
		"labels=com.example.team",
		"env=APP_ENV",
		"env-regex=^APP_",
		"max-size=5m",
		"max-file=2",
		"mode=non-blocking",
		"max-buffer-size=2m",
	}
	gen := loggen.Config{ID: runID("dropin"), Lines: 30, Size: 80}
	name := "dropin-" + gen.ID
	start := time.Now().Add(-time.Minute)
	args := []string{"--name", name, "--log-driver", e.driver, "--label", "com.example.team=shop", "--env", "APP_ENV=prod"}
	for _, o := range accepted {
		args = append(args, "--log-opt", o)
	}
	id := e.d.Run(t, append(append(args, e.image), genArgs(gen)...)...)
	e.wait(t, id)
	e.waitDelivered(t)
	streams := containerStreams(t, e.loki, name, start)
	total := 0
	for _, s := range streams {
		total += len(s.Entries)
		if s.Labels["job"] != "dropin" || s.Labels["com_example_team"] != "shop" || s.Labels["APP_ENV"] != "prod" {
			t.Errorf("stream labels %v: want job=dropin, com_example_team=shop, APP_ENV=prod", s.Labels)
		}
	}
	if total != int(gen.Lines) {
		t.Errorf("%d lines in Loki, want %d", total, gen.Lines)
	}

	// A proxy is only used, not checked, at docker run: a separate
	// container, so that the one above is not sent through it.
	_, stderr, err := e.d.DockerErr("run", "--rm", "--network", "none", "--log-driver", e.driver,
		"--log-opt", "loki-proxy-url=http://127.0.0.1:1", "--log-opt", "loki-retries=1", "--log-opt", "loki-timeout=1s",
		e.image, "-n", "1")
	if err != nil {
		t.Errorf("loki-proxy-url: %v: %s", err, stderr)
	}

	for _, opt := range []string{
		"loki-pipeline-stages=- regex:\n    expression: 'level=(?P<level>\\w+)'",
		"loki-pipeline-stage-file=",
	} {
		if _, stderr, err := e.d.DockerErr("run", "--rm", "--network", "none", "--log-driver", e.driver,
			"--log-opt", opt, e.image, "-n", "1"); err != nil {
			t.Errorf("--log-opt %s: %v: %s", opt, err, stderr)
		}
	}
	// A stage file must exist where the plugin runs (in its rootfs).
	_, stderr, err = e.d.DockerErr("run", "--rm", "--network", "none", "--log-driver", e.driver,
		"--log-opt", "loki-pipeline-stage-file=/nonexistent/stages.yml", e.image, "-n", "1")
	if err == nil || !strings.Contains(stderr, "loki-pipeline-stage-file") {
		t.Errorf("a missing stage file: err %v, stderr %q does not name loki-pipeline-stage-file", err, stderr)
	}
}
