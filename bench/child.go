package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// buildBinary builds ./cmd/<name> into dir as `make plugin` and `make
// sidecar` do (CGO_ENABLED=0, -trimpath), keeping its symbols for pprof and
// perf, and returns the binary's path. $GO names the go command.
func buildBinary(ctx context.Context, dir, name string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, name)
	goCmd := os.Getenv("GO")
	if goCmd == "" {
		goCmd = "go"
	}
	cmd := exec.CommandContext(ctx, goCmd, "build", "-trimpath", "-o", out, "./cmd/"+name)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/%s: %w\n%s", name, err, b)
	}
	return out, nil
}

// child is a process under test, its output in a log file; Plugin and
// Sidecar embed it.
type child struct {
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	waitErr error
}

// start runs cmd with its output in c.logPath, which it creates.
func (c *child) start(cmd *exec.Cmd) error {
	logFile, err := os.Create(c.logPath)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own descriptor
	c.cmd, c.exited = cmd, make(chan struct{})
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", cmd.Path, err)
	}
	go func() {
		c.waitErr = cmd.Wait()
		close(c.exited)
	}()
	return nil
}

// PID returns the process's id.
func (c *child) PID() int { return c.cmd.Process.Pid }

// LogTail returns the last n lines of the process's own log.
func (c *child) LogTail(n int) string {
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Stop sends SIGTERM and waits for the process to exit (the plugin and the
// sidecar flush for up to 8 s); after 15 s it sends SIGKILL. It returns the
// process's exit error.
func (c *child) Stop() error {
	select {
	case <-c.exited:
		return c.waitErr
	default:
	}
	c.signalAndWait(syscall.SIGTERM, 15*time.Second)
	return c.waitErr
}

// Quit sends SIGQUIT, on which the Go runtime writes every goroutine's
// stack to the log and exits, and waits for the exit.
func (c *child) Quit() { c.signalAndWait(syscall.SIGQUIT, 10*time.Second) }

func (c *child) signalAndWait(sig syscall.Signal, grace time.Duration) {
	_ = c.cmd.Process.Signal(sig)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.exited:
	case <-t.C:
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
}

// Exited is closed when the process has ended.
func (c *child) Exited() <-chan struct{} { return c.exited }

// HasExited reports whether the process has exited.
func (c *child) HasExited() bool {
	select {
	case <-c.exited:
		return true
	default:
		return false
	}
}
