package lokitest

import (
	"os/exec"
	"syscall"
)

// setProcAttr makes the kernel kill Loki if the test binary dies without
// running its cleanups (a panic, a -timeout, a SIGKILL), so no Loki outlives
// its test.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
