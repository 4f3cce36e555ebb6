//go:build !linux

package plugin

import (
	"errors"
	"io"
	"os"
	"syscall"
)

// Elsewhere than Linux (where dockerd's plugins run) the FIFO is read
// through an *os.File, in the netpoller.
func openFIFOReader(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil || st.Mode()&os.ModeNamedPipe == 0 {
		f.Close()
		if err == nil {
			err = &os.PathError{Op: "open", Path: path, Err: errors.New("not a FIFO")}
		}
		return nil, err
	}
	return f, nil
}

func openFIFOKeeper(path string) (io.Closer, error) {
	return os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0)
}
