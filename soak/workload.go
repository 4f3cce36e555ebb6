package soak

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logferry/logferry/internal/loggen"
)

// Capture styles: through the plugin, tailed by the sidecar from json-file,
// or read by the sidecar through the Engine's logs API (the local driver).
const (
	stylePlugin = "plugin"
	styleFile   = "sidecar-file"
	styleAPI    = "sidecar-api"
)

var styles = []string{stylePlugin, styleFile, styleAPI}

// container is one generator container of the soak. Fields after started
// are set by its runner goroutine and read after it has ended.
type container struct {
	name     string
	style    string
	longLive bool // started at the beginning, logs for the whole run
	gen      loggen.Config
	rate     float64 // lines per second
	tty      bool
	rotate   bool      // json-file / local copy max-size and max-file
	tried    time.Time // docker run
	started  time.Time
	exited   time.Time
	removed  time.Time // docker rm returned (zero: not removed during the run)
	err      error     // could not run, or did not exit 0
	ran      atomic.Bool
	running  atomic.Bool
	id       string
}

// written is how many lines c has written by now, by its schedule.
func (c *container) written(now time.Time) uint64 {
	if !c.ran.Load() {
		return 0
	}
	if !c.running.Load() {
		return c.gen.Lines
	}
	n := uint64(now.Sub(c.started).Seconds()*c.rate) + 1
	return min(n, c.gen.Lines)
}

// longLines reports whether seq is one of c's 40 KiB lines.
func (c *container) longLine(seq uint64) bool {
	return c.gen.LongEvery > 0 && seq%c.gen.LongEvery == 0
}

// workload starts and removes the soak's containers.
type workload struct {
	e     *env
	wg    sync.WaitGroup
	mu    sync.Mutex
	all   []*container
	byID  map[string]*container // loggen id -> container
	alive map[string]*atomic.Int64
	seq   atomic.Int64
	rnd   *rand.Rand // only the churn goroutine uses it
}

func newWorkload(e *env) *workload {
	w := &workload{e: e, byID: map[string]*container{}, alive: map[string]*atomic.Int64{},
		rnd: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 17))}
	for _, s := range styles {
		w.alive[s] = &atomic.Int64{}
	}
	return w
}

func (w *workload) aliveCount(style string) int64 { return w.alive[style].Load() }

func (w *workload) aliveTotal() int64 {
	var n int64
	for _, s := range styles {
		n += w.alive[s].Load()
	}
	return n
}

func (w *workload) lookup(id string) *container {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.byID[id]
}

func (w *workload) containers() []*container {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]*container(nil), w.all...)
}

// newContainer names and registers a container of style.
// Every other one writes non-ASCII text (unicode).
func (w *workload) newContainer(style string, longLive, unicode bool, rate float64, life time.Duration) *container {
	cfg := w.e.cfg
	k := w.seq.Add(1)
	kind := "c"
	if longLive {
		kind = "l"
	}
	short := map[string]string{stylePlugin: "p", styleFile: "f", styleAPI: "a"}[style]
	id := fmt.Sprintf("%s-%s%s%04d", w.e.runID, short, kind, k)
	c := &container{
		name:     "soak-" + id,
		style:    style,
		longLive: longLive,
		rate:     rate,
		gen: loggen.Config{ID: id, Lines: max(1, uint64(life.Seconds()*rate)), Size: cfg.LineSize,
			StderrShare: cfg.StderrShare, LongEvery: cfg.LongEvery, LongSize: cfg.LongSize, Unicode: unicode},
	}
	w.mu.Lock()
	w.all = append(w.all, c)
	w.byID[id] = c
	w.mu.Unlock()
	return c
}

// launch runs c in a goroutine owned by w: docker run, docker wait, then
// docker rm after RmDelay. ctx ends the wait early (abort).
func (w *workload) launch(ctx context.Context, c *container) {
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		w.run(ctx, c)
	}()
}

func (w *workload) run(ctx context.Context, c *container) {
	e := w.e
	args := []string{"run", "-d", "--network", "none", "--label", "soak=" + e.runID, "--name", c.name}
	switch c.style {
	case stylePlugin:
		args = append(args, "--log-driver", e.driver)
		for _, o := range pluginLogOpts {
			args = append(args, "--log-opt", o)
		}
	case styleFile:
		args = append(args, "--log-driver", "json-file")
	case styleAPI:
		args = append(args, "--log-driver", "local")
	}
	if c.rotate {
		args = append(args, "--log-opt", "max-size="+e.cfg.RotateSize, "--log-opt", "max-file=2")
	}
	if c.tty {
		args = append(args, "-t")
	}
	args = append(args, e.image)
	args = append(args, genArgs(c.gen, c.rate)...)
	c.tried = time.Now()
	runCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	out, stderr, err := e.d.DockerCtx(runCtx, args...)
	cancel()
	if err != nil {
		c.err = fmt.Errorf("docker run: %w: %s", err, strings.TrimSpace(stderr))
		e.logf("container %s: %v", c.name, c.err)
		return
	}
	// loggen starts its schedule when it starts: close enough to now.
	c.id = strings.TrimSpace(out)
	c.started = time.Now()
	c.running.Store(true)
	c.ran.Store(true)
	w.alive[c.style].Add(1)
	life := time.Duration(float64(c.gen.Lines) / c.rate * float64(time.Second))
	waitCtx, cancel := context.WithTimeout(ctx, life+3*time.Minute)
	code, stderr, err := e.d.DockerCtx(waitCtx, "wait", c.id)
	hung := errors.Is(waitCtx.Err(), context.DeadlineExceeded)
	cancel()
	if hung {
		e.dockerdHung(fmt.Sprintf("docker wait %s still waiting %v after its planned end", c.name, 3*time.Minute))
	}
	c.exited = time.Now()
	c.running.Store(false)
	w.alive[c.style].Add(-1)
	if err != nil {
		c.err = fmt.Errorf("docker wait: %w: %s", err, strings.TrimSpace(stderr))
	} else if strings.TrimSpace(code) != "0" {
		c.err = fmt.Errorf("exited with %s", strings.TrimSpace(code))
	}
	if !sleepCtx(ctx, e.cfg.RmDelay) {
		return // the final cleanup removes it
	}
	rmCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, stderr, err := e.d.DockerCtx(rmCtx, "rm", "-f", "-v", c.id); err != nil {
		e.logf("removing %s: %v %s", c.name, err, strings.TrimSpace(stderr))
		return
	}
	c.removed = time.Now()
}

// pluginLogOpts are the plugin containers' log options: the chaos suite's
// short retries and backoff, so an outage goes to the spool at once and the
// backlog is sent soon after Loki is back; the default batch wait (1 s),
// which the latency target is measured against, and the default push
// timeout (10 s): a 2 s one, which the soak had until 2026-12-07, turned
// Loki's stalls of a few seconds on this busy machine into re-sends that
// added to its load.
var pluginLogOpts = []string{"loki-retries=2", "loki-min-backoff=100ms", "loki-max-backoff=2s"}

// sidecarLokiFlags are the same settings for the sidecar.
var sidecarLokiFlags = []string{"--loki-retries", "2", "--loki-min-backoff", "100ms", "--loki-max-backoff", "2s",
	"--overflow", "spool"}

func genArgs(gen loggen.Config, rate float64) []string {
	args := []string{"-id", gen.ID, "-n", strconv.FormatUint(gen.Lines, 10), "-size", strconv.Itoa(gen.Size),
		"-stderr", strconv.FormatFloat(gen.StderrShare, 'f', -1, 64),
		"-rate", strconv.FormatFloat(rate, 'f', -1, 64)}
	if gen.LongEvery > 0 {
		args = append(args, "-long-every", strconv.FormatUint(gen.LongEvery, 10), "-long-size", strconv.Itoa(gen.LongSize))
	}
	if gen.Unicode {
		args = append(args, "-unicode")
	}
	return args
}

// startLongLived starts the long-lived containers, Containers per binary,
// spread over the first seconds; each writes until the end of the run.
// Every third sidecar one rotates its json-file.
// ctx stops the starting, cctx the containers' runners (an abort).
func (w *workload) startLongLived(ctx, cctx context.Context, end time.Time) {
	cfg := w.e.cfg
	per := cfg.Rate / float64(2*cfg.Containers)
	for i := 0; i < cfg.Containers; i++ {
		for _, style := range []string{stylePlugin, styleFile} {
			if ctx.Err() != nil {
				return
			}
			c := w.newContainer(style, true, i%2 == 1, per, time.Until(end))
			c.rotate = style == styleFile && i%3 == 2
			w.launch(cctx, c)
			sleepCtx(ctx, 100*time.Millisecond)
		}
	}
}

// churn starts ChurnPerMinute short- and long-lived containers a minute
// until stop, in turn through the plugin and the sidecar: one in five with
// a TTY, one in three rotating, one in four of the sidecar's on the local
// driver (the Engine-stream fallback); each ends by itself before end.
// Every 15 s it reads a running container's logs with docker logs.
func (w *workload) churn(ctx, cctx context.Context, end time.Time) {
	cfg := w.e.cfg
	if cfg.ChurnPerMinute <= 0 {
		return
	}
	every := time.Minute / time.Duration(cfg.ChurnPerMinute)
	tick := time.NewTicker(every)
	defer tick.Stop()
	logsTick := time.NewTicker(15 * time.Second)
	defer logsTick.Stop()
	for k := 0; ; k++ {
		select {
		case <-ctx.Done():
			return
		case <-logsTick.C:
			if ctx.Err() == nil {
				w.readLogs()
			}
			continue
		case <-tick.C:
		}
		life := time.Duration(2+w.rnd.IntN(14)) * time.Second
		if k%5 == 4 {
			life = time.Duration(60+w.rnd.IntN(121)) * time.Second
		}
		if left := time.Until(end) - 10*time.Second; life > left {
			if left < 2*time.Second {
				continue
			}
			life = left
		}
		style := stylePlugin
		if k%2 == 1 {
			style = styleFile
			if k%8 == 3 {
				style = styleAPI
			}
		}
		c := w.newContainer(style, false, k%4 >= 2, cfg.ChurnRate, life)
		c.tty = k%5 == 2
		c.rotate = k%3 == 0 && style != styleAPI
		w.launch(cctx, c)
	}
}

// readLogs runs docker logs --tail on a running container, as a user
// reading logs while the container runs. The run's end does not cut it
// short: a docker logs client killed mid-read has hung dockerd's handling
// of the container before (moby/moby#30135), and the run of 2026-12-07
// 04:15 UTC, whose churn could kill one at the run's end, ended with
// dockerd reporting no exit (not shown to be the cause).
func (w *workload) readLogs() {
	var ids []string
	for _, c := range w.containers() {
		if c.running.Load() && c.style != styleAPI {
			ids = append(ids, c.id)
		}
	}
	if len(ids) == 0 {
		return
	}
	id := ids[w.rnd.IntN(len(ids))]
	lctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, stderr, err := w.e.d.DockerCtx(lctx, "logs", "--tail", "5", id); err != nil {
		w.e.logf("docker logs %s: %v %s", id, err, strings.TrimSpace(stderr))
	}
}

// sleepCtx waits d; false if ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
