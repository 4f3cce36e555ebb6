package e2e

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/logferry/logferry/internal/dockertest"
	"github.com/logferry/logferry/internal/loggen"
	"github.com/logferry/logferry/internal/lokitest"
)

// TestSidecarStoppedDuringOutage: Loki stops while a json-file container
// logs; the sidecar is stopped with SIGTERM during the outage (its flush
// cannot reach Loki) and started again once Loki is back. Under each
// overflow policy every line arrives exactly once: with block, batches are
// retried without limit (loki-retries does not apply) and the lines the
// shutdown could not deliver are read again from the json-file log (the
// shutdown's drops must not move the positions); with spool, batches whose
// two retries ran out, and what the shutdown left, were spooled and replay.
func TestSidecarStoppedDuringOutage(t *testing.T) {
	d := dockertest.Start(t)
	srv := lokitest.Start(t)
	image := d.EnsureTestImage(t)
	host, _ := os.Hostname()

	for _, overflow := range []string{"block", "spool"} {
		t.Run("overflow="+overflow, func(t *testing.T) {
			stateDir := t.TempDir()
			sc := startSidecar(t, d, srv.PushURL(), stateDir, "--overflow", overflow,
				"--loki-retries", "2", "--loki-min-backoff", "100ms", "--loki-max-backoff", "1s", "--loki-timeout", "2s")
			gen := loggen.Config{ID: runID("out"), Lines: 9_000, Size: 150, StderrShare: 0.2}
			name := "sc-" + gen.ID
			start := time.Now().Add(-time.Minute)
			id := d.Run(t, append([]string{"--name", name, "--log-driver", "json-file", image},
				genArgs(gen, "-rate", "600", "-sleep-after", "1h")...)...)
			waitLoki(t, srv, name, 1_500)

			srv.Stop()
			logPath := filepath.Join(d.Dir(), "data", "containers", id, id+"-json.log")
			waitFor(t, time.Minute, "lines written during the outage", func() bool {
				fi, err := os.Stat(logPath)
				return err == nil && fi.Size() > 1_000_000 // about 4,000 lines of ~250 bytes
			})
			t.Logf("stopping the sidecar with SIGTERM during the outage: %.0f lines read, %.0f spooled, %.0f dropped",
				sc.metric("logferry_sidecar_lines_read_total"), sc.metric("logferry_loki_entries_spooled_total"),
				sc.metric("logferry_loki_entries_dropped_total"))
			sc.stop(syscall.SIGTERM)

			srv.Restart()
			sc.start()
			waitLoki(t, srv, name, gen.Lines)
			checkStreams(t, srv, name, host, gen, start)
			if overflow == "spool" {
				if n := sc.metric("logferry_loki_entries_replayed_total"); n == 0 {
					t.Errorf("nothing was replayed from the spool after the restart")
				}
			}
			d.Docker(t, "rm", "-f", id)
			sc.stop(syscall.SIGTERM)
		})
	}
}
