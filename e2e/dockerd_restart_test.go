package e2e

import (
	"testing"
	"time"

	"github.com/logferry/logferry/internal/dockertest"
	"github.com/logferry/logferry/internal/loggen"
	"github.com/logferry/logferry/internal/lokitest"
)

// TestDockerdRestart: dockerd (with --live-restore, so containers keep
// running) is restarted while two containers log, one on json-file shipped
// by the sidecar, one through the plugin. The sidecar's events
// subscription breaks and resubscribes, the daemon hands the plugin a new
// FIFO for the live container; every line of both arrives exactly once, in
// order per stream.
func TestDockerdRestart(t *testing.T) {
	d := dockertest.StartPrivate(t, "--live-restore")
	srv := lokitest.Start(t)
	e := installPlugin(t, d, srv, "logferry")
	host := e.host
	sc := startSidecar(t, d, srv.PushURL(), t.TempDir())

	start := time.Now().Add(-time.Minute)
	genFile := loggen.Config{ID: runID("rsf"), Lines: 6_000, Size: 150, StderrShare: 0.2}
	genPlug := loggen.Config{ID: runID("rsp"), Lines: 6_000, Size: 150, StderrShare: 0.2}
	nameFile, namePlug := "sc-"+genFile.ID, "lf-"+genPlug.ID
	idFile := d.Run(t, append([]string{"--name", nameFile, "--log-driver", "json-file", e.image},
		genArgs(genFile, "-rate", "300")...)...)
	idPlug := d.Run(t, append([]string{"--name", namePlug, "--log-driver", e.driver,
		"--log-opt", "loki-batch-wait=100ms", e.image}, genArgs(genPlug, "-rate", "300")...)...)
	waitLoki(t, srv, nameFile, 1_000)
	waitLoki(t, srv, namePlug, 1_000)

	startedBefore := e.metric(t, "logferry_plugin_streams_started_total")
	began := time.Now()
	d.Restart(t)
	t.Logf("dockerd restarted in %v while both containers logged", time.Since(began).Round(time.Millisecond))
	// The restored daemon hands the plugin a new FIFO for the running
	// container: a stream starts again.
	waitFor(t, time.Minute, "the plugin's stream of the running container to start again", func() bool {
		return e.metric(t, "logferry_plugin_streams_started_total") > startedBefore
	})
	if !sc.alive() {
		t.Fatalf("the sidecar exited when dockerd restarted:\n%s", sc.out.String())
	}

	e.wait(t, idFile)
	e.wait(t, idPlug)
	waitLoki(t, srv, nameFile, genFile.Lines)
	checkStreams(t, srv, nameFile, host, genFile, start)
	waitLoki(t, srv, namePlug, genPlug.Lines)
	e.checkLoki(t, namePlug, genPlug, start)
}
