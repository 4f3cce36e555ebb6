package bench

import (
	"context"
	"errors"
	"fmt"
	"time"
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
	dir, done, err := runDir("lf-pt-", &keep, &res.Dir)
	if err != nil {
		return res, err
	}
	defer done()
	sink, err := NewSink()
	if err != nil {
		return res, err
	}
	defer sink.Close()
	p, err := startPromtail(bin, dir, sink.URL(), log.Path, nil, nil)
	if err != nil {
		return res, err
	}
	defer p.Stop()
	exited := func() bool {
		select {
		case <-p.Exited():
			return true
		default:
			return false
		}
	}
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
	if n := sink.Rejected(); n > 0 {
		errs = append(errs, fmt.Errorf("the sink could not decode %d pushes", n))
	}
	if err := errors.Join(errs...); err != nil {
		keep = true
		return res, fmt.Errorf("%w (the run's directory: %s)", err, dir)
	}
	return res, nil
}
