package e2e

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/logferry/logferry/internal/loggen"
)

// TestSidecarShipsWhatAStoppedContainerLeft: the sidecar is killed while a
// container logs, the container exits while the sidecar is down, and the
// restarted sidecar ships the rest of its log: every line exactly once.
// (The soak found the tail of such a container lost: at start the sidecar
// shipped only running containers.)
func TestSidecarShipsWhatAStoppedContainerLeft(t *testing.T) {
	e := setupPlugin(t)
	sc := startSidecar(t, e.d, e.loki.PushURL(), t.TempDir())
	gen := loggen.Config{ID: runID("st"), Lines: 3000, Size: 120, StderrShare: 0.3}
	name := "st-" + gen.ID
	start := time.Now()
	id := e.d.Run(t, append([]string{"--name", name, "--log-driver", "json-file", e.image}, genArgs(gen, "-rate", "500")...)...)
	waitFor(t, time.Minute, "some lines of "+name+" in Loki", func() bool {
		return metricWhere(t, sc.metrics, "logferry_sidecar_lines_read_total", fmt.Sprintf("container_name=%q", name)) > 300
	})
	sc.stop(syscall.SIGKILL)
	e.wait(t, id) // exits while the sidecar is down
	sc.start()
	waitLoki(t, e.loki, name, gen.Lines)
	checkStreams(t, e.loki, name, "", gen, start)
	e.d.Docker(t, "rm", "-f", id)
}
