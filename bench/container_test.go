package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/logferry/logferry/internal/dockertest"
)

var (
	containerBench = flag.Bool("container", false, "run TestContainerThroughput: containers writing as fast as they can through json-file and logferry in a private dockerd (root and Debian's docker.io)")
	containerLines = flag.Int("container-lines", 500_000, "TestContainerThroughput: lines each container writes")
	containerSize  = flag.Int("container-size", 250, "TestContainerThroughput: bytes per line")
	containerRuns  = flag.Int("container-runs", 3, "TestContainerThroughput: runs of each driver, interleaved")
	containerSet   = flag.String("container-plugin-set", "", "TestContainerThroughput: space-separated KEY=VALUE settings of the plugin (docker plugin set; the settable env of config.json), e.g. \"GOMAXPROCS=1\"")
	containerPerf  = flag.String("container-perf", "", "TestContainerThroughput: after the measured runs, one more run of each driver with `perf record -g` on dockerd and the plugin, into DIR/<driver>-{dockerd,plugin}.perf.data")
)

// Goal for TestContainerThroughput: through logferry a container reaches at
// least this share of its throughput through json-file.
const goalContainerRatio = 0.90

// driverCase is one way a container's logs leave it.
type driverCase struct {
	name string   // in the report
	args []string // docker run flags
	loki bool     // lines go to the sink
}

// containerRun is what one container run measured.
type containerRun struct {
	ran       time.Duration // State.StartedAt to State.FinishedAt
	wall      time.Duration // docker run -d to docker wait's answer
	delivered time.Duration // docker run -d to the last line at the sink (loki cases)
	daemonCPU time.Duration // dockerd's CPU from docker run -d to docker wait's answer
	pluginCPU time.Duration // the plugin's, to the last line at the sink
	pluginIO  ProcIO        // the plugin's read and write calls, to the last line at the sink
}

// TestContainerThroughput times a container that writes -container-lines
// lines as fast as it can with --log-driver json-file, and through the
// logferry plugin (with its local copy for docker logs, and with
// no-file=true), in a private dockerd, and compares their throughput:
//
//	go test ./bench -run TestContainerThroughput -v -count=1 -timeout 30m -args -container
//
// The container's own time, State.StartedAt to State.FinishedAt, is the
// figure: dockerd sets FinishedAt once it has copied the container's output
// (json-file: written to the file; plugin: written into the FIFO).
func TestContainerThroughput(t *testing.T) {
	if !*containerBench {
		t.Skip("container throughput: skipped; run with -args -container (needs root and Debian's docker.io; scripts/bench-plugin does)")
	}
	if testing.Short() {
		t.Skip("container throughput: -short skips tests that need a Docker daemon")
	}
	if os.Geteuid() != 0 {
		t.Skipf("container throughput: skipped: dockerd needs root and this is uid %d", os.Geteuid())
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("container throughput: skipped: the docker CLI is not installed (as root: scripts/dockerd ensure)")
	}
	if _, err := exec.LookPath("dockerd"); err != nil {
		if _, err := os.Stat("/usr/sbin/dockerd"); err != nil {
			t.Skip("container throughput: skipped: dockerd is not installed (as root: scripts/dockerd ensure)")
		}
	}
	d := dockertest.Start(t)
	image := d.EnsureTestImage(t)
	sink, err := NewSink()
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	const pluginName = "logferry-bench"
	plugin := d.InstallPlugin(t, pluginName, append([]string{"LOKI_URL=" + sink.URL(), "METRICS_ADDR=off", "LOG_LEVEL=warn"},
		strings.Fields(*containerSet)...)...)
	pluginID := strings.TrimSpace(d.Docker(t, "plugin", "inspect", "-f", "{{.Id}}", plugin))
	daemonPID, err := readPID(filepath.Join(d.Dir(), "dockerd.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pluginPID, err := findPluginPID(pluginID)
	if err != nil {
		t.Logf("the plugin's CPU is not measured: %v", err)
	}

	cases := []driverCase{
		{name: "json-file", args: []string{"--log-driver", "json-file"}},
		{name: "logferry", args: []string{"--log-driver", plugin}, loki: true},
		{name: "logferry no-file", args: []string{"--log-driver", plugin, "--log-opt", "no-file=true"}, loki: true},
	}
	lines, size := *containerLines, *containerSize
	t.Logf("%d lines of %d bytes per container, %d runs per driver, dockerd pid %d, plugin pid %d, plugin settings %q",
		lines, size, *containerRuns, daemonPID, pluginPID, *containerSet)
	results := make([][]containerRun, len(cases))
	for run := 1; run <= *containerRuns; run++ {
		for i, c := range cases {
			r, err := runContainer(t, d, image, c, fmt.Sprintf("r%d-%d", run, i), lines, size, sink, daemonPID, pluginPID)
			if err != nil {
				t.Fatalf("%s run %d: %v\nthe end of the daemon's log:\n%s", c.name, run, err, d.LogTail(20))
			}
			results[i] = append(results[i], r)
			mib := MiB(int64(lines * size))
			line := fmt.Sprintf("container %-16s run %d/%d: ran %.2f s (%.0f lines/s, %.1f MiB/s of lines), docker run..wait %.2f s, dockerd CPU %.2f s",
				c.name, run, *containerRuns, r.ran.Seconds(), float64(lines)/r.ran.Seconds(), mib/r.ran.Seconds(), r.wall.Seconds(), r.daemonCPU.Seconds())
			if c.loki {
				line += fmt.Sprintf(", all lines at the sink after %.2f s, plugin CPU %.2f s (%.1f MiB of lines per CPU-s; %.3f reads, %.3f writes per line)",
					r.delivered.Seconds(), r.pluginCPU.Seconds(), mib/r.pluginCPU.Seconds(),
					float64(r.pluginIO.ReadCalls)/float64(lines), float64(r.pluginIO.WriteCalls)/float64(lines))
			}
			fmt.Println(line)
		}
	}
	if *containerPerf != "" {
		if err := os.MkdirAll(*containerPerf, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, c := range cases {
			slug := strings.ReplaceAll(c.name, " ", "-")
			var perfs []*exec.Cmd
			for _, target := range []struct {
				name string
				pid  int
			}{{"dockerd", daemonPID}, {"plugin", pluginPID}} {
				if target.pid <= 0 || (!c.loki && target.name == "plugin") {
					continue
				}
				out := filepath.Join(*containerPerf, slug+"-"+target.name+".perf.data")
				cmd, err := startPerf(target.pid, out)
				if err != nil {
					t.Fatal(err)
				}
				perfs = append(perfs, cmd)
				defer stopPerf(cmd)
			}
			r, err := runContainer(t, d, image, c, fmt.Sprintf("perf-%d", i), lines, size, sink, daemonPID, pluginPID)
			for _, cmd := range perfs {
				stopPerf(cmd)
			}
			if err != nil {
				t.Fatalf("%s under perf: %v", c.name, err)
			}
			fmt.Printf("container %-16s perf run: ran %.2f s; profiles in %s/%s-*.perf.data\n", c.name, r.ran.Seconds(), *containerPerf, slug)
		}
	}
	base := medianDuration(results[0], func(r containerRun) time.Duration { return r.ran })
	for i, c := range cases {
		m := medianDuration(results[i], func(r containerRun) time.Duration { return r.ran })
		ratio := base.Seconds() / m.Seconds()
		summary := fmt.Sprintf("RESULT container %-16s %d x %d B lines: median %.2f s (%.0f lines/s), %.2f of json-file's throughput",
			c.name, lines, size, m.Seconds(), float64(lines)/m.Seconds(), ratio)
		if i > 0 {
			verdict := "MET"
			if ratio < goalContainerRatio {
				verdict = "MISSED"
			}
			summary += fmt.Sprintf("; goal >= %.2f: %s", goalContainerRatio, verdict)
		}
		fmt.Println(summary)
	}
}

// runContainer runs one container to its end and measures it.
func runContainer(t *testing.T, d *dockertest.Daemon, image string, c driverCase, id string, lines, size int,
	sink *Sink, daemonPID, pluginPID int) (containerRun, error) {
	var r containerRun
	sink.Reset()
	dcpu0, err := cpuOf(daemonPID)
	if err != nil {
		return r, err
	}
	pcpu0, _ := cpuOf(pluginPID)
	pio0, _ := ReadProcIO(pluginPID)
	args := append(slices.Clone(c.args), image, "-n", strconv.Itoa(lines), "-size", strconv.Itoa(size), "-id", id)
	start := time.Now()
	cid := d.Run(t, args...)
	code := strings.TrimSpace(d.Docker(t, "wait", cid))
	r.wall = time.Since(start)
	dcpu1, err := cpuOf(daemonPID)
	if err != nil {
		return r, err
	}
	r.daemonCPU = dcpu1 - dcpu0
	if code != "0" {
		return r, fmt.Errorf("the container exited with %s", code)
	}
	out := strings.Fields(d.Docker(t, "container", "inspect", "-f", "{{.State.StartedAt}} {{.State.FinishedAt}}", cid))
	if len(out) != 2 {
		return r, fmt.Errorf("docker inspect printed %q", out)
	}
	started, err1 := time.Parse(time.RFC3339Nano, out[0])
	finished, err2 := time.Parse(time.RFC3339Nano, out[1])
	if err := errors.Join(err1, err2); err != nil {
		return r, err
	}
	r.ran = finished.Sub(started)
	if c.loki {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if err := sink.WaitEntries(ctx, int64(lines), nil); err != nil {
			return r, err
		}
		r.delivered = time.Since(start)
		if pcpu1, err := cpuOf(pluginPID); err == nil {
			r.pluginCPU = pcpu1 - pcpu0
		}
		if pio1, err := ReadProcIO(pluginPID); err == nil && pio0.ReadCalls > 0 {
			r.pluginIO = ProcIO{ReadCalls: pio1.ReadCalls - pio0.ReadCalls, WriteCalls: pio1.WriteCalls - pio0.WriteCalls}
		}
		if got := sink.Entries(); got != int64(lines) {
			return r, fmt.Errorf("the sink has %d entries, want %d", got, lines)
		}
	}
	// Free the disk now: a json-file log of 500,000 lines is ~170 MB.
	d.Docker(t, "rm", "-f", "-v", cid)
	return r, nil
}

func cpuOf(pid int) (time.Duration, error) {
	if pid <= 0 {
		return 0, errors.New("no pid")
	}
	u, s, err := ProcCPU(pid)
	return u + s, err
}

func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// findPluginPID finds the managed plugin's process: /usr/bin/logferry-plugin
// in a cgroup named after the plugin's id.
func findPluginPID(pluginID string) (int, error) {
	procs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return 0, err
	}
	for _, p := range procs {
		cmd, err := os.ReadFile(filepath.Join(p, "cmdline"))
		if err != nil || !strings.HasPrefix(string(cmd), "/usr/bin/logferry-plugin\x00") && string(cmd) != "/usr/bin/logferry-plugin" {
			continue
		}
		cg, err := os.ReadFile(filepath.Join(p, "cgroup"))
		if err != nil || !strings.Contains(string(cg), pluginID) {
			continue
		}
		return strconv.Atoi(filepath.Base(p))
	}
	return 0, fmt.Errorf("no /usr/bin/logferry-plugin process in a cgroup of plugin %.12s", pluginID)
}

func medianDuration(rs []containerRun, f func(containerRun) time.Duration) time.Duration {
	v := make([]time.Duration, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
