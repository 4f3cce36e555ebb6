//go:build unix

package tail

import (
	"syscall"
	"testing"
)

func mkfifo(t *testing.T, path string) {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o640); err != nil {
		t.Fatal(err)
	}
}
