package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
// FIFO for the live container and never stops the old one.
//
// What each shipper is given arrives exactly once, in order per stream:
// every line of the json-file, every frame the plugin read. Not every line
// the container wrote: dockerd's log copier reads a container's output in
// chunks of up to 16 KiB and logs their lines one by one, and a daemon
// stopping with live-restore exits without finishing a chunk it had read;
// those lines reach neither the file nor the plugin (seen: 2 lines of the
// plugin's container in 1 run of 22). Such a loss must be one gap per
// stream in the generator's sequence, between a line the old daemon
// stamped before the restart ended and one the new daemon stamped after it
// began, of at most what the copier holds, and at most one line per stream
// that is not whole: the tail of the gap's last line, when the chunk the
// old copier lost ended inside it. Anything else is the shippers'.
func TestDockerdRestart(t *testing.T) {
	d := dockertest.StartPrivate(t, "--live-restore")
	srv := lokitest.Start(t)
	e := installPlugin(t, d, srv, "logferry")
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
	restarted := time.Now()
	t.Logf("dockerd restarted in %v while both containers logged", restarted.Sub(began).Round(time.Millisecond))
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

	// The sidecar: every line of the json-file.
	logPath := filepath.Join(d.Dir(), "data", "containers", idFile, idFile+"-json.log")
	inFile, cutInFile := fileLines(t, logPath, genFile)
	if !waitLokiProgress(t, srv, nameFile, uint64(len(inFile)), time.Minute) {
		sc.mu.Lock()
		t.Logf("the sidecar's log:\n%s", sc.out.String())
		sc.mu.Unlock()
		explainMissing(t, srv, sc, nameFile, genFile, start)
	}
	shipped, _, cut := lokiLines(t, srv, nameFile, genFile, start)
	for _, source := range []string{loggen.Stdout, loggen.Stderr} {
		if fmt.Sprint(cut[source]) != fmt.Sprint(cutInFile[source]) {
			t.Fatalf("%s: the lines in Loki that are not whole, %q, are not the json-file's, %q", source, cut[source], cutInFile[source])
		}
	}
	for seq := range inFile {
		if _, ok := shipped[seq]; !ok {
			t.Fatalf("line %d of the json-file is not in Loki (Loki has %d of the file's %d)", seq, len(shipped), len(inFile))
		}
	}
	if len(shipped) != len(inFile) {
		t.Fatalf("Loki has %d lines of %s, the json-file %d", len(shipped), nameFile, len(inFile))
	}
	lostAtRestart(t, "json-file", inFile, cutInFile, genFile, began, restarted)

	// The plugin: every frame it read. Both of its streams end (the old
	// FIFO's once its pipe is read, the new one's at StopLogging), so the
	// count of frames read is final.
	waitFor(t, time.Minute, "the plugin's streams of the container to end", func() bool {
		return e.metric(t, "logferry_plugin_streams_active") == 0
	})
	read := e.metric(t, "logferry_plugin_frames_read_total")
	waitLoki(t, srv, namePlug, uint64(read))
	shipped, _, cut = lokiLines(t, srv, namePlug, genPlug, start)
	if n := len(shipped) + len(cut[loggen.Stdout]) + len(cut[loggen.Stderr]); float64(n) != read {
		t.Fatalf("Loki has %d lines of %s, the plugin read %.0f frames", n, namePlug, read)
	}
	lostAtRestart(t, "plugin", shipped, cut, genPlug, began, restarted)
}

// fileLines returns the generator's whole lines in a json-file log with
// the time the daemon stamped on each, by sequence number, and by stream
// the lines that are not a whole generator line; it fails the test on a
// line in it twice.
func fileLines(t *testing.T, path string, gen loggen.Config) (map[uint64]int64, map[string][]string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, cut := map[uint64]int64{}, map[string][]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec struct {
			Log    string
			Stream string
			Time   time.Time
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		line := strings.TrimSuffix(rec.Log, "\n")
		l, err := loggen.Parse(line)
		if err != nil || l.ID != gen.ID {
			cut[rec.Stream] = append(cut[rec.Stream], line)
			continue
		}
		if _, ok := got[l.Seq]; ok {
			t.Fatalf("%s: line %d twice", path, l.Seq)
		}
		got[l.Seq] = rec.Time.UnixNano()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return got, cut
}

// copierChunk is what dockerd's log copier reads from a container's stream
// at most before it logs the lines in it (moby's daemon/logger/copier.go).
const copierChunk = 16 << 10

// lostAtRestart checks that the generator's lines missing from have (seq
// -> time the daemon stamped) are what a daemon stopping between from and
// to can lose: per stream at most one gap, preceded by a line stamped
// before to and followed by one stamped after from, of at most a copier's
// chunk. It logs what was lost.
func lostAtRestart(t *testing.T, what string, have map[uint64]int64, cut map[string][]string, gen loggen.Config, from, to time.Time) {
	t.Helper()
	for _, source := range []string{loggen.Stdout, loggen.Stderr} {
		var seqs []uint64 // the stream's lines, in order
		for seq := uint64(1); seq <= gen.Lines; seq++ {
			if gen.Stream(seq) == source {
				seqs = append(seqs, seq)
			}
		}
		var gaps []string
		lost, lastLost := 0, uint64(0)
		missing := func(k int) bool { _, ok := have[seqs[k]]; return !ok }
		for _, r := range missingRuns(len(seqs), missing) {
			i, j := r[0], r[1]
			n := j - i + 1
			lost, lastLost = lost+n, seqs[j]
			gaps = append(gaps, fmt.Sprintf("%d-%d (%d)", seqs[i], seqs[j], n))
			if i == 0 || j == len(seqs)-1 {
				t.Fatalf("%s, %s: lines %d-%d missing at the start or end of the stream, not at the restart", what, source, seqs[i], seqs[j])
			}
			before, after := time.Unix(0, have[seqs[i-1]]), time.Unix(0, have[seqs[j+1]])
			if before.After(to) || after.Before(from) {
				t.Fatalf("%s, %s: lines %d-%d missing between lines stamped %s and %s, not across the restart (%s to %s)",
					what, source, seqs[i], seqs[j], before.Format(time.StampMicro), after.Format(time.StampMicro),
					from.Format(time.StampMicro), to.Format(time.StampMicro))
			}
		}
		if len(gaps) > 1 {
			t.Fatalf("%s, %s: %d gaps (%v); a restart loses at most one per stream", what, source, len(gaps), gaps)
		}
		// A chunk the old copier read may end inside a line: the new
		// copier then logs that line's tail as a line of its own.
		switch frags := cut[source]; {
		case len(frags) > 1:
			t.Fatalf("%s, %s: %d lines that are not whole: %q", what, source, len(frags), frags)
		case len(frags) == 1:
			if lost == 0 || !isTailOf(frags[0], gen, lastLost) {
				t.Fatalf("%s, %s: a line that is not whole and not the tail of the last line lost at the restart: %q", what, source, frags[0])
			}
			t.Logf("%s, %s: the tail of line %d, whose start dockerd lost at its restart, arrived as a line: %q", what, source, lastLost, frags[0])
		}
		if lost*(gen.Size+1) > copierChunk {
			t.Fatalf("%s, %s: %d lines lost at the restart, more than dockerd's copier holds (%d bytes)", what, source, lost, copierChunk)
		}
		if lost > 0 {
			t.Logf("%s, %s: dockerd lost lines %v at its restart: never written to the file or handed to the plugin", what, source, gaps)
		}
	}
}

// isTailOf reports whether frag is a proper tail of the generator's line
// seq.
func isTailOf(frag string, gen loggen.Config, seq uint64) bool {
	whole := string(loggen.Append(nil, gen.ID, seq, gen.Stream(seq), gen.Size, gen.Unicode))
	return frag != "" && len(frag) < len(whole) && strings.HasSuffix(whole, frag)
}
