package dockertest_test

import (
	"encoding/json"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/logferry/logferry/internal/dockertest"
	"github.com/logferry/logferry/internal/loggen"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		dockertest.Shutdown()
		os.Exit(code)
	}))
}

// TestJSONFileRoundTrip proves the harness: a private daemon, the FROM
// scratch loggen image, a container without network, and docker logs
// reading back exactly the lines loggen wrote, each on its stream.
func TestJSONFileRoundTrip(t *testing.T) {
	d := dockertest.Start(t)
	if !strings.HasPrefix(d.Host(), "unix://"+d.Dir()) {
		t.Fatalf("Host() = %q, want a socket in %s", d.Host(), d.Dir())
	}
	image := d.EnsureTestImage(t)
	if again := d.EnsureTestImage(t); again != image {
		t.Fatalf("EnsureTestImage returned %q, then %q", image, again)
	}

	cfg := loggen.Config{ID: "harness", Lines: 3, Size: 80, StderrShare: 1.0 / 3}
	id := d.Run(t, "--log-driver", "json-file", image,
		"-id", cfg.ID,
		"-n", strconv.FormatUint(cfg.Lines, 10),
		"-size", strconv.Itoa(cfg.Size),
		"-stderr", strconv.FormatFloat(cfg.StderrShare, 'g', -1, 64))

	if code := strings.TrimSpace(d.Docker(t, "wait", id)); code != "0" {
		t.Fatalf("loggen exited with %s; docker logs:\n%s", code, d.Docker(t, "logs", id))
	}

	var inspected []struct {
		Config     struct{ Labels map[string]string }
		HostConfig struct {
			NetworkMode string
			LogConfig   struct{ Type string }
		}
	}
	if err := json.Unmarshal([]byte(d.Docker(t, "container", "inspect", id)), &inspected); err != nil || len(inspected) != 1 {
		t.Fatalf("docker container inspect: %v (%d results)", err, len(inspected))
	}
	c := inspected[0]
	if c.HostConfig.NetworkMode != "none" || c.Config.Labels[dockertest.LabelKey] != "1" || c.HostConfig.LogConfig.Type != "json-file" {
		t.Errorf("container has network %q, label %s=%q, log driver %q; want none, 1, json-file",
			c.HostConfig.NetworkMode, dockertest.LabelKey, c.Config.Labels[dockertest.LabelKey], c.HostConfig.LogConfig.Type)
	}

	var wantOut, wantErr []string
	for seq := uint64(1); seq <= cfg.Lines; seq++ {
		stream, line := cfg.Line(seq)
		if stream == loggen.Stderr {
			wantErr = append(wantErr, line)
		} else {
			wantOut = append(wantOut, line)
		}
	}
	if len(wantOut) == 0 || len(wantErr) == 0 {
		t.Fatalf("the config writes %d stdout and %d stderr lines; want both streams used", len(wantOut), len(wantErr))
	}
	stdout, stderr, err := d.DockerErr("logs", id)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if got := lines(stdout); !slices.Equal(got, wantOut) {
		t.Errorf("docker logs stdout:\n%q\nwant:\n%q", got, wantOut)
	}
	if got := lines(stderr); !slices.Equal(got, wantErr) {
		t.Errorf("docker logs stderr:\n%q\nwant:\n%q", got, wantErr)
	}
}

// TestCleanup: Cleanup removes the labelled containers, and the removal Run
// registered does not complain about one already gone.
func TestCleanup(t *testing.T) {
	d := dockertest.Start(t)
	image := d.EnsureTestImage(t)
	d.Run(t, image, "-n", "1")
	d.Run(t, image, "-n", "1", "-sleep-after", "1m")
	d.Cleanup(t)
	if left := strings.Fields(d.Docker(t, "ps", "-a", "-q", "--filter", "label="+dockertest.Label)); len(left) != 0 {
		t.Errorf("containers left after Cleanup: %v", left)
	}
}

// TestInstallPlugin installs the plugin built from ./cmd/logferry-plugin (or
// $PLUGIN_BIN) with a setting and checks the daemon enabled it with that
// setting.
func TestInstallPlugin(t *testing.T) {
	d := dockertest.Start(t)
	name := d.InstallPlugin(t, "logferry-harness", "LOG_LEVEL=debug", "METRICS_ADDR=off")
	if name != "logferry-harness:latest" {
		t.Errorf("InstallPlugin returned %q, want logferry-harness:latest", name)
	}
	var p []struct {
		Enabled  bool
		Settings struct{ Env []string }
		Config   struct {
			Interface struct {
				Types  []string
				Socket string
			}
		}
	}
	if err := json.Unmarshal([]byte(d.Docker(t, "plugin", "inspect", name)), &p); err != nil || len(p) != 1 {
		t.Fatalf("docker plugin inspect: %v (%d results)", err, len(p))
	}
	if !p[0].Enabled {
		t.Errorf("plugin %s is not enabled; the daemon's log:\n%s", name, d.LogTail(20))
	}
	for _, want := range []string{"LOG_LEVEL=debug", "METRICS_ADDR=off", "DRAIN_TIMEOUT=5m"} {
		if !slices.Contains(p[0].Settings.Env, want) {
			t.Errorf("plugin env %q lacks %s", p[0].Settings.Env, want)
		}
	}
	if got := p[0].Config.Interface; !slices.Equal(got.Types, []string{"docker.logdriver/1.0"}) || got.Socket != "logferry.sock" {
		t.Errorf("plugin interface %+v, want docker.logdriver/1.0 on logferry.sock", got)
	}
}

func lines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}
