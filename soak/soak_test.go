package soak

import (
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/goleak"

	"github.com/logferry/logferry/internal/dockertest"
	"github.com/logferry/logferry/internal/loggen"
	"github.com/logferry/logferry/internal/lokitest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		dockertest.Shutdown()
		os.Exit(code)
	}))
}

// TestSoakShort is make soak's 3-minute form: the same targets at 1,000
// lines/s over 4 containers per binary, 20 containers a minute, Loki down
// 10 s once, the sidecar killed once, the plugin disabled and enabled once.
// About 4-5 minutes. make test runs it on its own after the other packages
// (LF_SOAK_SHORT=1) and asserts every target but the timing ones (p99 write
// -> queryable, outage drain), which it logs: speed is measured, never
// asserted in make test; make soak-short (LF_SOAK_SHORT=timing) and make
// soak assert them too. LF_SOAK_OUT keeps the report there.
func TestSoakShort(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the soak needs dockerd and Loki")
	}
	if os.Getenv(lokitest.EnvLokiBin) == "" {
		t.Skip("LOKI_BIN is not set (make test and make soak-short set it)")
	}
	mode := os.Getenv("LF_SOAK_SHORT")
	if mode == "" {
		// Not beside the other packages' tests: they would share the two
		// cores with its dockerd, Loki and 60-odd containers.
		t.Skip("LF_SOAK_SHORT is not set (make test runs it on its own, after the other packages)")
	}
	cfg := ShortConfig()
	cfg.OutDir = os.Getenv("LF_SOAK_OUT")
	if cfg.OutDir == "" {
		cfg.OutDir = t.TempDir()
	}
	res, err := Run(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("report: %s", filepath.Join(cfg.OutDir, "report.md"))
	for _, tg := range res.Targets {
		switch {
		case tg.ReportOnly:
			t.Logf("info %s: %s (%s)", tg.Name, tg.Value, tg.Bound)
		case tg.Timing && mode != "timing":
			t.Logf("timing %s: %s (%s; %s, asserted by make soak-short and make soak)", tg.Name, tg.Value, tg.Bound, passWord(tg.Pass))
		case !tg.Pass:
			t.Errorf("FAIL %s: %s (want %s)", tg.Name, tg.Value, tg.Bound)
		default:
			t.Logf("ok   %s: %s", tg.Name, tg.Value)
		}
	}
	for _, p := range res.Delivery.Problems {
		t.Logf("problem: %s", p)
	}
}

func passWord(pass bool) string {
	if pass {
		return "met"
	}
	return "missed"
}

func TestFitSlope(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	noise := func(sd float64) float64 { return rnd.NormFloat64() * sd }
	tests := []struct {
		name     string
		gen      func(i int, tm, alive float64) (seg int, y float64)
		wantZero bool    // the interval includes 0
		want     float64 // slope, when not ~0
	}{
		{"flat with noise", func(i int, tm, a float64) (int, float64) { return 0, 100 + noise(3) }, true, 0},
		{"constant", func(i int, tm, a float64) (int, float64) { return 0, 42 }, true, 0},
		{"leak of 2 per minute", func(i int, tm, a float64) (int, float64) { return 0, 100 + 2*tm + noise(3) }, false, 2},
		{"churn explains the movement", func(i int, tm, a float64) (int, float64) { return 0, 50 + 3*a + noise(1) }, true, 0},
		{"leak under churn", func(i int, tm, a float64) (int, float64) { return 0, 50 + 3*a + 0.5*tm + noise(1) }, false, 0.5},
		{"restart resets the level, no leak", func(i int, tm, a float64) (int, float64) {
			if tm > 15 {
				return 1, 20 + noise(1)
			}
			return 0, 200 + noise(1)
		}, true, 0},
		{"restart, leak in each incarnation", func(i int, tm, a float64) (int, float64) {
			if tm > 15 {
				return 1, 20 + tm + noise(1)
			}
			return 0, 200 + tm + noise(1)
		}, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var pts []Point
			for i := range 360 { // 30 minutes every 5 s
				tm := float64(i) / 12
				alive := 50 + 10*math.Sin(float64(i)/7) + float64(rnd.IntN(5))
				seg, y := tt.gen(i, tm, alive)
				pts = append(pts, Point{Seg: seg, T: tm, Alive: []float64{alive}, Y: y})
			}
			f := FitSlope(pts)
			if f.IncludesZero() != tt.wantZero {
				t.Fatalf("fit %+v: includes zero %v, want %v", f, f.IncludesZero(), tt.wantZero)
			}
			if !tt.wantZero && math.Abs(f.Slope-tt.want) > 0.1*tt.want+0.05 {
				t.Errorf("slope %v, want about %v", f.Slope, tt.want)
			}
		})
	}
}

func TestFitSlopeTooFewPoints(t *testing.T) {
	f := FitSlope([]Point{{T: 1, Y: 1}, {T: 2, Y: 5}})
	if f.OK || !f.IncludesZero() {
		t.Errorf("two points: %+v, want no interval", f)
	}
}

func TestTQuantile(t *testing.T) {
	for df, want := range map[int]float64{1: 12.706, 10: 2.228, 30: 2.042, 40: 2.021, 120: 1.980, 100000: 1.960} {
		if got := tQuantile975(df); math.Abs(got-want) > 0.002 {
			t.Errorf("t(%d) = %v, want %v", df, got, want)
		}
	}
}

func TestPercentiles(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	p := percentiles(ds)
	if p.N != 100 || p.P50 != 50*time.Millisecond || p.P90 != 90*time.Millisecond || p.P99 != 99*time.Millisecond || p.Max != 100*time.Millisecond {
		t.Errorf("percentiles = %+v", p)
	}
	if z := percentiles(nil); z.N != 0 || z.P99 != 0 {
		t.Errorf("empty = %+v", z)
	}
}

func TestProbeFields(t *testing.T) {
	tests := []struct {
		line string
		id   string
		seq  uint64
		ok   bool
	}{
		{"loggen id=ab12-pl0003 seq=1200 stream=stdout len=200 text=ascii xyz", "ab12-pl0003", 1200, true},
		{"loggen id=x seq=100 stream=stderr len=40960 text=unicode ", "x", 100, true},
		{"hello", "", 0, false},
		{"loggen id=x seq=abc stream=stdout", "", 0, false},
		{"loggen id=x seq=100", "", 0, false},
	}
	for _, tt := range tests {
		id, seq, ok := probeFields(tt.line)
		if ok != tt.ok || (ok && (id != tt.id || seq != tt.seq)) {
			t.Errorf("probeFields(%q) = %q, %d, %v; want %q, %d, %v", tt.line, id, seq, ok, tt.id, tt.seq, tt.ok)
		}
	}
}

func TestSumFamilies(t *testing.T) {
	body := []byte(`# HELP go_goroutines x
go_goroutines 42
go_goroutines_other 7
logferry_sidecar_containers{route="file"} 3
logferry_sidecar_containers{route="api"} 2
logferry_spool_bytes 1e+06
`)
	got := sumFamilies(body, []string{"go_goroutines", "logferry_sidecar_containers", `logferry_sidecar_containers{route="api"}`,
		"logferry_spool_bytes", "absent"})
	want := map[string]float64{"go_goroutines": 42, "logferry_sidecar_containers": 5, `logferry_sidecar_containers{route="api"}`: 2,
		"logferry_spool_bytes": 1e6}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

func TestPlan(t *testing.T) {
	count := func(evs []event) map[string]int {
		m := map[string]int{}
		for _, e := range evs {
			m[e.Kind]++
		}
		return m
	}
	tests := []struct {
		name string
		cfg  Config
		want map[string]int
	}{
		{"short form: one of each", ShortConfig().withDefaults(), map[string]int{kindLoki: 1, kindSidecar: 1, kindPlugin: 1}},
		{"30 minutes", DefaultConfig().withDefaults(), map[string]int{kindLoki: 2, kindSidecar: 1, kindPlugin: 1}},
		{"2 hours", func() Config { c := DefaultConfig(); c.Duration = 2 * time.Hour; return c.withDefaults() }(),
			map[string]int{kindLoki: 11, kindSidecar: 2, kindPlugin: 2}},
		{"none", func() Config {
			c := DefaultConfig()
			c.LokiEvery, c.SidecarKillEvery, c.PluginCycleEvery = 0, 0, 0
			return c.withDefaults()
		}(), map[string]int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs := plan(tt.cfg)
			got := count(evs)
			if len(got) != len(tt.want) {
				t.Fatalf("plan = %v, want counts %v", evs, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s: %d, want %d (plan %v)", k, got[k], v, evs)
				}
			}
			for i, e := range evs {
				if e.At < tt.cfg.Warmup || e.At >= tt.cfg.Duration {
					t.Errorf("event %d at %v: outside [warm-up %v, %v)", i, e.At, tt.cfg.Warmup, tt.cfg.Duration)
				}
				if i > 0 && e.At < evs[i-1].At {
					t.Errorf("events out of order: %v", evs)
				}
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	c := ShortConfig()
	c.OutDir = "x"
	if err := c.Validate(); err != nil {
		t.Fatalf("short form: %v", err)
	}
	c.LongEvery, c.Duration, c.OutDir = 250, time.Second, ""
	err := c.Validate()
	for _, want := range []string{"long-every 250", "duration 1s", "no output directory"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %q", err, want)
		}
	}
}

func TestParseStored(t *testing.T) {
	split := 0
	for seq := uint64(1); seq <= 20; seq++ {
		orig := loggen.Format("u", seq, loggen.Stdout, 40<<10, true)
		view := loggen.JSONFileView(orig)
		rec, gotSplit, err := parseStored(view, true)
		if err != nil || rec.Seq != seq {
			t.Fatalf("seq %d: parseStored(stored form) = %+v, %v", seq, rec, err)
		}
		if gotSplit != (view != orig) {
			t.Errorf("seq %d: split = %v, but the stored form differs: %v", seq, gotSplit, view != orig)
		}
		if view != orig {
			split++
			if _, _, err := parseStored(view, false); err == nil {
				t.Errorf("seq %d: the stored form passes as the plugin's line", seq)
			}
		}
		if _, _, err := parseStored(orig[:len(orig)-1], true); err == nil {
			t.Errorf("seq %d: a truncated line passes", seq)
		}
	}
	if split == 0 {
		t.Fatal("no line had a character across a 16 KiB cut; the test proves nothing")
	}
}

func TestSettleAndInWindows(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	ws := []Window{{Kind: kindLoki, Start: at(10), End: at(40)}}
	ls := []Latency{
		{Write: at(5), Upper: at(6)},   // before: not the outage's
		{Write: at(20), Upper: at(55)}, // written during the outage, drained at 55
		{Write: at(41), Upper: at(50)}, // within 2 s of the end
		{Write: at(60), Upper: at(90)}, // later: not the outage's
	}
	got := settle(ws, ls)
	if !got[0].Settled.Equal(at(55)) || !ws[0].Settled.IsZero() {
		t.Fatalf("settled at %v (input %v), want %v and the input untouched", got[0].Settled, ws[0].Settled, at(55))
	}
	for _, tt := range []struct {
		sec  float64
		want bool
	}{{7, false}, {8.5, true}, {30, true}, {80, true}, {85.5, false}} {
		if in := inWindows(got, at(tt.sec), 2*time.Second, 30*time.Second); in != tt.want {
			t.Errorf("t=%v s: in windows %v, want %v", tt.sec, in, tt.want)
		}
	}
}

// TestFIFODups: a FIFO opened three times counts two beyond its first
// descriptor, a FIFO opened once none, and the FD series the leak fit
// reads leaves them and live spool segments out.
func TestFIFODups(t *testing.T) {
	dir := t.TempDir() + "/"
	for _, name := range []string{"a", "b"} {
		if err := syscall.Mkfifo(dir+name, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var files []*os.File
	for _, name := range []string{"a", "a", "b", "a"} {
		f, err := os.OpenFile(dir+name, os.O_RDWR, 0) // O_RDWR: no wait for a writer
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	if dups, spool, _ := fdKinds(os.Getpid(), ents, dir); dups != 2 || spool != 0 {
		t.Errorf("fdKinds = %d dups, %d spool, want 2 and 0", dups, spool)
	}
	s := Sample{FDs: 40, FIFODups: 2, SpoolFDs: 0}
	if got := metricValue(s, "fds"); got != 38 {
		t.Errorf("fds fitted = %v, want 38", got)
	}
	s.SpoolFDs = 2
	if got := metricValue(s, "fds"); got != 36 {
		t.Errorf("fds fitted with two spool segments = %v, want 36", got)
	}
	s.FIFODups = -1
	if got := metricValue(s, "fds"); got != 40 {
		t.Errorf("fds fitted without a dup count = %v, want 40", got)
	}
}

// TestSpoolSegmentFDs: a spool segment that exists counts as a spool
// descriptor; once deleted (still open) it does not.
func TestSpoolSegmentFDs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool", "0123abcd")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, name := range []string{"00000000000000000000.seg", "00000000000000001234.seg", "lock"} {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	count := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		_, spool, _ := fdKinds(os.Getpid(), ents, "/nonexistent/")
		return spool
	}
	if got := count(); got != 2 {
		t.Fatalf("spool descriptors = %d, want 2", got)
	}
	if err := os.Remove(filepath.Join(dir, "00000000000000000000.seg")); err != nil {
		t.Fatal(err)
	}
	if got := count(); got != 1 {
		t.Fatalf("spool descriptors after one segment was deleted = %d, want 1", got)
	}
}

// TestHistRead reads a histogram as client_golang writes it (the binaries'
// bucket bounds are 0.001 * 4^k, so the one near a second is not written
// "1.024" exactly in every float) and as Loki writes its push route.
func TestHistRead(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "logferry_loki_push_duration_seconds", Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
	}, []string{"endpoint", "status"})
	reg.MustRegister(h)
	for _, v := range []float64{0.01, 0.2, 0.9, 1.5} {
		h.WithLabelValues("http://127.0.0.1:1/loki/api/v1/push", "204").Observe(v)
	}
	h.WithLabelValues("http://127.0.0.1:1/loki/api/v1/push", "network").Observe(12)
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	count, above, sum := shipperPushes.read(rec.Body.Bytes(), slowPush)
	if count != 5 || above != 2 || math.Abs(sum-14.61) > 1e-9 {
		t.Errorf("shipper pushes: count %v, above %v, sum %v; want 5, 2, 14.61", count, above, sum)
	}

	loki := []byte(`loki_request_duration_seconds_bucket{method="POST",route="loki_api_v1_push",status_code="204",ws="false",le="0.5"} 7
loki_request_duration_seconds_bucket{method="POST",route="loki_api_v1_push",status_code="204",ws="false",le="1"} 9
loki_request_duration_seconds_bucket{method="POST",route="loki_api_v1_push",status_code="204",ws="false",le="2.5"} 10
loki_request_duration_seconds_bucket{method="POST",route="loki_api_v1_push",status_code="204",ws="false",le="+Inf"} 10
loki_request_duration_seconds_sum{method="POST",route="loki_api_v1_push",status_code="204",ws="false"} 4.5
loki_request_duration_seconds_count{method="POST",route="loki_api_v1_push",status_code="204",ws="false"} 10
loki_request_duration_seconds_bucket{method="GET",route="loki_api_v1_query_range",status_code="200",ws="false",le="1"} 1
loki_request_duration_seconds_bucket{method="GET",route="loki_api_v1_query_range",status_code="200",ws="false",le="+Inf"} 3
loki_request_duration_seconds_sum{method="GET",route="loki_api_v1_query_range",status_code="200",ws="false"} 9
loki_request_duration_seconds_count{method="GET",route="loki_api_v1_query_range",status_code="200",ws="false"} 3
`)
	if count, above, sum := lokiPushes.read(loki, slowPush); count != 10 || above != 1 || sum != 4.5 {
		t.Errorf("Loki pushes: count %v, above %v, sum %v; want 10, 1, 4.5", count, above, sum)
	}
	if count, above, sum := lokiPushes.read([]byte("go_goroutines 3\n"), slowPush); count != -1 || above != -1 || sum != -1 {
		t.Errorf("no series: %v, %v, %v; want -1s", count, above, sum)
	}
}

// TestFitSlopeKinds: two kinds of containers that cost differently, their
// mix drifting over the run. One count for both leaves the drift in the
// time slope; a count per kind does not, and still finds a leak.
func TestFitSlopeKinds(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	gen := func(leak float64, kinds func(file, api float64) []float64) Fit {
		var pts []Point
		for i := range 360 {
			tm := float64(i) / 12
			api := math.Max(0, 8-tm/4+float64(rnd.IntN(3)))        // fewer stream containers as the run goes
			file := 25 + tm/4 + float64(rnd.IntN(3))               // a few more file ones
			y := 58 + 2*file + 3*api + leak*tm + rnd.NormFloat64() // 2 goroutines per file container, 3 per stream
			pts = append(pts, Point{T: tm, Alive: kinds(file, api), Y: y})
		}
		return FitSlope(pts)
	}
	total := func(file, api float64) []float64 { return []float64{file + api} }
	perKind := func(file, api float64) []float64 { return []float64{file, api} }
	if f := gen(0, total); f.IncludesZero() {
		t.Fatalf("one count for both kinds: %+v; the drift of the mix should show in the slope (this test's premise)", f)
	}
	if f := gen(0, perKind); !f.IncludesZero() || math.Abs(f.PerAlive[0]-2) > 0.2 || math.Abs(f.PerAlive[1]-3) > 0.2 {
		t.Errorf("per kind: %+v; want no trend, 2 and 3 per container", f)
	}
	if f := gen(0.5, perKind); f.IncludesZero() || math.Abs(f.Slope-0.5) > 0.1 {
		t.Errorf("per kind with a leak of 0.5/min: %+v", f)
	}
	// A kind that never changes (no stream containers) is left out.
	noAPI := func(file, api float64) []float64 { return []float64{file, 0} }
	if f := gen(0.5, noAPI); !f.OK || f.PerAlive[1] != 0 {
		t.Errorf("a constant kind: %+v; want a fit without it", f)
	}
}

// TestLeakFitsRestartWarmup: a restarted process's samples count after the
// same warm-up as the first incarnation's: its RSS climbing to its level
// in its first minutes is not a leak.
func TestLeakFitsRestartWarmup(t *testing.T) {
	start := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	cfg := Config{Duration: 30 * time.Minute, Warmup: 5 * time.Minute}
	rnd := rand.New(rand.NewPCG(5, 6))
	var samples []Sample
	for i := range 360 {
		at := start.Add(time.Duration(i) * 5 * time.Second)
		s := Sample{At: at, Proc: procPlugin, PID: 1, RSS: 45<<20 + rnd.NormFloat64()*(1<<20), AlivePlugin: 30, Draining: 0}
		if since := at.Sub(start.Add(20 * time.Minute)); since >= 0 {
			// Restarted at 20 minutes: from 28 MiB to its level in 3 minutes.
			s.PID = 2
			s.RSS = 45<<20 + rnd.NormFloat64()*(1<<20)
			if since < 3*time.Minute {
				s.RSS -= float64(17<<20) * (1 - since.Minutes()/3)
			}
		}
		samples = append(samples, s)
	}
	f := leakFits(cfg, start, samples, nil)[procPlugin]["rss"]
	if !f.OK || !f.IncludesZero() {
		t.Errorf("rss fit %+v: the new process's climb counted as a leak", f)
	}
	// 5:00-19:55 of the first (180 samples) and 25:00-29:45 of the
	// second (58: from 5 minutes after its start to 15 s before the end).
	if first, second := 180, 58; f.N != first+second {
		t.Errorf("fit over %d samples, want %d (the second incarnation from 5 minutes after its start)", f.N, first+second)
	}
}
