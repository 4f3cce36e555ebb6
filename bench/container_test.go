package bench

import (
	"cmp"
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
	containerPeer  = flag.String("container-grafana-driver", "", "TestContainerThroughput: also run containers through Grafana's Loki Docker driver, this binary (scripts/peers path grafana-driver), installed as a managed plugin of the private dockerd with loki-url set to the sink")
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
	pid  int      // the shipper's process when not logferry's plugin
}

// containerRun is what one container run measured.
type containerRun struct {
	ran       time.Duration // State.StartedAt to State.FinishedAt
	wall      time.Duration // docker run -d to docker wait's answer
	delivered time.Duration // docker run -d to the last line at the sink (loki cases)
	daemonCPU time.Duration // dockerd's CPU from docker run -d to docker wait's answer
	pluginCPU time.Duration // the plugin's, to the last line at the sink
	pluginIO  ProcIO        // the plugin's read and write calls, to the last line at the sink
	lost      int64         // a peer's lines that never reached the sink (10 s without one more)
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
	if *containerPeer != "" {
		name, pid := installGrafanaDriver(t, d, *containerPeer)
		cases = append(cases, driverCase{name: "grafana-driver", args: []string{"--log-driver", name, "--log-opt", "loki-url=" + sink.URL()}, loki: true, pid: pid})
	}
	lines, size := *containerLines, *containerSize
	t.Logf("%d lines of %d bytes per container, %d runs per driver, dockerd pid %d, plugin pid %d, plugin settings %q",
		lines, size, *containerRuns, daemonPID, pluginPID, *containerSet)
	results := make([][]containerRun, len(cases))
	for run := 1; run <= *containerRuns; run++ {
		for i, c := range cases {
			r, err := runContainer(t, d, image, c, fmt.Sprintf("r%d-%d", run, i), lines, size, sink, daemonPID, cmp.Or(c.pid, pluginPID))
			if err != nil {
				t.Fatalf("%s run %d: %v\nthe end of the daemon's log:\n%s", c.name, run, err, d.LogTail(20))
			}
			results[i] = append(results[i], r)
			mib := MiB(int64(lines * size))
			line := fmt.Sprintf("container %-16s run %d/%d: ran %.2f s (%.0f lines/s, %.1f MiB/s of lines), docker run..wait %.2f s, dockerd CPU %.2f s",
				c.name, run, *containerRuns, r.ran.Seconds(), float64(lines)/r.ran.Seconds(), mib/r.ran.Seconds(), r.wall.Seconds(), r.daemonCPU.Seconds())
			if c.loki {
				at := "all lines at the sink"
				if r.lost > 0 {
					at = fmt.Sprintf("%d LINES LOST, the rest at the sink", r.lost)
				}
				line += fmt.Sprintf(", %s after %.2f s, shipper CPU %.2f s (%.1f MiB of lines per CPU-s; %.3f reads, %.3f writes per line)",
					at, r.delivered.Seconds(), r.pluginCPU.Seconds(), mib/r.pluginCPU.Seconds(),
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
			}{{"dockerd", daemonPID}, {"plugin", cmp.Or(c.pid, pluginPID)}} {
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
			r, err := runContainer(t, d, image, c, fmt.Sprintf("perf-%d", i), lines, size, sink, daemonPID, cmp.Or(c.pid, pluginPID))
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
		var lost []string
		for _, r := range results[i] {
			if r.lost > 0 {
				lost = append(lost, strconv.FormatInt(r.lost, 10))
			}
		}
		if len(lost) > 0 {
			summary += fmt.Sprintf("; LINES LOST in %d of %d runs (%s)", len(lost), len(results[i]), strings.Join(lost, ", "))
		}
		if i > 0 && c.pid == 0 { // logferry's goal
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
		if c.pid != 0 {
			// A peer's losses are a finding, not a failure of the run:
			// wait until its count stops growing for 10 s.
			last, since := int64(-1), time.Now()
			for got := sink.Entries(); got < int64(lines) && time.Since(since) < 10*time.Second; got = sink.Entries() {
				if got != last {
					last, since = got, time.Now()
				}
				time.Sleep(100 * time.Millisecond)
			}
			r.lost = int64(lines) - sink.Entries()
		} else if err := sink.WaitEntries(ctx, int64(lines), nil); err != nil {
			return r, err
		}
		r.delivered = time.Since(start)
		if pcpu1, err := cpuOf(pluginPID); err == nil {
			r.pluginCPU = pcpu1 - pcpu0
		}
		if pio1, err := ReadProcIO(pluginPID); err == nil && pio0.ReadCalls > 0 {
			r.pluginIO = ProcIO{ReadCalls: pio1.ReadCalls - pio0.ReadCalls, WriteCalls: pio1.WriteCalls - pio0.WriteCalls}
		}
		if got := sink.Entries(); got != int64(lines)-r.lost {
			return r, fmt.Errorf("the sink has %d entries, want %d", got, int64(lines)-r.lost)
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

// grafanaDriverConfig is the managed plugin's config.json for Grafana's
// driver, as its repository's clients/cmd/docker-driver documents it:
// host network, the docker.logdriver/1.0 interface on loki.sock.
const grafanaDriverConfig = `{
  "description": "Grafana's Loki Docker driver, for logferry's benchmarks",
  "entrypoint": ["/bin/docker-driver"],
  "network": {"type": "host"},
  "interface": {"types": ["docker.logdriver/1.0"], "socket": "loki.sock"},
  "env": [{"name": "LOG_LEVEL", "description": "log level", "settable": ["value"], "value": "warn"}]
}
`

// installGrafanaDriver makes a managed plugin of the driver binary bin in
// the private daemon d (a rootfs with the binary alone: it is static) and
// returns its name and process.
func installGrafanaDriver(t *testing.T, d *dockertest.Daemon, bin string) (string, int) {
	t.Helper()
	const name = "grafana-loki-bench"
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	for _, sub := range []string{"bin", "run/docker/plugins", "var/log/docker", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(rootfs, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatalf("the driver's binary: %v", err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "docker-driver"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(grafanaDriverConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	d.Docker(t, "plugin", "create", name, dir)
	t.Cleanup(func() {
		_, _, _ = d.DockerErr("plugin", "disable", "-f", name)
		_, _, _ = d.DockerErr("plugin", "rm", "-f", name)
	})
	d.Docker(t, "plugin", "enable", name)
	id := strings.TrimSpace(d.Docker(t, "plugin", "inspect", "-f", "{{.Id}}", name))
	pid, err := findProcess("/bin/docker-driver", id)
	if err != nil {
		t.Logf("the driver's CPU is not measured: %v", err)
	}
	return name + ":latest", pid
}

// findPluginPID finds the managed plugin's process: /usr/bin/logferry-plugin
// in a cgroup named after the plugin's id.
func findPluginPID(pluginID string) (int, error) {
	return findProcess("/usr/bin/logferry-plugin", pluginID)
}

// findProcess finds a managed plugin's process: the program path (as the
// plugin's rootfs has it) in a cgroup named after the plugin's id.
func findProcess(path, pluginID string) (int, error) {
	procs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return 0, err
	}
	for _, p := range procs {
		cmd, err := os.ReadFile(filepath.Join(p, "cmdline"))
		if err != nil || !strings.HasPrefix(string(cmd), path+"\x00") && string(cmd) != path {
			continue
		}
		cg, err := os.ReadFile(filepath.Join(p, "cgroup"))
		if err != nil || !strings.Contains(string(cg), pluginID) {
			continue
		}
		return strconv.Atoi(filepath.Base(p))
	}
	return 0, fmt.Errorf("no %s process in a cgroup of plugin %.12s", path, pluginID)
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
