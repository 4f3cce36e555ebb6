//go:build !linux

package tail

import (
	"errors"
	"fmt"
	"os"
)

// newCloseNotifier: only Linux has fanotify. Rotated files are then held
// only by pinning (pinSet.pinNewer).
func newCloseNotifier() (closeNotifier, error) {
	return nil, fmt.Errorf("fanotify: %w", errors.ErrUnsupported)
}

func reopenFile(f *os.File) (*os.File, error) {
	return nil, fmt.Errorf("reopening %s: %w", f.Name(), errors.ErrUnsupported)
}
