//go:build !unix

package tail

import "testing"

func mkfifo(t *testing.T, path string) { t.Skip("no FIFOs here") }
