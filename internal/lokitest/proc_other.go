//go:build !linux

package lokitest

import "os/exec"

// setProcAttr does nothing: only Linux can tie Loki's life to the test's.
func setProcAttr(*exec.Cmd) {}
