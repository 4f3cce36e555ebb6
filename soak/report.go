package soak

import (
	"encoding/csv"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// writeReport writes report.md, the charts, samples.csv and latency.csv to
// dir.
func writeReport(dir string, r *Result) error {
	if err := writeSamplesCSV(filepath.Join(dir, "samples.csv"), r); err != nil {
		return err
	}
	if err := writeLatencyCSV(filepath.Join(dir, "latency.csv"), r); err != nil {
		return err
	}
	charts, err := writeCharts(dir, r)
	if err != nil {
		return fmt.Errorf("charts: %w", err)
	}
	return os.WriteFile(filepath.Join(dir, "report.md"), []byte(reportMarkdown(r, charts)), 0o644)
}

func reportMarkdown(r *Result, charts []chart) string {
	cfg := r.Config
	var b strings.Builder
	verdict := "PASS"
	if !r.Pass {
		verdict = "FAIL"
	}
	fmt.Fprintf(&b, "# Soak report %s: %s\n\n", r.Start.UTC().Format("2006-01-02 15:04 UTC"), verdict)
	fmt.Fprintf(&b, "Revision `%s`, %s, %d CPUs, %s. Run id `%s`.\n\n", r.Revision, runtime.Version(), runtime.NumCPU(), kernel(), r.RunID)
	if r.Dirty != "" {
		fmt.Fprintf(&b, "The binaries were built from a working tree with uncommitted changes to: %s.\n\n", r.Dirty)
	}
	fmt.Fprintf(&b, "Workload: %v; %g lines/s over %d long-lived containers per binary (%g lines/s each; %d-byte lines, 20 %% on stderr, every %dth line %d KiB, half of them non-ASCII); "+
		"%d churn containers a minute at %g lines/s, alive 2-15 s or (one in five) 1-3 min, one in five with a TTY, one in three rotating (max-size %s, max-file 2), "+
		"a quarter of the sidecar's on the local driver (the Engine-stream fallback), a docker logs read every 15 s; removed %v after exit. "+
		"Warm-up %v; samples every %v; the latency probe polls every %v and follows Loki's live tail.\n\n",
		cfg.Duration, cfg.Rate, cfg.Containers, cfg.Rate/float64(2*cfg.Containers), cfg.LineSize, cfg.LongEvery, cfg.LongSize>>10,
		cfg.ChurnPerMinute, cfg.ChurnRate, cfg.RotateSize, cfg.RmDelay, cfg.Warmup, cfg.SampleEvery, cfg.ProbeEvery)
	fmt.Fprintf(&b, "Both binaries: default batch wait (1 s) and batch size; default push timeout (10 s); retries 2, backoff 100 ms-2 s (as `make chaos`); the sidecar with `--overflow spool`.\n\n")

	b.WriteString("## Targets\n\n| target | value | bound | result |\n|---|---|---|---|\n")
	for _, t := range r.Targets {
		res := "PASS"
		switch {
		case t.ReportOnly:
			res = "reported"
		case !t.Pass:
			res = "**FAIL**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", t.Name, t.Value, t.Bound, res)
	}

	b.WriteString("\n## Processes\n\nIdle: the first sample (before the first container) and the last (every container removed and its lines delivered). " +
		"Loaded: mean after the warm-up until the end of the run. Loki is the test's own, sampled for context (its CPU competes with the shippers' on this machine); no leak is fitted to it.\n\n" +
		"| process | restarts | goroutines idle / loaded / idle | FDs idle / loaded / idle | RSS MiB idle / loaded / max / idle | heap MiB loaded | CPU % mean / max |\n|---|---|---|---|---|---|---|\n")
	for _, proc := range procs {
		var all, loaded []Sample
		pids := map[int]bool{}
		for _, s := range r.Samples {
			if s.Proc != proc {
				continue
			}
			all = append(all, s)
			pids[s.PID] = true
			if s.At.After(r.Start.Add(cfg.Warmup)) && s.At.Before(r.Start.Add(cfg.Duration)) {
				loaded = append(loaded, s)
			}
		}
		if len(all) == 0 {
			continue
		}
		first := all[0]
		// The idle end: the last value read of each series.
		lastOf := func(f func(Sample) float64) float64 {
			for i := len(all) - 1; i >= 0; i-- {
				if v := f(all[i]); v >= 0 {
					return v
				}
			}
			return -1
		}
		mean := func(f func(Sample) float64) float64 {
			sum, n := 0.0, 0
			for _, s := range loaded {
				if v := f(s); v >= 0 {
					sum += v
					n++
				}
			}
			if n == 0 {
				return -1
			}
			return sum / float64(n)
		}
		maxRSS := 0.0
		for _, s := range all {
			maxRSS = max(maxRSS, s.RSS)
		}
		c := r.CPU[proc]
		fmt.Fprintf(&b, "| %s | %d | %s / %s / %s | %s / %s / %s | %.1f / %.1f / %.1f / %.1f | %s | %.1f / %.1f |\n", proc, len(pids)-1,
			num(first.Goroutines), num(math.Round(mean(func(s Sample) float64 { return s.Goroutines }))), num(lastOf(func(s Sample) float64 { return s.Goroutines })),
			num(first.FDs), num(math.Round(mean(func(s Sample) float64 { return s.FDs }))), num(lastOf(func(s Sample) float64 { return s.FDs })),
			mib(first.RSS), mib(mean(func(s Sample) float64 { return s.RSS })), mib(maxRSS), mib(lastOf(func(s Sample) float64 { return s.RSS })),
			numMiB(mean(func(s Sample) float64 { return s.Heap })), c.Mean, c.Max)
	}

	b.WriteString("\n## Latency, write -> queryable\n\n")
	b.WriteString("A sampled line is every line whose sequence number is a multiple of 100 (every 40 KiB line among them). " +
		"Write time is the entry's timestamp, which dockerd sets when it reads the line from the container; queryable is the middle of the interval " +
		"between the last poll of the last 3 s that did not return the line and the first answer that held it: a poll, or Loki's live tail " +
		"(`/loki/api/v1/tail`, which sends an entry as the ingester takes it, old timestamps included, up to 500 ms late: it catches most of a backlog and of the slow lines; resolution: the median width of that interval). " +
		"Unseen: sampled lines the delivery check found in Loki that neither a poll nor the tail delivered (the tail is down while Loki is, and under load Loki's ingester drops what does not fit a tail's small buffer); " +
		"in the p99 target the steady ones count as slower than any seen. " +
		"Disturbed: written from 2 s before a disturbance until 30 s after it settled (the sampled lines written during it, ±2 s, were all queryable; " +
		"for a Loki outage, its backlog drained).\n\n")
	b.WriteString("| capture style | window | n | unseen | p50 | p90 | p99 | max |\n|---|---|---|---|---|---|---|---|\n")
	for _, style := range styles {
		l := r.Latency[style]
		for _, row := range []struct {
			name   string
			p      Percentiles
			unseen string
		}{{"steady", l.Steady, strconv.Itoa(l.UnseenSteady)}, {"steady, 40 KiB lines", l.Long, ""}, {"disturbances", l.Disturbed, strconv.Itoa(l.UnseenDisturbed)}} {
			fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s | %s | %s |\n", style, row.name, row.p.N, row.unseen, ms(row.p.P50), ms(row.p.P90), ms(row.p.P99), ms(row.p.Max))
		}
	}
	if r.ProbeFull > 0 {
		fmt.Fprintf(&b, "\n%d probe polls hit their limit of %d entries (the tail still saw what they missed).\n", r.ProbeFull, probeLimit)
	}
	fmt.Fprintf(&b, "\nThe tail connected %d times (%d gaps, Loki's restarts among them, %s in all); Loki dropped %d entries from it.",
		r.Tail.Connects, len(r.Tail.Gaps), ms(gapTotal(r.Tail.Gaps)), r.Tail.Dropped)
	if len(r.Tail.Errs) > 0 {
		fmt.Fprintf(&b, " Why the first tails ended: %q.", r.Tail.Errs)
	}
	b.WriteString("\n")

	b.WriteString(minutesMarkdown(r, r.Minutes))
	b.WriteString(stretchesMarkdown(stretches(r)))

	b.WriteString("\n## Disturbances\n\n`took` is from the first action until the disturbed part answered again: for Loki, SIGTERM (SIGKILL after 10 s), the planned down time, and its start-up (WAL replay). " +
		"A backlog's drain is measured by sweeps: from the moment Loki is back, every 500 ms, a query of the outage's span (from 5 s before it) for the sampled lines of 3 long-lived containers per capture style (the witnesses, whose lines wait in the same queues as everyone's); " +
		"drained is the answer that held the last of their sampled lines written during the outage, once each witness has a line before the outage, one after it and every one between. " +
		"Unknown when the sweeps did not get there within 3 minutes or the delivery check found a witness line they did not.\n\n")
	b.WriteString("| kind | at | took | settled after its end | backlog drained after Loki was back | error |\n|---|---|---|---|---|---|\n")
	for _, w := range r.Windows {
		drain := ""
		for _, rec := range r.Recovery {
			if rec.Window.Start.Equal(w.Start) {
				drain = recoveryValue(rec)
			}
		}
		errs := ""
		if w.Err != nil {
			errs = w.Err.Error()
		}
		settled := ""
		if w.Settled.After(w.End) {
			settled = ms(w.Settled.Sub(w.End))
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", w.Kind, w.Start.Sub(r.Start).Round(time.Second), ms(w.End.Sub(w.Start)), settled, drain, errs)
	}

	d := r.Delivery
	b.WriteString("\n## Exact delivery\n\nEvery container's lines read back from Loki by paging `query_range` per container and counted by loggen's sequence numbers.\n\n")
	b.WriteString("| capture style | containers | written | lost | duplicated |\n|---|---|---|---|---|\n")
	for _, style := range styles {
		ps := d.PerStyle[style]
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d |\n", style, ps[0], ps[1], ps[2], ps[3])
	}
	fmt.Fprintf(&b, "| all | %d | %d | %d | %d |\n", d.Containers, d.Written, d.Lost, d.Duplicated)
	if d.LostDisabled > 0 {
		fmt.Fprintf(&b, "\nOf the lines lost, %d were lost by %d of the plugin's containers that stopped while it was disabled: the daemon closes "+
			"such a container's FIFO with what it wrote since the plugin stopped, and no plugin process exists to read it (the README's documented limit; "+
			"the target does not count them).\n", d.LostDisabled, d.DisabledContainers)
	}
	if d.LostRemoved > 0 {
		fmt.Fprintf(&b, "\nOf the lines lost, %d were lost by %d of the sidecar's containers removed while it was down after a SIGKILL (having exited "+
			"at most %v before the kill, while the sidecar could hold their last lines unacknowledged): their log went with them before the "+
			"sidecar came back to read it again (the README's documented limit; the target does not count them).\n", d.LostRemoved, d.RemovedContainers, unackedSpan)
	}
	fmt.Fprintf(&b, "\n%d long non-ASCII lines of json-file containers arrived in json-file's stored form (U+FFFD where dockerd's 16 KiB cut split a character; the file holds no more) and count as delivered.\n", d.Stored)
	if d.CheckErr != nil {
		fmt.Fprintf(&b, "\nThe check failed for some containers: %v\n", d.CheckErr)
	}
	if len(d.Problems) > 0 {
		b.WriteString("\nProblems:\n\n")
		for i, p := range d.Problems {
			if i == 50 {
				fmt.Fprintf(&b, "- ... and %d more\n", len(d.Problems)-50)
				break
			}
			fmt.Fprintf(&b, "- %s\n", p)
		}
	}

	b.WriteString("\n## Charts\n\n")
	for _, c := range charts {
		fmt.Fprintf(&b, "### %s\n\n![%s](%s)\n\n", c.Title, c.Title, c.File)
	}
	b.WriteString("## Reading this report\n\n" +
		"Leak slopes are least-squares slopes per minute of each series against time, with the soak containers the process holds as further regressors, " +
		"one per kind that costs it differently (churn moves goroutines, FDs and streams up and down with it): the sidecar's file containers and its Engine-stream ones; " +
		"the plugin's containers alive and, but for its streams series, its streams draining (stopped containers held until Loki acknowledged their last line); dockerd's containers alive. " +
		"A kind whose count moves only with the others is left out. One intercept per process incarnation (a killed sidecar " +
		"or a re-enabled plugin starts a new one, whose own warm-up, as long as the run's, is left out). Samples from the warm-up, the last 15 s, and from 2 s before each " +
		"disturbance to a minute after it settled (see Latency) are left out. Samples every few seconds are autocorrelated, so the 95 % interval is widened by the lag-1 " +
		"autocorrelation of the residuals (rho). The FD series fitted counts one descriptor per FIFO and none of a spool segment that exists: " +
		"the plugin also holds its own write end of a stream's FIFO (none for a stream re-attached after a restart) and, while the stream is " +
		"quiet, a duplicate its reader waits on (`fifo_dups` in `samples.csv`); a spool keeps its segments open while it holds data, after an " +
		"outage or an overflow (`spool_fds`). They follow the streams' and Loki's state, not a leak; a segment deleted but left open still counts. " +
		"The chart and the table above show every descriptor. " +
		"A leak target fails when its interval excludes 0. Heap and dockerd's RSS are reported, not judged. " +
		"CPU is % of one core from utime+stime in /proc/<pid>/stat between samples. Raw data: `samples.csv` (one row per process and sample), " +
		"`latency.csv` (one row per sampled line).\n\n")
	return b.String()
}

func num(v float64) string {
	if v < 0 {
		return "n/a"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

func numMiB(v float64) string {
	if v < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f", mib(v))
}

func gitRevision() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// dirtyGoFiles lists the tracked Go files (and scripts) with uncommitted
// changes: they are in the binaries measured.
func dirtyGoFiles() string {
	out, err := exec.Command("git", "diff", "--name-only", "HEAD", "--", "*.go", "scripts", "config.json").Output()
	if err != nil {
		return ""
	}
	return strings.Join(strings.Fields(string(out)), ", ")
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return runtime.GOOS
	}
	return "Linux " + strings.TrimSpace(string(b))
}

func writeSamplesCSV(path string, r *Result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	_ = w.Write([]string{"time", "seconds", "process", "pid", "goroutines", "fds", "fifo_dups", "spool_fds", "rss_bytes", "heap_inuse_bytes", "cpu_percent",
		"containers_alive", "streams", "positions", "spool_bytes", "queue_bytes", "entries_sent",
		"rss_anon_bytes", "rss_file_bytes", "heap_kept_bytes", "stack_inuse_bytes", "pushes", "slow_pushes", "push_seconds", "sockets", "alive_plugin", "alive_file", "alive_api", "streams_draining", "heap_goal_bytes", "runtime_metadata_bytes", "threads", "machine_busy_percent", "machine_steal_percent"})
	for _, s := range r.Samples {
		_ = w.Write([]string{s.At.UTC().Format(time.RFC3339Nano), f3(s.At.Sub(r.Start).Seconds()), s.Proc, strconv.Itoa(s.PID),
			f3(s.Goroutines), f3(s.FDs), f3(s.FIFODups), f3(s.SpoolFDs), f3(s.RSS), f3(s.Heap), f3(s.CPU), f3(s.Alive), f3(s.Streams), f3(s.Positions),
			f3(s.Spool), f3(s.Queue), f3(s.Sent),
			f3(s.RSSAnon), f3(s.RSSFile), f3(s.HeapKept), f3(s.Stacks), f3(s.Pushes), f3(s.SlowPushes), f3(s.PushSeconds), f3(s.Sockets), f3(s.AlivePlugin), f3(s.AliveFile), f3(s.AliveAPI), f3(s.Draining), f3(s.HeapGoal), f3(s.Metadata),
			f3(s.Threads), f3(s.MachineBusy), f3(s.MachineSteal)})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func writeLatencyCSV(path string, r *Result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	ls := slices.Clone(r.Latencies)
	slices.SortFunc(ls, func(a, b Latency) int { return a.Write.Compare(b.Write) })
	w := csv.NewWriter(f)
	_ = w.Write([]string{"write_time", "style", "id", "seq", "long", "latency_seconds", "lower_seconds", "upper_seconds", "in_disturbance"})
	for _, l := range ls {
		_ = w.Write([]string{l.Write.UTC().Format(time.RFC3339Nano), l.Style, l.ID, strconv.FormatUint(l.Seq, 10), strconv.FormatBool(l.Long),
			f3(l.Value().Seconds()), f3(l.Lower.Sub(l.Write).Seconds()), f3(l.Upper.Sub(l.Write).Seconds()),
			strconv.FormatBool(inWindows(r.Windows, l.Write, windowBefore, latencyAfter))})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func f3(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }

func gapTotal(ws []Window) time.Duration {
	var d time.Duration
	for _, w := range ws {
		d += w.End.Sub(w.Start)
	}
	return d
}
