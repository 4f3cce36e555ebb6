//go:build unix

package tail

import (
	"io/fs"
	"syscall"
)

// fileID returns the device and inode of fi, which names a file across
// renames while it exists.
func fileID(fi fs.FileInfo) (dev, ino uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), uint64(st.Ino)
	}
	return 0, 0
}
