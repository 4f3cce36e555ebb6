package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/logferry/logferry/internal/loggen"
)

// outage is how long Loki is down in the middle of each run.
const outage = 15 * time.Second

// spoolFigures are what one outage run reports.
type spoolFigures struct {
	written, delivered, duplicated, lost int
	spooled                              float64
	longestStop                          time.Duration
}

func (f spoolFigures) String() string {
	return fmt.Sprintf("lines written %d, delivered %d, duplicated %d, lost %d, spooled %.0f, longest docker stop %v",
		f.written, f.delivered, f.duplicated, f.lost, f.spooled, f.longestStop.Round(time.Millisecond))
}

// countLines reads back every entry of container name and counts, by the
// generator's sequence numbers, the distinct lines and the duplicates. It
// waits (up to limit) until at least want entries are there.
func (e *pluginEnv) countLines(t *testing.T, name string, gen loggen.Config, since time.Time, want int) (distinct, duplicated int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	streams, err := e.loki.WaitForCount(ctx, fmt.Sprintf(`{container_name=%q}`, name), since, time.Now().Add(time.Minute), want)
	if err != nil {
		t.Errorf("%v", err)
	}
	seen := map[uint64]int{}
	for _, s := range streams {
		for _, en := range s.Entries {
			rec, err := loggen.Parse(en.Line)
			if err != nil {
				t.Fatalf("damaged line: %v", err)
			}
			if rec.ID != gen.ID {
				t.Fatalf("a line of run %s in run %s", rec.ID, gen.ID)
			}
			seen[rec.Seq]++
		}
	}
	for _, n := range seen {
		duplicated += n - 1
	}
	return len(seen), duplicated
}

// stopDuringOutage runs a second container logging through the plugin and
// stops it with docker stop -t 1 while Loki is down, returning how long the
// stop took and its line count from docker logs.
func (e *pluginEnv) stopDuringOutage(t *testing.T, opts []string) (time.Duration, string, loggen.Config, int) {
	t.Helper()
	gen := loggen.Config{ID: runID("stop"), Lines: 1_000_000, Size: 120}
	name := "lf-" + gen.ID
	before := e.metric(t, "logferry_plugin_frames_read_total")
	id := e.d.Run(t, append(append([]string{"--name", name, "--log-driver", e.driver}, opts...),
		append([]string{e.image}, genArgs(gen, "-rate", "300")...)...)...)
	waitFor(t, time.Minute, "the second container to log", func() bool {
		return e.metric(t, "logferry_plugin_frames_read_total") >= before+300
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	begin := time.Now()
	if _, stderr, err := e.d.DockerCtx(ctx, "stop", "-t", "1", id); err != nil {
		t.Fatalf("docker stop: %v %s", err, stderr)
	}
	took := time.Since(begin)
	stdout, stderr, err := e.d.DockerErr("logs", id)
	if err != nil {
		t.Fatal(err)
	}
	return took, name, gen, strings.Count(stdout, "\n") + strings.Count(stderr, "\n")
}

// TestSpool: Loki stopped for 15 s while a container logs 300 lines/s
// through the plugin; after Loki is back every line is there exactly once.
// The second run also kills the plugin with SIGKILL during the outage.
func TestSpool(t *testing.T) {
	e := setupPlugin(t)
	// Retries and backoff short enough that the outage is spooled and the
	// recovery is seen within the test.
	opts := []string{"--log-opt", "loki-batch-wait=100ms", "--log-opt", "loki-retries=2",
		"--log-opt", "loki-min-backoff=100ms", "--log-opt", "loki-max-backoff=2s", "--log-opt", "loki-timeout=2s"}

	for _, kill := range []bool{false, true} {
		title := "Loki down for 15 s: every line once, docker stop fast"
		if kill {
			title = "Loki down for 15 s and the plugin killed with SIGKILL: every line once"
		}
		t.Run(title, func(t *testing.T) {
			gen := loggen.Config{ID: runID("spool"), Lines: 7_500, Size: 150, StderrShare: 0.2}
			name := "lf-" + gen.ID
			start := time.Now().Add(-time.Minute)
			before := e.metric(t, "logferry_plugin_frames_read_total")
			id := e.d.Run(t, append(append([]string{"--name", name, "--log-driver", e.driver}, opts...),
				append([]string{e.image}, genArgs(gen, "-rate", "300")...)...)...)
			waitFor(t, time.Minute, "the first 1,500 lines", func() bool {
				return e.metric(t, "logferry_plugin_frames_read_total") >= before+1500
			})

			spooledBefore := e.metric(t, "logferry_loki_entries_spooled_total")
			e.loki.Stop()
			down := time.Now()
			t.Logf("Loki stopped")
			waitFor(t, time.Minute, "entries to be spooled", func() bool {
				return e.metric(t, "logferry_loki_entries_spooled_total") > spooledBefore
			})
			fig := spoolFigures{written: int(gen.Lines)}
			var stopName string
			var stopGen loggen.Config
			var stopLines int
			if kill {
				pid := e.pluginPID(t)
				fig.spooled = e.metric(t, "logferry_loki_entries_spooled_total") - spooledBefore
				if err := exec.Command("kill", "-9", strconv.Itoa(pid)).Run(); err != nil {
					t.Fatal(err)
				}
				waitFor(t, 30*time.Second, "the daemon to restart the plugin", func() bool {
					p, err := e.findPluginPID()
					return err == nil && p != pid
				})
				waitFor(t, 30*time.Second, "the restarted plugin's /ready", func() bool {
					resp, err := httpc.Get("http://" + e.metrics + "/ready")
					if err != nil {
						return false
					}
					resp.Body.Close()
					return resp.StatusCode == http.StatusOK
				})
				t.Logf("plugin killed and restarted %v into the outage", time.Since(down).Round(time.Millisecond))
			}
			fig.longestStop, stopName, stopGen, stopLines = e.stopDuringOutage(t, opts)
			// The outage lasts its full length: the scenario, not a wait
			// for a condition.
			if rest := outage - time.Since(down); rest > 0 {
				timer := time.NewTimer(rest)
				<-timer.C
			}
			if !kill {
				fig.spooled = e.metric(t, "logferry_loki_entries_spooled_total") - spooledBefore
			} else {
				fig.spooled += e.metric(t, "logferry_loki_entries_spooled_total")
			}
			e.loki.Restart()
			t.Logf("Loki back after %v", time.Since(down).Round(time.Millisecond))

			e.wait(t, id)
			fig.delivered, fig.duplicated = e.countLines(t, name, gen, start, int(gen.Lines))
			fig.lost = fig.written - fig.delivered
			stopDelivered, stopDup := e.countLines(t, stopName, stopGen, start, stopLines)
			e.waitDelivered(t)
			t.Logf("%s", fig)
			t.Logf("container stopped during the outage: %d lines written, %d delivered, %d duplicated",
				stopLines, stopDelivered, stopDup)
			if fig.lost != 0 || fig.duplicated != 0 {
				t.Errorf("%d lines lost, %d duplicated; want none", fig.lost, fig.duplicated)
			}
			if stopDelivered != stopLines || stopDup != 0 {
				t.Errorf("container stopped during the outage: %d of %d lines, %d duplicated", stopDelivered, stopLines, stopDup)
			}
			if fig.spooled <= 0 {
				t.Errorf("nothing was spooled during the outage")
			}
			if fig.longestStop > 3*time.Second {
				t.Errorf("docker stop -t 1 took %v during the outage; the promise is under 3 s", fig.longestStop)
			}
			if !t.Failed() {
				e.checkLoki(t, name, gen, start) // labels, whole lines, order by time
			}
		})
	}
}
