package plugin

import (
	"errors"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// fifoPipeSize is what the read end asks the kernel to grow the pipe to
// (F_SETPIPE_SZ; the default is 64 KiB). The daemon writes into it while
// the reader pauses (fifoPause), so a busy container does not wait on the
// plugin's scheduling. Pages are allocated as data is written: an idle pipe
// costs no more. Best effort: a kernel limit leaves the default.
const fifoPipeSize = 1 << 20

// fifoPause is how long a reader that emptied a pipe of fifoPipeSize waits
// before it reads again (a smaller pipe, when the kernel would not grow it,
// gets a pause in proportion, at least 1 ms, so the daemon does not fill it
// meanwhile). dockerd writes one frame per write(2); reading each as it
// lands costs the Go runtime a wake-up per line. Pausing lets a busy pipe
// fill (about 100 KiB at the 25 MiB/s dockerd writes here, well within
// fifoPipeSize), for at most this much latency. Measured behind a real
// dockerd (scripts/bench-plugin container): plugin CPU per 500,000 lines
// 1.3-1.7 s with 1 ms, 0.9-1.2 s with 4 ms; 16 ms (0.9-1.3 s) did not
// change the container's throughput measurably (BENCHMARKS.md) and lets
// the daemon block sooner (once a stream writes more than the pipe holds
// within one pause: 64 MiB/s at 16 ms, 256 MiB/s at 4 ms), so 4 ms stays.
const fifoPause = 4 * time.Millisecond

// pauseFor is the pause for a pipe of size bytes (see fifoPause).
func pauseFor(size int) time.Duration {
	d := time.Duration(int64(fifoPause) * int64(size) / fifoPipeSize)
	return min(fifoPause, max(time.Millisecond, d))
}

// fifoReader reads a FIFO without leaving it registered with Go's netpoller
// while data flows. With the netpoller's edge-triggered registration every
// write of the daemon wakes the runtime, whether or not the reader waits
// (measured: three quarters of the plugin's CPU behind a real dockerd). The
// reader instead reads a non-blocking descriptor, pauses after emptying the
// pipe, and only when a read after a pause finds nothing does it wait in
// the netpoller, on a duplicate of the descriptor that it closes (removing
// the registration) as soon as the pipe is readable.
//
// Close may be called from another goroutine: a Read in progress returns
// os.ErrClosed.
type fifoReader struct {
	name   string
	closed chan struct{}
	pause  bool          // the last read emptied the pipe: wait before the next
	wait   time.Duration // how long (pauseFor the pipe's size)

	mu      sync.Mutex
	fd      int      // -1 after Close
	waiting *os.File // the netpoller's duplicate while Read waits on it
}

func openFIFOReader(path string) (*fifoReader, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFIFO {
		unix.Close(fd)
		return nil, &os.PathError{Op: "open", Path: path, Err: errors.New("not a FIFO")}
	}
	size, err := unix.FcntlInt(uintptr(fd), unix.F_SETPIPE_SZ, fifoPipeSize)
	if err != nil {
		if size, err = unix.FcntlInt(uintptr(fd), unix.F_GETPIPE_SZ, 0); err != nil {
			size = 64 << 10 // Linux's default since 2.6.11
		}
	}
	return &fifoReader{name: path, fd: fd, closed: make(chan struct{}), wait: pauseFor(size)}, nil
}

// Read returns what the pipe holds, up to len(p); io.EOF once no writer has
// the FIFO open and it is empty.
func (r *fifoReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if r.pause {
		r.pause = false
		t := time.NewTimer(r.wait)
		select {
		case <-t.C:
		case <-r.closed:
			t.Stop()
			return 0, os.ErrClosed
		}
	}
	for {
		r.mu.Lock()
		if r.fd < 0 {
			r.mu.Unlock()
			return 0, os.ErrClosed
		}
		n, err := unix.Read(r.fd, p)
		r.mu.Unlock()
		if err == unix.EAGAIN {
			n, err = r.waitRead(p)
		}
		switch {
		case n > 0:
			r.pause = n < len(p)
			return n, nil
		case err == nil:
			return 0, io.EOF
		case err == unix.EINTR:
			continue
		case errors.Is(err, os.ErrClosed):
			return 0, os.ErrClosed
		default:
			return 0, &os.PathError{Op: "read", Path: r.name, Err: err}
		}
	}
}

// waitRead reads p once the pipe is readable (data, or its last writer
// gone), waiting in the netpoller on a duplicate descriptor registered for
// this wait only. The read is tried after the registration, so data that
// landed before it is not missed: what lands later is a new edge.
func (r *fifoReader) waitRead(p []byte) (n int, err error) {
	r.mu.Lock()
	if r.fd < 0 {
		r.mu.Unlock()
		return 0, os.ErrClosed
	}
	dup, err := unix.FcntlInt(uintptr(r.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		r.mu.Unlock()
		return 0, err
	}
	// Non-blocking (the flag belongs to the shared open file), so NewFile
	// registers it with the netpoller.
	f := os.NewFile(uintptr(dup), r.name)
	r.waiting = f
	r.mu.Unlock()

	var rerr error
	rc, err := f.SyscallConn()
	if err == nil {
		err = rc.Read(func(fd uintptr) bool {
			n, rerr = unix.Read(int(fd), p)
			return rerr != unix.EAGAIN
		})
	}
	r.mu.Lock()
	r.waiting = nil
	r.mu.Unlock()
	f.Close()
	select {
	case <-r.closed:
		return 0, os.ErrClosed
	default:
	}
	if err != nil {
		return 0, err
	}
	return max(n, 0), rerr
}

// Close closes the FIFO; a Read waiting in another goroutine returns
// os.ErrClosed.
func (r *fifoReader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fd < 0 {
		return os.ErrClosed
	}
	close(r.closed)
	if r.waiting != nil {
		r.waiting.Close()
	}
	err := unix.Close(r.fd)
	r.fd = -1
	return err
}

// fdCloser is a descriptor no one reads or writes (the keeper): kept out of
// the netpoller, which would otherwise report the pipe's changes for it.
type fdCloser struct {
	mu sync.Mutex
	fd int
}

func openFIFOKeeper(path string) (io.Closer, error) {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return &fdCloser{fd: fd}, nil
}

func (c *fdCloser) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return os.ErrClosed
	}
	err := unix.Close(c.fd)
	c.fd = -1
	return err
}
