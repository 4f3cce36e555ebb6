package soak

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// Result is one soak's figures and verdicts.
type Result struct {
	Config Config
	RunID  string
	// Revision and Dirty describe the tree the binaries were built from,
	// read when the run began (the tree may change while it runs).
	Revision, Dirty string
	Start           time.Time
	RanEnd          time.Time // the last container exited
	Samples         []Sample
	Latencies       []Latency
	Windows         []Window
	Fits            map[string]map[string]Fit // process -> metric -> fit
	CPU             map[string]CPUStat
	Latency         map[string]LatencyStat // capture style
	Recovery        []Recovery
	Minutes         []Minute
	LokiCalm        map[string]CalmStat // capture style -> steady p99 away from Loki's slow pushes
	LokiEvents      []LokiEvent         // from Loki's log: its starts and WAL checkpoints
	Delivery        DeliveryTotals
	Tail            TailStat
	ProbeFull       int // probe polls that hit their limit
	Targets         []Target
	Pass            bool
}

// CPUStat is a process's CPU, % of one core, after the warm-up.
type CPUStat struct{ Mean, Max float64 }

// LatencyStat is write -> queryable of one capture style.
type LatencyStat struct {
	Steady, Disturbed, Long Percentiles
	// Sampled lines the delivery check found in Loki but the tail never
	// delivered, written outside disturbances and during them. Unseen
	// steady lines count as slower than any seen in the p99 target.
	UnseenSteady, UnseenDisturbed int
	// SteadyP99 is the steady p99 with the unseen lines counted as
	// slowest; Infinite when it falls among them.
	SteadyP99  time.Duration
	Infinite   bool
	Resolution time.Duration // median width of [Lower, Upper]
	// SteadyP99Lower and SteadyP99Upper bracket the steady p99: the p99s
	// of the lines' Lower and Upper bounds (unseen counted as slowest).
	// The true p99 is between them; SteadyP99 is of the midpoints.
	SteadyP99Lower, SteadyP99Upper time.Duration
}

// TailStat is how the prober's live tail fared.
type TailStat struct {
	Connects, Dropped int
	Gaps              []Window // down, from its end to the next connect (Loki's restarts)
	Errs              []string // why tails ended, the first few
}

// Recovery is how long after Loki came back the sampled lines the drain
// sweeps' witnesses wrote during the outage were all queryable (see
// drain.go).
type Recovery struct {
	Window    Window
	Witnesses int // containers swept
	Sweeps    int
	Complete  bool // the sweeps found every witness's outage lines
	Samples   int  // witnesses' sampled lines written during the outage, found by the sweeps
	// Unseen: witnesses' sampled lines written during the outage that the
	// delivery check found and the sweeps did not: the drain is unknown.
	Unseen   int
	Drain    time.Duration            // the slowest capture style's
	PerStyle map[string]time.Duration // capture style -> its witnesses' drain
	Limit    time.Duration            // recoveryLimit of the outage
}

// recovery is outage w's drain, from its sweeps (none: not swept) and the
// delivery check.
func recovery(cfg Config, w Window, watches []*drainWatch, deliveries map[*container]Delivery) Recovery {
	rec := Recovery{Window: w, Limit: recoveryLimit(cfg, w.End.Sub(w.Start)), PerStyle: map[string]time.Duration{}}
	var dw *drainWatch
	for _, x := range watches {
		if x.Window.Start.Equal(w.Start) {
			dw = x
		}
	}
	if dw == nil {
		return rec
	}
	rec.Sweeps, rec.Complete = dw.Sweeps, dw.Complete
	for _, style := range styles {
		cs := dw.Witnesses[style]
		rec.Witnesses += len(cs)
		if d, n, ok := dw.drained(style); ok {
			rec.PerStyle[style] = d
			rec.Samples += n
			rec.Drain = max(rec.Drain, d)
		}
		for _, c := range cs {
			for _, sl := range deliveries[c].Sampled {
				if sl.Write.Before(w.Start) || sl.Write.After(w.End) {
					continue
				}
				if _, ok := dw.seen[sampleKey(c.gen.ID, sl.Seq)]; !ok {
					rec.Unseen++
				}
			}
		}
	}
	return rec
}

// recoveryLimit is the bound on an outage's drain: cfg.RecoveryLimit for
// cfg.LokiDown of outage (the 10 s after 20 s: the backlog goes out
// three times as fast as lines arrive), in proportion for a longer one. A
// restart's outage is longer than its planned down time: Loki's stop (up
// to 10 s) and start-up (WAL replay) come on top, and so does the backlog.
func recoveryLimit(cfg Config, outage time.Duration) time.Duration {
	if outage <= cfg.LokiDown || cfg.LokiDown <= 0 {
		return cfg.RecoveryLimit
	}
	return time.Duration(float64(cfg.RecoveryLimit) * float64(outage) / float64(cfg.LokiDown))
}

// DeliveryTotals sums the per-container check.
type DeliveryTotals struct {
	Containers, StartFailed, RunFailed   int
	StartFailedOutside                   int // not the plugin's during a disturbance
	Written, Delivered, Lost, Duplicated uint64
	// Of Lost, what the plugin's containers that stopped while it was
	// disabled lost (LostDisabled lines, DisabledContainers containers):
	// the daemon closes such a container's FIFO with what it wrote since
	// the plugin stopped, and no plugin process exists to read it (the
	// README's documented limit).
	LostDisabled, DisabledContainers uint64
	// Of Lost, what the sidecar's containers removed while it was down,
	// or before it had Loki acknowledge their last lines, lost: their log
	// is gone with them when it comes back (the README's documented limit).
	LostRemoved, RemovedContainers uint64
	Damaged, Stored                uint64
	PerStyle                       map[string][4]uint64 // containers, written, lost, duplicated
	Problems                       []string
	CheckErr                       error
}

// Target is one row of the report's targets table.
type Target struct {
	Name, Value, Bound string
	Pass               bool
	ReportOnly         bool
	// Timing: a latency or drain bound, which depends on the machine's
	// load as much as on the code (make test reports it, the soak itself
	// asserts it).
	Timing bool
}

// Leak metrics per process; failing ones first.
var (
	leakMetrics = map[string][]string{
		procPlugin:  {"goroutines", "fds", "rss", "streams", "heap", "rss-anon", "rss-file"},
		procSidecar: {"goroutines", "fds", "rss", "streams", "positions", "heap", "rss-anon", "rss-file"},
		procDockerd: {"goroutines", "fds", "rss"},
	}
	// The parts of RSS are reported, to tell which part moves; RSS is judged.
	reportOnlyLeak = map[string]bool{"heap": true, "rss-anon": true, "rss-file": true, procDockerd + "/rss": true}
)

// Disturbance margins: samples and latencies this close to a disturbance
// window are its, not the steady state's.
const (
	windowBefore   = 2 * time.Second
	latencyAfter   = 30 * time.Second
	sampleAfter    = 60 * time.Second
	restartWarmup  = 30 * time.Second
	endMargin      = 15 * time.Second
	minLatencyRows = 50
)

func metricValue(s Sample, m string) float64 {
	switch m {
	case "goroutines":
		return s.Goroutines
	case "fds":
		// One descriptor per FIFO, and none of a live spool segment: a
		// quiet stream's wait, the keeper and a spool that holds data
		// follow the streams' and Loki's state, not a leak.
		if s.FDs < 0 || s.FIFODups < 0 || s.SpoolFDs < 0 {
			return s.FDs
		}
		return s.FDs - s.FIFODups - s.SpoolFDs
	case "rss":
		return kib(s.RSS)
	case "heap":
		return kib(s.Heap)
	case "rss-anon":
		return kib(s.RSSAnon)
	case "rss-file":
		return kib(s.RSSFile)
	case "streams":
		return s.Streams
	case "positions":
		return s.Positions
	}
	return -1
}

// aliveKinds is the containers that s's process holds, by the kinds that
// cost it differently: the sidecar's file containers (a tailer and a pinner
// each) apart from its Engine-stream ones (a stream reader and an HTTP
// connection's two goroutines and socket each); the plugin's containers
// alive and, apart, its streams draining (a container that stopped, held
// until Loki acknowledged its last line: how many follows Loki's pace);
// dockerd's per capture style (a FIFO copier for the plugin's, a log file
// for json-file's, a logs stream it serves for the Engine-stream ones). The
// mix moves with the churn's draw and Loki; one count for all left its
// drift in the time slope (run e: sidecar goroutines -0.046/min, plugin
// -0.027/min, intervals below 0). A leak of draining streams still shows:
// the plugin's streams fit counts them against its containers alone.
func aliveKinds(s Sample, metric string) []float64 {
	switch s.Proc {
	case procSidecar:
		return []float64{s.AliveFile, s.AliveAPI}
	case procPlugin:
		if metric != "streams" && s.Draining >= 0 {
			return []float64{s.AlivePlugin, s.Draining}
		}
		return []float64{s.AlivePlugin}
	case procDockerd:
		return []float64{s.AlivePlugin, s.AliveFile, s.AliveAPI}
	}
	return []float64{s.Alive}
}

// kib is bytes in KiB, or -1 for a value not read.
func kib(bytes float64) float64 {
	if bytes < 0 {
		return -1
	}
	return bytes / 1024
}

// leakFits fits every leak metric of every process over the steady part of
// the run: after the warm-up, before the last seconds, outside disturbance
// windows (and a minute after them), each process incarnation its own
// segment without its own warm-up (as long as the run's: a restarted
// binary's RSS climbed for about 2 minutes in run f, and its first 30 s were
// all that was left out then).
func leakFits(cfg Config, start time.Time, samples []Sample, ws []Window) map[string]map[string]Fit {
	out := map[string]map[string]Fit{}
	fitted := fittedFilter(cfg, start, samples, ws)
	for _, proc := range procs {
		out[proc] = map[string]Fit{}
		for _, m := range leakMetrics[proc] {
			var pts []Point
			for _, s := range samples {
				if s.Proc != proc || !fitted(s) {
					continue
				}
				y := metricValue(s, m)
				if y < 0 {
					continue
				}
				pts = append(pts, Point{Seg: s.PID, T: s.At.Sub(start).Minutes(), Alive: aliveKinds(s, m), Y: y})
			}
			out[proc][m] = FitSlope(pts)
		}
	}
	return out
}

// fittedFilter reports which of samples the leak fits take: after the
// warm-up, before the last seconds, outside disturbance windows (and a
// minute after them), and a restarted process's only after its own
// warm-up.
func fittedFilter(cfg Config, start time.Time, samples []Sample, ws []Window) func(Sample) bool {
	firstSeen, firstPID := map[int]time.Time{}, map[string]int{}
	for _, s := range samples {
		if _, ok := firstSeen[s.PID]; !ok {
			firstSeen[s.PID] = s.At
		}
		if _, ok := firstPID[s.Proc]; !ok {
			firstPID[s.Proc] = s.PID
		}
	}
	from, to := start.Add(cfg.Warmup), start.Add(cfg.Duration-endMargin)
	return func(s Sample) bool {
		if s.At.Before(from) || s.At.After(to) || inWindows(ws, s.At, windowBefore, sampleAfter) {
			return false
		}
		return s.PID == firstPID[s.Proc] || s.At.Sub(firstSeen[s.PID]) >= max(restartWarmup, cfg.Warmup)
	}
}

func analyze(e *env, ranEnd time.Time, deliveries map[*container]Delivery, checkErr error) *Result {
	cfg := e.cfg
	r := &Result{Config: cfg, RunID: e.runID, Revision: e.revision, Dirty: e.dirty, Start: e.start, RanEnd: ranEnd, Samples: e.samp.all(),
		Latencies: e.probe.latencies(), Windows: e.dist.all(), CPU: map[string]CPUStat{},
		Latency: map[string]LatencyStat{}}
	e.probe.mu.Lock()
	r.ProbeFull = e.probe.full
	r.Tail = TailStat{Connects: e.probe.connects, Dropped: e.probe.dropped,
		Gaps: append([]Window(nil), e.probe.gaps...), Errs: append([]string(nil), e.probe.tailErrs...)}
	e.probe.mu.Unlock()
	// Outage recoveries, from the drain sweeps.
	var watches []*drainWatch
	if e.drain != nil {
		watches = e.drain.watches()
	}
	for _, w := range r.Windows {
		if w.Kind != kindLoki || w.End.IsZero() {
			continue
		}
		r.Recovery = append(r.Recovery, recovery(cfg, w, watches, deliveries))
	}

	// A Loki outage lasts, for latency and the fits, until its backlog is
	// drained.
	r.Windows = settle(r.Windows, r.Latencies)
	for i, w := range r.Windows {
		for _, rec := range r.Recovery {
			if rec.Window.Start.Equal(w.Start) && rec.Samples > 0 && w.End.Add(rec.Drain).After(w.Settled) {
				r.Windows[i].Settled = w.End.Add(rec.Drain)
			}
		}
	}
	r.Fits = leakFits(cfg, r.Start, r.Samples, r.Windows)

	// CPU after the warm-up, every sample (disturbances included: they are
	// part of the cost).
	for _, proc := range procs {
		var sum, mx float64
		n := 0
		for _, s := range r.Samples {
			if s.Proc == proc && s.CPU >= 0 && s.At.After(r.Start.Add(cfg.Warmup)) && s.At.Before(r.Start.Add(cfg.Duration)) {
				sum += s.CPU
				mx = max(mx, s.CPU)
				n++
			}
		}
		if n > 0 {
			r.CPU[proc] = CPUStat{Mean: sum / float64(n), Max: mx}
		}
	}

	// Sampled lines the check found that the probe never saw: by capture
	// style, in or out of disturbances.
	seen := map[string]bool{}
	for _, l := range r.Latencies {
		seen[sampleKey(l.ID, l.Seq)] = true
	}
	unseenSteady, unseenDisturbed := map[string]int{}, map[string]int{}
	unseenSteadyAt := map[string][]time.Time{}
	for c, d := range deliveries {
		for _, sl := range d.Sampled {
			if seen[sampleKey(c.gen.ID, sl.Seq)] {
				continue
			}
			if inWindows(r.Windows, sl.Write, windowBefore, latencyAfter) {
				unseenDisturbed[c.style]++
			} else {
				unseenSteady[c.style]++
				unseenSteadyAt[c.style] = append(unseenSteadyAt[c.style], sl.Write)
			}
		}
	}

	// Latency per capture style.
	for _, style := range styles {
		var steady, steadyLo, steadyHi, disturbed, long, widths []time.Duration
		for _, l := range r.Latencies {
			if l.Style != style {
				continue
			}
			if inWindows(r.Windows, l.Write, windowBefore, latencyAfter) {
				disturbed = append(disturbed, l.Value())
			} else {
				steady = append(steady, l.Value())
				steadyLo = append(steadyLo, l.Lower.Sub(l.Write))
				steadyHi = append(steadyHi, l.Upper.Sub(l.Write))
				if l.Long {
					long = append(long, l.Value())
				}
			}
			widths = append(widths, l.Upper.Sub(l.Lower))
		}
		ls := LatencyStat{Steady: percentiles(steady), Disturbed: percentiles(disturbed), Long: percentiles(long),
			UnseenSteady: unseenSteady[style], UnseenDisturbed: unseenDisturbed[style], Resolution: percentiles(widths).P50}
		ls.SteadyP99, ls.Infinite = quantileWithUnseen(steady, ls.UnseenSteady, 0.99)
		ls.SteadyP99Lower, _ = quantileWithUnseen(steadyLo, ls.UnseenSteady, 0.99)
		ls.SteadyP99Upper, _ = quantileWithUnseen(steadyHi, ls.UnseenSteady, 0.99)
		r.Latency[style] = ls
	}

	// Per minute, with Loki's events beside.
	evs, err := readLokiEvents(filepath.Join(cfg.OutDir, "loki.log"))
	if err != nil {
		e.tb.Logf("soak: Loki's events: %v", err)
	}
	r.LokiEvents = evs
	r.Minutes = minutes(r, evs)
	r.LokiCalm = lokiCalmLatency(r, unseenSteadyAt)

	// Delivery.
	dt := DeliveryTotals{PerStyle: map[string][4]uint64{}, CheckErr: checkErr}
	cs := e.work.containers()
	for _, c := range cs {
		if !c.ran.Load() {
			dt.StartFailed++
			if !inWindows(r.Windows, c.tried, 10*time.Second, 10*time.Second) || c.style != stylePlugin {
				dt.StartFailedOutside++
				dt.Problems = append(dt.Problems, fmt.Sprintf("%s (%s) did not start: %v", c.name, c.style, c.err))
			}
			continue
		}
		dt.Containers++
		if c.err != nil {
			dt.RunFailed++
			dt.Problems = append(dt.Problems, fmt.Sprintf("%s (%s): %v", c.name, c.style, c.err))
		}
		d, ok := deliveries[c]
		if !ok {
			dt.Problems = append(dt.Problems, fmt.Sprintf("%s (%s): not checked", c.name, c.style))
			continue
		}
		dt.Written += d.Written
		dt.Delivered += d.Delivered
		dt.Lost += d.Lost()
		switch {
		case d.Lost() == 0:
		case c.style == stylePlugin && stoppedWhileDisabled(r.Windows, c.exited):
			dt.LostDisabled += d.Lost()
			dt.DisabledContainers++
		case c.style != stylePlugin && removedWhileSidecarDown(r.Windows, c.exited, c.removed):
			dt.LostRemoved += d.Lost()
			dt.RemovedContainers++
		}
		dt.Duplicated += d.Duplicated
		dt.Damaged += d.Damaged
		dt.Stored += d.Stored
		ps := dt.PerStyle[c.style]
		ps[0]++
		ps[1] += d.Written
		ps[2] += d.Lost()
		ps[3] += d.Duplicated
		dt.PerStyle[c.style] = ps
		if d.Lost() > 0 || d.Duplicated > 0 || d.Damaged > 0 {
			dt.Problems = append(dt.Problems, fmt.Sprintf("%s (%s, tty=%v, rotate=%v, %d lines, started %s, exited %s): lost %d (first gap %s), duplicated %d, damaged %d",
				c.name, c.style, c.tty, c.rotate, d.Written, c.started.Format("15:04:05"), c.exited.Format("15:04:05"),
				d.Lost(), d.FirstGap, d.Duplicated, d.Damaged))
		}
	}
	r.Delivery = dt
	r.Targets = targets(r)
	r.Pass = true
	for _, t := range r.Targets {
		if !t.ReportOnly && !t.Pass {
			r.Pass = false
		}
	}
	return r
}

// stoppedWhileDisabled reports whether a container that exited at t stopped
// while the plugin was disabled: within a plugin disable/enable window, or
// a second before it (docker wait answers after the exit).
func stoppedWhileDisabled(ws []Window, t time.Time) bool {
	for _, w := range ws {
		if w.Kind == kindPlugin && !w.End.IsZero() && !t.Before(w.Start) && !t.After(w.End.Add(time.Second)) {
			return true
		}
	}
	return false
}

// unackedSpan bounds how long the sidecar holds lines it read before Loki
// acknowledges them: the batch wait, a push, a retry.
const unackedSpan = 5 * time.Second

// removedWhileSidecarDown reports whether a sidecar container that exited
// at exited and was removed at removed was gone before the sidecar came
// back from a SIGKILL, having exited when the sidecar could still hold
// its last lines unacknowledged (from unackedSpan before the kill).
func removedWhileSidecarDown(ws []Window, exited, removed time.Time) bool {
	if removed.IsZero() {
		return false
	}
	for _, w := range ws {
		if w.Kind == kindSidecar && !w.End.IsZero() && !exited.Before(w.Start.Add(-unackedSpan)) && !removed.After(w.End) {
			return true
		}
	}
	return false
}

func lostValue(d DeliveryTotals) string {
	v := fmt.Sprintf("%d of %d written (%d containers)", d.Lost-d.LostDisabled-d.LostRemoved, d.Written, d.Containers)
	if d.LostDisabled > 0 {
		v += fmt.Sprintf("; besides, %d lost by %d of the plugin's containers that stopped while it was disabled (the documented limit)",
			d.LostDisabled, d.DisabledContainers)
	}
	if d.LostRemoved > 0 {
		v += fmt.Sprintf("; besides, %d lost by %d of the sidecar's containers removed while it was down after a SIGKILL (the documented limit)",
			d.LostRemoved, d.RemovedContainers)
	}
	return v
}

func targets(r *Result) []Target {
	cfg := r.Config
	var ts []Target
	unit := map[string]string{"goroutines": "/min", "fds": "/min", "rss": " KiB/min", "heap": " KiB/min", "rss-anon": " KiB/min", "rss-file": " KiB/min", "streams": "/min", "positions": "/min"}
	for _, proc := range procs {
		for _, m := range leakMetrics[proc] {
			f := r.Fits[proc][m]
			only := reportOnlyLeak[m] || reportOnlyLeak[proc+"/"+m] || (proc == procDockerd && cfg.DockerdReported)
			val := "too few samples"
			if f.OK {
				val = fmt.Sprintf("%+.3g%s, 95%% CI [%+.3g, %+.3g] (n=%d, %d segment(s), rho %.2f)", f.Slope, unit[m], f.Lo, f.Hi, f.N, f.Segments, f.Rho)
			}
			bound, pass := "CI includes 0", f.OK && f.IncludesZero()
			if slack := cfg.Slack[m]; slack > 0 {
				bound = fmt.Sprintf("CI reaches into ±%g%s (short-form bound)", slack, unit[m])
				pass = f.OK && f.Lo <= slack && f.Hi >= -slack
			}
			ts = append(ts, Target{Name: fmt.Sprintf("%s %s leak", proc, m), Value: val, Bound: bound, Pass: pass, ReportOnly: only})
		}
	}
	for _, proc := range []string{procPlugin, procSidecar} {
		c, ok := r.CPU[proc]
		val := "not measured"
		if ok {
			val = fmt.Sprintf("%.1f %% mean, %.1f %% max", c.Mean, c.Max)
		}
		ts = append(ts, Target{Name: proc + " CPU (% of one core)", Value: val, Bound: "< 2 % (the steady-rate CPU issue's; reported)", Pass: ok && c.Mean < 2, ReportOnly: true})
	}
	for _, style := range styles {
		l := r.Latency[style]
		only := style == styleAPI // churn containers only: few samples
		p99 := ms(l.SteadyP99)
		if l.Infinite {
			p99 = "among the unseen"
		}
		val := fmt.Sprintf("p99 %v, bracketed by the probe's resolution within [%v, %v] (p50 %v, p90 %v, max %v; n=%d; %d unseen; resolution %v)", p99,
			ms(l.SteadyP99Lower), ms(l.SteadyP99Upper), ms(l.Steady.P50), ms(l.Steady.P90), ms(l.Steady.Max), l.Steady.N, l.UnseenSteady, ms(l.Resolution))
		ts = append(ts, Target{Name: style + " write -> queryable p99, outside disturbances", Value: val,
			Bound: "<= " + cfg.P99Limit.String() + fmt.Sprintf(", n >= %d", minLatencyRows),
			Pass:  l.Steady.N >= minLatencyRows && !l.Infinite && l.SteadyP99 <= cfg.P99Limit, ReportOnly: only, Timing: true})
		if c, ok := r.LokiCalm[style]; ok && style != styleAPI {
			p99 := ms(c.P99)
			if c.Infinite {
				p99 = "among the unseen"
			}
			ts = append(ts, Target{Name: style + " p99, outside disturbances and Loki's slow minutes", Value: fmt.Sprintf("p99 %v (n=%d, %d unseen; %d of %d minutes left out)", p99, c.N, c.Unseen, c.SlowMinutes, len(r.Minutes)),
				Bound: "<= " + cfg.P99Limit.String(), Pass: c.N >= minLatencyRows && !c.Infinite && c.P99 <= cfg.P99Limit, ReportOnly: true, Timing: true})
		}
	}
	for i, rec := range r.Recovery {
		ts = append(ts, Target{Name: fmt.Sprintf("backlog drained after Loki outage %d", i+1), Value: recoveryValue(rec),
			Bound: fmt.Sprintf("<= %v (%v per %v down)", ms(rec.Limit), cfg.RecoveryLimit, cfg.LokiDown),
			Pass:  rec.Samples > 0 && rec.Complete && rec.Unseen == 0 && rec.Drain <= rec.Limit, Timing: true})
	}
	d := r.Delivery
	ts = append(ts,
		Target{Name: "lines lost", Value: lostValue(d), Bound: "0 (not counting the documented limits: plugin containers stopped while it was disabled, sidecar containers removed while it was down)",
			Pass: d.Lost == d.LostDisabled+d.LostRemoved && d.CheckErr == nil && d.Written > 0},
		Target{Name: "lines duplicated", Value: fmt.Sprint(d.Duplicated), Bound: "0", Pass: d.Duplicated == 0},
		Target{Name: "lines damaged or foreign", Value: fmt.Sprint(d.Damaged), Bound: "0", Pass: d.Damaged == 0},
		Target{Name: "containers that failed", Value: fmt.Sprintf("%d did not run (%d of them the plugin's while it was disabled), %d did not exit 0", d.StartFailed, d.StartFailed-d.StartFailedOutside, d.RunFailed),
			Bound: "0 (not counting the plugin's while disabled)", Pass: d.StartFailedOutside == 0 && d.RunFailed == 0},
	)
	var derr []string
	for _, w := range r.Windows {
		if w.Err != nil {
			derr = append(derr, fmt.Sprintf("%s: %v", w.Kind, w.Err))
		}
	}
	ts = append(ts, Target{Name: "disturbances carried out", Value: fmt.Sprintf("%d, %d failed %v", len(r.Windows), len(derr), derr), Bound: "all", Pass: len(derr) == 0})
	ts = append(ts, Target{Name: "duration (uptime of the run)", Value: r.RanEnd.Sub(r.Start).Round(time.Second).String(), Bound: cfg.Duration.String(), Pass: true, ReportOnly: true})
	return ts
}

func recoveryValue(rec Recovery) string {
	switch {
	case rec.Sweeps == 0:
		return "unknown: not swept"
	case rec.Samples == 0:
		return fmt.Sprintf("unknown: no witness line written during the outage found (%d witnesses, %d sweeps)", rec.Witnesses, rec.Sweeps)
	}
	var per []string
	for _, style := range styles {
		if d, ok := rec.PerStyle[style]; ok {
			per = append(per, style+" "+ms(d))
		}
	}
	val := fmt.Sprintf("%v after Loki was back from %v down (%s; %d sampled lines of %d witnesses, %d sweeps; %d unseen)", ms(rec.Drain),
		ms(rec.Window.End.Sub(rec.Window.Start)), strings.Join(per, ", "), rec.Samples, rec.Witnesses, rec.Sweeps, rec.Unseen)
	if !rec.Complete || rec.Unseen > 0 {
		val = "unknown: " + val
	}
	return val
}

func ms(d time.Duration) string {
	if d == 0 {
		return "0"
	}
	return d.Round(time.Millisecond).String()
}
