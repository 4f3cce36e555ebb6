package sidecar

import (
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/logferry/logferry/sidecar/positions"
)

// oldestStart returns a position at the start of the oldest uncompressed
// file of a json-file log (<path>.N, the highest N that exists), so that a
// container started after the sidecar is shipped from its first line even
// when it rotated before its shipper began. ok is false when there is no
// rotated file (the live file's start is then the oldest line).
func oldestStart(path string) (positions.Position, bool) {
	oldest := ""
	for n := 1; n < 1000; n++ {
		p := fmt.Sprintf("%s.%d", path, n)
		if _, err := os.Stat(p); err != nil {
			break
		}
		oldest = p
	}
	if oldest == "" {
		return positions.Position{}, false
	}
	f, err := os.Open(oldest)
	if err != nil {
		return positions.Position{}, false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return positions.Position{}, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return positions.Position{}, false
	}
	prefix := make([]byte, positions.FingerprintSize)
	n, err := io.ReadFull(f, prefix)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return positions.Position{}, false
	}
	id := positions.Identity{Dev: uint64(st.Dev), Inode: st.Ino}
	id.SetFingerprint(prefix[:n])
	return positions.Position{File: id, Offset: 0}, true
}
