package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/logferry/logferry/internal/loggen"
	"github.com/logferry/logferry/sidecar/positions"
)

// JSONFileLog is one container's json-file log on disk, written by
// WriteJSONFileLog.
type JSONFileLog struct {
	ContainersDir string // what the sidecar gets as containers-dir
	Container     EngineContainer
	Path          string // <ContainersDir>/<id>/<id>-json.log
	Lines         int64
	Stderr        int64 // lines on stderr
	FileBytes     int64 // the file's size: the input the figures are per
	LineBytes     int64 // the lines' text alone, without newlines
	WriteTime     time.Duration
}

// jsonFileLine is one line of a json-file log, fields in the daemon's order.
type jsonFileLine struct {
	Log    string `json:"log"`
	Stream string `json:"stream"`
	Time   string `json:"time"`
}

// WriteJSONFileLog writes lines 1..cfg.Lines of the log generator's format
// (internal/loggen) into <containersDir>/<id>/<id>-json.log as Docker's
// json-file driver writes them: one JSON object per line, the text with its
// newline in "log" (escaped as encoding/json does, which like the daemon
// escapes <, > and &), "stream", and the time in RFC 3339 with nanoseconds,
// UTC, each line one microsecond after the previous from start on.
func WriteJSONFileLog(containersDir, name string, cfg loggen.Config, start time.Time) (JSONFileLog, error) {
	if err := cfg.Validate(); err != nil {
		return JSONFileLog{}, err
	}
	id := ContainerID(name)
	l := JSONFileLog{
		ContainersDir: containersDir,
		Container:     EngineContainer{ID: id, Name: name},
		Path:          filepath.Join(containersDir, id, id+"-json.log"),
	}
	if err := os.MkdirAll(filepath.Dir(l.Path), 0o755); err != nil {
		return l, err
	}
	t0 := time.Now()
	f, err := os.Create(l.Path)
	if err != nil {
		return l, err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	enc := json.NewEncoder(w) // Encode ends each object with a newline
	var line []byte
	base := start.UTC()
	for seq := uint64(1); seq <= cfg.Lines; seq++ {
		var stream string
		stream, line = cfg.AppendLine(line[:0], seq)
		if stream == loggen.Stderr {
			l.Stderr++
		}
		rec := jsonFileLine{
			Log:    string(line) + "\n",
			Stream: stream,
			Time:   base.Add(time.Duration(seq) * time.Microsecond).Format(time.RFC3339Nano),
		}
		if err := enc.Encode(&rec); err != nil {
			return l, fmt.Errorf("writing %s: %w", l.Path, err)
		}
		l.Lines++
		l.LineBytes += int64(len(line))
	}
	if err := w.Flush(); err != nil {
		return l, fmt.Errorf("writing %s: %w", l.Path, err)
	}
	if err := f.Close(); err != nil {
		return l, fmt.Errorf("writing %s: %w", l.Path, err)
	}
	st, err := os.Stat(l.Path)
	if err != nil {
		return l, err
	}
	l.FileBytes = st.Size()
	l.WriteTime = time.Since(t0)
	return l, nil
}

// SidecarThroughputConfig is one json-file -> sidecar -> sink run.
type SidecarThroughputConfig struct {
	Binary string      // sidecar binary, from BuildSidecar
	Log    JSONFileLog // the pre-written log; the run only reads it
	// Announce makes the fake Engine report the container through a start
	// event once the sidecar is ready, instead of listing it from the
	// start as a container that ran before the sidecar.
	Announce bool
	// Timeout bounds the whole run (default 15 minutes).
	Timeout time.Duration
	// DeliveryTimeout bounds the wait for the sink to have every line
	// (default 5 minutes).
	DeliveryTimeout time.Duration
	// CPUProfile, when set, is a file to write a CPU profile of the
	// sidecar into, fetched from its /debug/pprof/profile for ProfileFor
	// from before it reads anything. The profiler costs the sidecar a
	// little: do not take the figures of a profiled run.
	CPUProfile string
	ProfileFor time.Duration
	// KeepDir keeps the run's directory (socket, state, sidecar.log).
	KeepDir bool
	// SidecarEnv is added to the sidecar's environment (e.g. GOMAXPROCS=1).
	SidecarEnv []string
	// SidecarArgs are more flags for the sidecar.
	SidecarArgs []string
}

// SidecarThroughputResult is what a run measured. CPU and peak RSS are the
// sidecar process's whole life, from its start (its start-up included)
// until the sink had every line.
type SidecarThroughputResult struct {
	Lines     int64
	FileBytes int64
	LineBytes int64
	Received  int64 // entries the sink counted
	Pushes    int64
	Streams   int           // distinct Loki streams at the sink
	Wall      time.Duration // sidecar start to the last line at the sink
	User      time.Duration
	System    time.Duration
	// BenchCPU is the benchmark process's own CPU over the same time,
	// mostly the sink's decoding: on a busy machine it competes with
	// the sidecar for the cores and sets the wall time as much as the
	// sidecar does.
	BenchCPU   time.Duration
	PeakRSS    int64 // VmHWM
	RSS        int64 // VmRSS at the end
	Threads    int
	Waits      float64  // logferry_sidecar_backpressure_waits_total: the Loki queue was full
	GCCount    float64  // go_gc_duration_seconds_count
	AllocBytes float64  // go_memstats_alloc_bytes_total
	Problems   []string // the sidecar's WARN and ERROR records (the first few)
	ProblemsN  int      // how many there were
	ExitErr    error    // the sidecar's exit after SIGTERM
	Dir        string   // the run's directory if KeepDir
	CPUProfile string
	Unexpected []string // requests the fake Engine could not answer
	ProfileErr error
	SinkBytes  int64 // line bytes the sink counted
	// SavedOffset is the container's position in the sidecar's positions
	// file after it stopped: the file's size once Loki acknowledged every
	// line.
	SavedOffset int64
	SavedErr    error
}

// CPU is the sidecar's user + system time.
func (r SidecarThroughputResult) CPU() time.Duration { return r.User + r.System }

// MiBPerCPUSecond is MiB of json-file input per second of the sidecar's
// CPU: the figure the goal is set in.
func (r SidecarThroughputResult) MiBPerCPUSecond() float64 {
	return MiB(r.FileBytes) / r.CPU().Seconds()
}

// LinesPerSecond is lines delivered per second of wall time.
func (r SidecarThroughputResult) LinesPerSecond() float64 {
	return float64(r.Received) / r.Wall.Seconds()
}

// WallMiBPerSecond is MiB of json-file per second of wall time.
func (r SidecarThroughputResult) WallMiBPerSecond() float64 {
	return MiB(r.FileBytes) / r.Wall.Seconds()
}

// CPUPerLine is the sidecar's CPU per line.
func (r SidecarThroughputResult) CPUPerLine() time.Duration {
	if r.Lines == 0 {
		return 0
	}
	return r.CPU() / time.Duration(r.Lines)
}

// RunSidecarThroughput starts a sink, a fake Engine that reports one
// running json-file container whose log is cfg.Log, and the sidecar with a
// fresh state directory (so no saved position), and waits until the sink
// has every line of the log. The run fails unless the sink got exactly
// every line and line byte and, once the sidecar stopped, its saved
// position is the end of the log.
func RunSidecarThroughput(ctx context.Context, cfg SidecarThroughputConfig) (res SidecarThroughputResult, err error) {
	if cfg.Log.Lines <= 0 {
		return res, errors.New("sidecar throughput: the json-file log has no lines")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Minute
	}
	if cfg.DeliveryTimeout <= 0 {
		cfg.DeliveryTimeout = 5 * time.Minute
	}
	if cfg.CPUProfile != "" && cfg.ProfileFor <= 0 {
		cfg.ProfileFor = 30 * time.Second
	}
	interrupted := ctx.Done()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	res.Lines, res.FileBytes, res.LineBytes = cfg.Log.Lines, cfg.Log.FileBytes, cfg.Log.LineBytes

	keep := cfg.KeepDir // a failure below keeps the directory too
	dir, sink, done, err := runDirAndSink("lf-sc-", &keep, &res.Dir)
	if err != nil {
		return res, err
	}
	defer done()
	eng, err := NewFakeEngine(filepath.Join(dir, "docker.sock"), "sidecarbench", cfg.CPUProfile != "")
	if err != nil {
		return res, err
	}
	defer eng.Close() // after the sidecar stopped (defers run last first)
	if !cfg.Announce {
		eng.Add(cfg.Log.Container, false)
	}
	bu0, bs0, err := ProcCPU(os.Getpid())
	if err != nil {
		return res, err
	}
	sc, err := StartSidecar(ctx, SidecarConfig{
		Binary: cfg.Binary, Dir: dir, DockerHost: eng.DockerHost(), ContainersDir: cfg.Log.ContainersDir,
		LokiURL: sink.URL(), Args: cfg.SidecarArgs, Env: cfg.SidecarEnv,
	})
	if err != nil {
		return res, err
	}
	defer sc.Stop()

	var profile sync.WaitGroup
	if cfg.CPUProfile != "" {
		res.CPUProfile = cfg.CPUProfile
		profile.Add(1)
		go func() {
			defer profile.Done()
			res.ProfileErr = sc.CPUProfile(ctx, cfg.ProfileFor, cfg.CPUProfile)
		}()
		defer profile.Wait()
		// The profile starts when the request reaches the handler; the
		// Engine holds the sidecar's events subscription, and with it
		// every read, until then.
		if err := wait(ctx, 200*time.Millisecond); err != nil {
			return res, err
		}
		eng.Release()
	}
	if cfg.Announce {
		if err := sc.WaitReady(ctx); err != nil {
			return res, err
		}
		eng.Add(cfg.Log.Container, true)
	}

	wctx, wcancel := context.WithTimeout(ctx, cfg.DeliveryTimeout)
	defer wcancel()
	exited := sc.HasExited
	err = sink.WaitEntries(wctx, res.Lines, exited)
	res.Wall = time.Since(sc.Started())
	res.Received, res.Pushes, res.Streams, res.SinkBytes = sink.Entries(), sink.Requests(), sink.Streams(), sink.Bytes()
	if err == nil && exited() {
		err = errors.New("the sidecar exited")
	}
	if err != nil {
		select {
		case <-interrupted: // Ctrl-C: no diagnosis, no kept directory
			return res, fmt.Errorf("interrupted: %w", err)
		default:
		}
		diag := sc.Diagnose(context.Background())
		keep = true // the goroutine dump is in sidecar.log
		sc.Quit()
		return res, fmt.Errorf("waiting for delivery: %w (%d pushes, %d rejected); the sidecar: %s; the Engine's unanswered requests: %q; the sidecar's log (its goroutines are dumped at the end): %s",
			err, res.Pushes, sink.Rejected(), diag, eng.Unexpected(), filepath.Join(dir, "sidecar.log"))
	}
	user, sys, err := ProcCPU(sc.PID())
	if err != nil {
		return res, err
	}
	res.User, res.System = user, sys
	if bu1, bs1, err := ProcCPU(os.Getpid()); err == nil {
		res.BenchCPU = bu1 + bs1 - bu0 - bs0
	}
	mem, err := ReadProcMem(sc.PID())
	if err != nil {
		return res, err
	}
	res.PeakRSS, res.RSS, res.Threads = mem.PeakRSS, mem.RSS, mem.Threads
	m, err := sc.Metrics(ctx)
	if err != nil {
		return res, err
	}
	res.Waits = m["logferry_sidecar_backpressure_waits_total"]
	res.GCCount = m["go_gc_duration_seconds_count"]
	res.AllocBytes = m["go_memstats_alloc_bytes_total"]

	profile.Wait()
	res.ExitErr = sc.Stop()
	res.Problems, res.ProblemsN = sc.LogProblems(5)
	res.Unexpected = eng.Unexpected()
	res.SavedOffset, res.SavedErr = savedOffset(filepath.Join(dir, "state"), cfg.Log.Container.ID)
	// What arrived after the count was reached (a duplicate would show).
	res.Received, res.SinkBytes = sink.Entries(), sink.Bytes()

	var errs []error
	if res.Received != res.Lines {
		errs = append(errs, fmt.Errorf("the sink has %d entries, the log %d lines", res.Received, res.Lines))
	}
	if res.SinkBytes != res.LineBytes {
		errs = append(errs, fmt.Errorf("the sink has %d line bytes, the log %d", res.SinkBytes, res.LineBytes))
	}
	if n := sink.Rejected(); n > 0 {
		errs = append(errs, fmt.Errorf("the sink could not decode %d pushes", n))
	}
	if res.SavedErr != nil {
		errs = append(errs, res.SavedErr)
	} else if res.SavedOffset != res.FileBytes {
		errs = append(errs, fmt.Errorf("the sidecar saved offset %d of the log's %d bytes after Loki had every line", res.SavedOffset, res.FileBytes))
	}
	if len(res.Unexpected) > 0 {
		errs = append(errs, fmt.Errorf("%w: %q", errEngineUnexpected, res.Unexpected))
	}
	if res.ProfileErr != nil {
		errs = append(errs, res.ProfileErr)
	}
	if err := errors.Join(errs...); err != nil {
		keep = true
		return res, fmt.Errorf("%w (the run's directory: %s)", err, dir)
	}
	return res, nil
}

// savedOffset reads the offset the sidecar saved for container id from the
// positions file in stateDir (read only: positions.Open would tidy the
// directory).
func savedOffset(stateDir, id string) (int64, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, positions.FileName))
	if err != nil {
		return 0, fmt.Errorf("the sidecar's positions: %w", err)
	}
	m, err := positions.Parse(b)
	if err != nil {
		return 0, fmt.Errorf("the sidecar's positions: %w", err)
	}
	p, ok := m[id]
	if !ok {
		return 0, errors.New("the sidecar's positions file has no position for the container")
	}
	return p.Offset, nil
}

// wait returns after d, or with ctx's error.
func wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
