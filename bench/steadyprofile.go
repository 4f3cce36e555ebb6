package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// profilePhase profiles the shipper while the containers keep writing: a
// CPU profile with allocation profiles on either side, then strace -c.
// The figures of each part go into res.Profiled and res.Straced.
func profilePhase(ctx context.Context, cfg SteadyConfig, t steadyTarget, sink *Sink, counts []steadyCounts, res *SteadyResult) error {
	if err := os.MkdirAll(cfg.ProfileDir, 0o755); err != nil {
		return err
	}
	snap := func() (steadySnap, error) { return takeSnap(ctx, t, sink, counts) }
	file := func(name string) string {
		f := filepath.Join(cfg.ProfileDir, name)
		res.Profiles = append(res.Profiles, f)
		return f
	}
	secs := max(1, int(cfg.ProfileFor/time.Second))
	s0, err := snap()
	if err != nil {
		return err
	}
	if err := fetchProfile(ctx, t.listen(), "/debug/pprof/allocs", file("allocs-0.pprof"), time.Minute); err != nil {
		return err
	}
	if err := fetchProfile(ctx, t.listen(), "/debug/pprof/profile?seconds="+strconv.Itoa(secs), file("cpu.pprof"), time.Duration(secs)*time.Second+time.Minute); err != nil {
		return err
	}
	if err := fetchProfile(ctx, t.listen(), "/debug/pprof/allocs", file("allocs-1.pprof"), time.Minute); err != nil {
		return err
	}
	s1, err := snap()
	if err != nil {
		return err
	}
	res.Profiled = s1.sub(s0)
	if cfg.StraceFor <= 0 {
		return nil
	}
	// The figures cover strace's whole attachment, so that its counts
	// divide by the lines written meanwhile.
	s2, err := snap()
	if err != nil {
		return err
	}
	st, err := startStrace(t.proc().PID(), file("strace.txt"))
	if err != nil {
		res.StraceErr = err
		return nil
	}
	werr := wait(ctx, cfg.StraceFor)
	res.StraceErr = stopStrace(st)
	if werr != nil {
		return werr
	}
	s3, err := snap()
	if err != nil {
		return err
	}
	res.Straced = s3.sub(s2)
	return nil
}

// fetchProfile GETs a /debug/pprof path from addr into file.
func fetchProfile(ctx context.Context, addr, path, file string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("pprof %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("pprof %s: %s: %s", path, resp.Status, b)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("pprof %s: %w", path, err)
	}
	return f.Close()
}

// startStrace counts the system calls of every thread of pid into out
// (strace -c -f) until stopStrace.
func startStrace(pid int, out string) (*exec.Cmd, error) {
	path, err := exec.LookPath("strace")
	if err != nil {
		return nil, fmt.Errorf("strace is not installed: %w", err)
	}
	cmd := exec.Command(path, "-c", "-f", "-p", strconv.Itoa(pid), "-o", out)
	cmd.Stderr = io.Discard // "Process N attached" lines
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd, nil
}

// stopStrace detaches strace (SIGINT, as Ctrl-C does), which then writes
// its summary, and waits for it. strace ends by the signal it was sent.
func stopStrace(cmd *exec.Cmd) error {
	_ = cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGINT {
		return nil
	}
	return err
}
