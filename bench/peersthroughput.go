package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/logferry/logferry/internal/loggen"
)

// RunPromtailThroughput is RunSidecarThroughput for Promtail: the same
// json-file log read from its start (no saved position), the docker stage,
// the same sink, CPU and peak RSS over the process's life until the sink
// has every line. Promtail ships json-file's "log" value with the newline
// the daemon stored, so the sink's line bytes are the log's plus one per
// line.
func RunPromtailThroughput(ctx context.Context, bin string, log JSONFileLog) (res SidecarThroughputResult, err error) {
	if log.Lines <= 0 {
		return res, errors.New("promtail throughput: the json-file log has no lines")
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	res.Lines, res.FileBytes, res.LineBytes = log.Lines, log.FileBytes, log.LineBytes
	keep := false
	dir, sink, done, err := runDirAndSink("lf-pt-", &keep, &res.Dir)
	if err != nil {
		return res, err
	}
	defer done()
	p, err := startPromtail(bin, dir, sink.URL(), log.Path, nil, nil)
	if err != nil {
		return res, err
	}
	defer p.Stop()
	exited := p.HasExited
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Minute)
	defer wcancel()
	err = sink.WaitEntries(wctx, res.Lines, exited)
	res.Wall = time.Since(p.started)
	if err == nil && exited() {
		err = errors.New("promtail exited")
	}
	if err != nil {
		keep = true
		return res, fmt.Errorf("waiting for delivery: %w; promtail's log: %s", err, p.logPath)
	}
	if res.User, res.System, err = ProcCPU(p.PID()); err != nil {
		return res, err
	}
	mem, err := ReadProcMem(p.PID())
	if err != nil {
		return res, err
	}
	res.PeakRSS, res.RSS, res.Threads = mem.PeakRSS, mem.RSS, mem.Threads
	if m, err := p.Metrics(ctx); err == nil {
		res.GCCount, res.AllocBytes = m["go_gc_duration_seconds_count"], m["go_memstats_alloc_bytes_total"]
	}
	res.ExitErr = p.Stop()
	res.Received, res.Pushes, res.Streams, res.SinkBytes = sink.Entries(), sink.Requests(), sink.Streams(), sink.Bytes()
	var errs []error
	if res.Received != res.Lines {
		errs = append(errs, fmt.Errorf("the sink has %d entries, the log %d lines", res.Received, res.Lines))
	}
	if want := res.LineBytes + res.Lines; res.SinkBytes != want {
		errs = append(errs, fmt.Errorf("the sink has %d line bytes, want the log's %d and a newline each", res.SinkBytes, res.LineBytes))
	}
	if err := sinkErrors(sink, errs); err != nil {
		keep = true
		return res, fmt.Errorf("%w (the run's directory: %s)", err, dir)
	}
	return res, nil
}

// RunDriverThroughput is RunThroughput for Grafana's Loki Docker driver:
// the same frames written into one container's FIFO in 1 MiB writes, the
// same sink, the driver's CPU from just before StartLogging until the sink
// has every entry (its start-up not counted, as the plugin's is not). The
// FIFO is closed once written, and the driver reads it to its end before
// the run stops the stream: the driver does not say how far it got, so the
// sink's count is the only end the run can wait for. It needs root and
// unshare, as startSteadyDriver does.
func RunDriverThroughput(ctx context.Context, bin string, frames Frames, logOpts map[string]string) (res ThroughputResult, err error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	res.Frames, res.FrameBytes, res.LineBytes, res.LogOpts = frames.Count, int64(len(frames.Buf)), frames.LineBytes, logOpts
	keep := false
	dir, sink, done, err := runDirAndSink("lf-drv-", &keep, &res.Dir)
	if err != nil {
		return res, err
	}
	defer done()
	t, writers, err := startSteadyDriver(ctx, SteadyConfig{Binary: bin, LogOpts: logOpts}, dir, sink.URL(), nil)
	if err != nil {
		return res, err
	}
	defer t.close()
	p := t.(*steadyPlugin).p
	u0, s0, err := ProcCPU(p.PID())
	if err != nil {
		return res, err
	}
	res.StartupCPU = u0 + s0
	if writers, err = t.(*steadyPlugin).open(ctx, dir, []string{"bench"}, driverOpts(sink.URL(), logOpts)); err != nil {
		return res, err
	}
	w := writers[0].(*fifoWriter).f
	start := time.Now()
	for off := 0; off < len(frames.Buf); off += 1 << 20 {
		if _, err := w.Write(frames.Buf[off:min(off+1<<20, len(frames.Buf))]); err != nil {
			return res, fmt.Errorf("writing the FIFO: %w; the driver's log:\n%s", err, p.LogTail(20))
		}
	}
	res.WriteTime = time.Since(start)
	if err := w.Close(); err != nil {
		return res, err
	}
	exited := p.HasExited
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Minute)
	defer wcancel()
	err = sink.WaitEntries(wctx, frames.Count, exited)
	res.Wall = time.Since(start)
	if err != nil {
		keep = true
		return res, fmt.Errorf("waiting for delivery: %w (sink: %d of %d entries); the driver's log: %s", err, sink.Entries(), frames.Count, p.logPath)
	}
	u1, s1, err := ProcCPU(p.PID())
	if err != nil {
		return res, err
	}
	res.User, res.System = u1-u0, s1-s0
	mem, err := ReadProcMem(p.PID())
	if err != nil {
		return res, err
	}
	res.PeakRSS, res.RSS, res.Threads = mem.PeakRSS, mem.RSS, mem.Threads
	res.Received, res.Pushes = sink.Entries(), sink.Requests()
	var errs []error
	if res.Received != frames.Count {
		errs = append(errs, fmt.Errorf("the sink has %d entries, %d were written", res.Received, frames.Count))
	}
	if got := sink.Bytes(); got != frames.LineBytes {
		errs = append(errs, fmt.Errorf("the sink received %d line bytes, %d were written", got, frames.LineBytes))
	}
	if err := sinkErrors(sink, errs); err != nil {
		keep = true
		return res, fmt.Errorf("%w (the run's directory: %s)", err, dir)
	}
	return res, nil
}

// RunDriverIdle is RunIdle for Grafana's driver: streams containers on it
// that each wrote lines lines and then nothing. The driver serves no
// metrics, so its snapshots have RSS, threads and descriptors, and
// goroutines -1; the streams are not stopped at the end (the driver is).
func RunDriverIdle(ctx context.Context, bin string, streams, lines, lineSize int, settle time.Duration) (res IdleResult, err error) {
	if streams < 2 {
		return res, errors.New("driver idle: at least 2 streams")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	res.Streams, res.Lines, res.Settle = streams, lines, settle
	keep := false
	dir, sink, done, err := runDirAndSink("lf-drvidle-", &keep, &res.Dir)
	if err != nil {
		return res, err
	}
	defer done()
	t, _, err := startSteadyDriver(ctx, SteadyConfig{Binary: bin}, dir, sink.URL(), nil)
	if err != nil {
		return res, err
	}
	defer t.close()
	sp := t.(*steadyPlugin)
	snap := func() (Snapshot, error) {
		mem, err := ReadProcMem(sp.p.PID())
		if err != nil {
			return Snapshot{}, err
		}
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", sp.p.PID()))
		if err != nil {
			return Snapshot{}, err
		}
		return Snapshot{RSS: mem.RSS, PeakRSS: mem.PeakRSS, Threads: mem.Threads, FDs: len(fds), Goroutines: -1, HeapInuse: -1, Sys: -1, Streams: -1}, nil
	}
	if res.Base, err = snap(); err != nil {
		return res, err
	}
	opts := driverOpts(sink.URL(), nil)
	start := time.Now()
	for i := range streams {
		name := fmt.Sprintf("idle-%04d", i)
		ws, err := sp.open(ctx, dir, []string{name}, opts)
		if err != nil {
			return res, fmt.Errorf("stream %d: %w", i, err)
		}
		fr, err := EncodeFrames(loggen.Config{ID: name, Lines: uint64(lines), Size: lineSize}, time.Now())
		if err != nil {
			return res, err
		}
		if _, err := ws[0].(*fifoWriter).f.Write(fr.Buf); err != nil {
			return res, fmt.Errorf("stream %d: writing its lines: %w", i, err)
		}
		if i == 0 {
			if err := sink.WaitEntries(ctx, int64(lines), nil); err != nil {
				return res, fmt.Errorf("waiting for the first line: %w; the driver's log:\n%s", err, sp.p.LogTail(20))
			}
			if res.One, err = snap(); err != nil {
				return res, err
			}
			start = time.Now()
		}
	}
	res.StartAll = time.Since(start)
	if err := sink.WaitEntries(ctx, int64(streams*lines), nil); err != nil {
		return res, fmt.Errorf("waiting for the lines: %w; the driver's log:\n%s", err, sp.p.LogTail(20))
	}
	res.Received, res.Labels = sink.Entries(), sink.Streams()
	if res.Loaded, err = snap(); err != nil {
		return res, err
	}
	if err := wait(ctx, settle); err != nil {
		return res, err
	}
	res.Settled, err = snap()
	return res, err
}

// sinkErrors joins errs and, if the sink could not decode some pushes,
// that.
func sinkErrors(sink *Sink, errs []error) error {
	if n := sink.Rejected(); n > 0 {
		errs = append(errs, fmt.Errorf("the sink could not decode %d pushes", n))
	}
	return errors.Join(errs...)
}
