package soak

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Processes sampled.
const (
	procPlugin  = "plugin"
	procSidecar = "sidecar"
	procDockerd = "dockerd"
	procLoki    = "loki" // the test's Loki: its CPU and RSS, for context (no leak fits)
)

var procs = []string{procPlugin, procSidecar, procDockerd, procLoki}

// Sample is one observation of one process. A value that could not be read
// is -1.
type Sample struct {
	At         time.Time
	Proc       string
	PID        int
	Goroutines float64
	FDs        float64
	FIFODups   float64 // of FDs, those on a FIFO beyond the first descriptor of each (see procStat)
	SpoolFDs   float64 // of FDs, those of spool segments that exist (see procStat)
	Sockets    float64 // of FDs, sockets (see fdKinds)
	RSS        float64 // bytes
	RSSAnon    float64 // RssAnon of /proc/<pid>/status: the process's own memory
	RSSFile    float64 // RssFile: pages of mapped files (the binary's text among them)
	Heap       float64 // go_memstats_heap_inuse_bytes
	HeapKept   float64 // heap_idle - heap_released: free heap the Go runtime has not returned
	Stacks     float64 // go_memstats_stack_inuse_bytes
	HeapGoal   float64 // go_memstats_next_gc_bytes: the heap size the next GC starts at (about twice the heap live after the last)
	// Metadata is the Go runtime's own memory beside the heap and stacks:
	// GC metadata, span structures, per-P caches, profiling buckets and
	// the rest (go_memstats_gc_sys, mspan_inuse, mcache_inuse, buck_hash_sys
	// and other_sys bytes). Its span and GC metadata follow the largest
	// heap the process has had, and stay.
	Metadata float64
	Threads  float64 // OS threads (/proc/<pid>/status)
	CPU      float64 // % of one core since the previous sample of the same pid
	// The whole machine's CPU since the previous round of samples, in % of
	// one core (/proc/stat; every process of one round has the same):
	// busy (all but idle and iowait, steal included) and stolen by the
	// hypervisor. What competes with Loki and the shippers, to tell a slow
	// minute's cause.
	MachineBusy, MachineSteal float64
	Alive                     float64 // soak containers alive that this process serves
	// Soak containers alive per capture style, whichever process serves
	// them (the leak fits' regressors: see aliveKinds).
	AlivePlugin, AliveFile, AliveAPI float64
	Draining                         float64 // plugin: streams whose container stopped, held until Loki acknowledged their last line
	Streams                          float64 // plugin: streams active + draining; sidecar: containers shipped (routes file and api)
	Positions                        float64 // sidecar: positions entries
	Spool                            float64 // logferry_spool_bytes
	Queue                            float64 // logferry_loki_queue_bytes
	Sent                             float64 // logferry_loki_entries_sent_total, summed over restarts

	// Pushes to Loki, counters of this incarnation (plugin, sidecar:
	// logferry_loki_push_duration_seconds; Loki: its own push route's
	// loki_request_duration_seconds). SlowPushes took longer than about
	// a second (slowPush: the largest bucket bound not above it).
	Pushes, SlowPushes, PushSeconds float64
}

// slowPush is the push time the sampler counts pushes above, rounded down
// to a histogram bucket's bound: 1.024 s for the binaries, 1 s for Loki.
const slowPush = 1.05

// Histograms the sampler reads: the binaries' pushes and Loki's push route.
var (
	shipperPushes = histSpec{family: "logferry_loki_push_duration_seconds"}
	lokiPushes    = histSpec{family: "loki_request_duration_seconds", labels: []string{`route="loki_api_v1_push"`}}
)

// metadataNames are the families Sample.Metadata sums.
var metadataNames = []string{"go_memstats_gc_sys_bytes", "go_memstats_mspan_inuse_bytes", "go_memstats_mcache_inuse_bytes",
	"go_memstats_buck_hash_sys_bytes", "go_memstats_other_sys_bytes"}

// metricNames are the families the sampler reads from both binaries.
var metricNames = append([]string{
	"go_goroutines", "go_memstats_heap_inuse_bytes", "go_memstats_heap_idle_bytes", "go_memstats_heap_released_bytes",
	"go_memstats_stack_inuse_bytes", "go_memstats_next_gc_bytes",
	"logferry_plugin_streams_active", "logferry_plugin_streams_draining",
	`logferry_sidecar_containers{route="file"}`, `logferry_sidecar_containers{route="api"}`, "logferry_sidecar_positions",
	"logferry_spool_bytes", "logferry_spool_unacked_bytes", "logferry_loki_queue_bytes", "logferry_loki_entries_sent_total",
}, metadataNames...)

// sampler reads /proc and /metrics of the plugin, the sidecar and dockerd
// every SampleEvery until its context ends.
type sampler struct {
	e *env

	mu      sync.Mutex
	samples []Sample

	// Only the sampler goroutine uses these.
	prevCPU  map[string]cpuMark
	prevMach machineMark
	sentBase map[string]float64 // counter total of earlier incarnations
	sentLast map[string]float64
}

// machineMark is /proc/stat's "cpu" line at one instant, in clock ticks.
type machineMark struct {
	busy, steal int64
	at          time.Time
}

// machineCPU is the machine's busy and stolen CPU, in % of one core, since
// its previous call (-1, -1 on the first, or when /proc/stat is not read).
func (s *sampler) machineCPU(now time.Time) (busy, steal float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return -1, -1
	}
	m, ok := parseMachineCPU(b)
	if !ok {
		return -1, -1
	}
	m.at = now
	prev := s.prevMach
	s.prevMach = m
	dt := now.Sub(prev.at).Seconds()
	if prev.at.IsZero() || dt <= 0 {
		return -1, -1
	}
	return 100 * float64(m.busy-prev.busy) / clockTicks / dt, 100 * float64(m.steal-prev.steal) / clockTicks / dt
}

// parseMachineCPU reads the first line of /proc/stat: "cpu user nice
// system idle iowait irq softirq steal ...". Busy is every field but idle
// and iowait (guest time is already in user and nice).
func parseMachineCPU(b []byte) (machineMark, bool) {
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return machineMark{}, false
	}
	var m machineMark
	for i, x := range f[1:9] {
		v, err := strconv.ParseInt(x, 10, 64)
		if err != nil {
			return machineMark{}, false
		}
		switch i {
		case 3, 4: // idle, iowait
		case 7:
			m.steal = v
			m.busy += v
		default:
			m.busy += v
		}
	}
	return m, true
}

type cpuMark struct {
	pid   int
	ticks int64
	at    time.Time
}

func newSampler(e *env) *sampler {
	return &sampler{e: e, prevCPU: map[string]cpuMark{}, sentBase: map[string]float64{}, sentLast: map[string]float64{}}
}

func (s *sampler) run(ctx context.Context) {
	tick := time.NewTicker(s.e.cfg.SampleEvery)
	defer tick.Stop()
	for {
		s.sampleAll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (s *sampler) all() []Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Sample(nil), s.samples...)
}

func (s *sampler) sampleAll(ctx context.Context) {
	e := s.e
	now := time.Now()
	busy, steal := s.machineCPU(now)
	for _, p := range procs {
		smp := Sample{At: now, Proc: p, Goroutines: -1, FDs: -1, FIFODups: -1, SpoolFDs: -1, Sockets: -1, Draining: -1, RSS: -1, RSSAnon: -1, RSSFile: -1,
			Heap: -1, HeapKept: -1, Stacks: -1, HeapGoal: -1, Metadata: -1, Threads: -1, CPU: -1,
			MachineBusy: busy, MachineSteal: steal, Streams: -1, Positions: -1, Spool: -1, Queue: -1, Sent: -1,
			Pushes: -1, SlowPushes: -1, PushSeconds: -1}
		var pid int
		var err error
		var metricsAddr string
		switch p {
		case procPlugin:
			pid, err = findPluginPID(e.pluginID)
			metricsAddr = e.pluginMetrics
			smp.Alive = float64(e.work.aliveCount(stylePlugin))
		case procSidecar:
			pid, err = e.sc.pid()
			metricsAddr = e.sc.metrics
			smp.Alive = float64(e.work.aliveCount(styleFile) + e.work.aliveCount(styleAPI))
		case procDockerd:
			pid, err = dockerdPID(e.d.Dir())
			smp.Alive = float64(e.work.aliveTotal())
		case procLoki:
			pid = e.loki.PID()
			smp.Alive = float64(e.work.aliveTotal())
		}
		if err != nil || pid == 0 {
			continue // not running now (a disturbance): no sample
		}
		smp.AlivePlugin = float64(e.work.aliveCount(stylePlugin))
		smp.AliveFile = float64(e.work.aliveCount(styleFile))
		smp.AliveAPI = float64(e.work.aliveCount(styleAPI))
		smp.PID = pid
		ours := p == procPlugin || p == procSidecar
		st, err := readProc(pid, ours)
		if err != nil {
			continue
		}
		smp.FDs, smp.RSS = float64(st.fds), float64(st.rssBytes)
		smp.RSSAnon, smp.RSSFile, smp.Threads = float64(st.rssAnon), float64(st.rssFile), float64(st.threads)
		if ours {
			smp.FIFODups, smp.SpoolFDs, smp.Sockets = float64(st.fifoDups), float64(st.spoolFDs), float64(st.sockets)
		}
		if prev, ok := s.prevCPU[p]; ok && prev.pid == pid {
			if dt := now.Sub(prev.at).Seconds(); dt > 0 {
				smp.CPU = 100 * float64(st.cpuTicks-prev.ticks) / clockTicks / dt
			}
		}
		s.prevCPU[p] = cpuMark{pid: pid, ticks: st.cpuTicks, at: now}
		switch {
		case metricsAddr != "":
			if body, ok := scrapeNow(metricsAddr); ok {
				s.fromMetrics(&smp, sumFamilies(body, metricNames))
				smp.Pushes, smp.SlowPushes, smp.PushSeconds = shipperPushes.read(body, slowPush)
			}
		case p == procDockerd:
			s.dockerdInfo(ctx, &smp)
		case p == procLoki:
			if body, ok := scrapeNow(strings.TrimPrefix(e.loki.URL(), "http://")); ok {
				smp.Pushes, smp.SlowPushes, smp.PushSeconds = lokiPushes.read(body, slowPush)
			}
		}
		s.mu.Lock()
		s.samples = append(s.samples, smp)
		s.mu.Unlock()
	}
}

// scrapeNow is addr's /metrics page, read within 5 s. Not the run's
// context: the last sample, taken as the observers stop, is the idle end
// of the run.
func scrapeNow(addr string) ([]byte, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	body, err := scrape(ctx, addr)
	return body, err == nil
}

func (s *sampler) fromMetrics(smp *Sample, m map[string]float64) {
	get := func(name string) float64 {
		if v, ok := m[name]; ok {
			return v
		}
		return -1
	}
	smp.Goroutines = get("go_goroutines")
	smp.Heap = get("go_memstats_heap_inuse_bytes")
	if idle, rel := get("go_memstats_heap_idle_bytes"), get("go_memstats_heap_released_bytes"); idle >= 0 && rel >= 0 {
		smp.HeapKept = idle - rel
	}
	smp.Stacks = get("go_memstats_stack_inuse_bytes")
	smp.HeapGoal = get("go_memstats_next_gc_bytes")
	smp.Metadata = 0
	for _, name := range metadataNames {
		v := get(name)
		if v < 0 {
			smp.Metadata = -1
			break
		}
		smp.Metadata += v
	}
	smp.Spool = get("logferry_spool_bytes")
	smp.Queue = get("logferry_loki_queue_bytes")
	switch smp.Proc {
	case procPlugin:
		a, d := get("logferry_plugin_streams_active"), get("logferry_plugin_streams_draining")
		if a >= 0 {
			smp.Streams = a + max(d, 0)
		}
		smp.Draining = d
	case procSidecar:
		// The containers it ships; it also counts the plugin's, skipped.
		f, a := get(`logferry_sidecar_containers{route="file"}`), get(`logferry_sidecar_containers{route="api"}`)
		if f >= 0 || a >= 0 {
			smp.Streams = max(f, 0) + max(a, 0)
		}
		smp.Positions = get("logferry_sidecar_positions")
	}
	if sent, ok := m["logferry_loki_entries_sent_total"]; ok {
		// A restarted process counts from 0 again.
		if sent < s.sentLast[smp.Proc] {
			s.sentBase[smp.Proc] += s.sentLast[smp.Proc]
		}
		s.sentLast[smp.Proc] = sent
		smp.Sent = s.sentBase[smp.Proc] + sent
	}
}

// dockerdInfo reads dockerd's own goroutine count from docker info.
func (s *sampler) dockerdInfo(ctx context.Context, smp *Sample) {
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	out, _, err := s.e.d.DockerCtx(ictx, "info", "--format", "{{.NGoroutines}}")
	if err != nil {
		return
	}
	if v, err := strconv.ParseFloat(strings.TrimSpace(out), 64); err == nil {
		smp.Goroutines = v
	}
}

// shipped is the entries both binaries have had acknowledged by Loki, from
// the latest samples.
func (s *sampler) shipped() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	last := map[string]float64{}
	for _, smp := range s.samples {
		if smp.Sent >= 0 {
			last[smp.Proc] = smp.Sent
		}
	}
	return last[procPlugin] + last[procSidecar]
}
