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

// fifoTick is the grid a steady stream is read on. A container writing a
// line every few milliseconds would otherwise cost a wake-up of the
// plugin per line (the daemon writes each frame on its own): a reader that
// got less than fifoBusy bytes sleeps until the next multiple of fifoTick
// (of the wall clock, so every such reader of the process wakes at the
// same instant, one wake-up of the runtime for all of them) and reads what
// came meanwhile. It adds at most this much latency (the budget for p99
// write -> queryable is the batch wait + 250 ms); a pipe of fifoPipeSize
// holds 10 MiB/s for that long, and a stream that fast gets fifoBusy bytes
// per read and the short fifoPause instead. Measured at 25 containers x
// 200 lines/s (bench/cmd/steadybench): 11-14 % of a core before, 2.0-2.4 %
// with a 50 ms grid, 1.7-1.8 % with 100 ms (BENCHMARKS.md).
const fifoTick = 100 * time.Millisecond

// fifoBusy is the read size from which a stream counts as busy: it is read
// again after fifoPause, not on the grid.
const fifoBusy = 32 << 10

// fifoBusyRate is the rate, in bytes per second since the reader last chose
// to wait, from which the end of a burst is followed by the short pause
// rather than the grid: a quarter of the rate that fills a pipe of
// fifoPipeSize within one fifoTick. A steady stream's 40 KiB line read at
// its tick is far below it; a container writing flat out far above.
const fifoBusyRate = float64(fifoPipeSize) / 4 / (float64(fifoTick) / float64(time.Second))

// fifoIdleTicks is how many grid ticks in a row may find the pipe empty
// before the reader waits in the netpoller instead (a stream that fell
// quiet). Polling an empty pipe on the grid costs one read(2) at a wake-up
// the process has anyway; arming the netpoller costs four system calls.
const fifoIdleTicks = 20

// pauseFor is the pause for a pipe of size bytes (see fifoPause).
func pauseFor(size int) time.Duration {
	d := time.Duration(int64(fifoPause) * int64(size) / fifoPipeSize)
	return min(fifoPause, max(time.Millisecond, d))
}

// untilTick is the time from now to the next multiple of fifoTick.
func untilTick(now time.Time) time.Duration {
	return fifoTick - time.Duration(now.UnixNano()%int64(fifoTick))
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
	name    string
	closed  chan struct{}
	next    time.Duration // wait before the next read: 0, wait (busy) or to the next tick (steady)
	wait    time.Duration // the busy pause (pauseFor the pipe's size)
	empty   int           // grid ticks in a row that found the pipe empty
	since   time.Time     // when the reader last chose to wait
	drained int           // bytes read since then
	timer   *time.Timer

	mu       sync.Mutex
	fd       int      // -1 after Close
	waiting  *os.File // the netpoller's duplicate while Read waits on it
	draining bool     // Drain was called: no waiting, empty is the end
	hurry    bool     // Hurry or Drain was called: no sleeping on the grid
	hurryCh  chan struct{}
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
	return &fifoReader{name: path, fd: fd, closed: make(chan struct{}), hurryCh: make(chan struct{}), wait: pauseFor(size), since: time.Now()}, nil
}

// Read returns what the pipe holds, up to len(p); io.EOF once no writer has
// the FIFO open and it is empty.
func (r *fifoReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if r.next > 0 {
		if err := r.sleep(r.next); err != nil {
			return 0, err
		}
		r.next = 0
	}
	for {
		r.mu.Lock()
		if r.fd < 0 {
			r.mu.Unlock()
			return 0, os.ErrClosed
		}
		n, err := unix.Read(r.fd, p)
		draining, hurry := r.draining, r.hurry
		r.mu.Unlock()
		if err == unix.EAGAIN && draining {
			return 0, io.EOF // shutting down: what the pipe held is read
		}
		if err == unix.EAGAIN {
			if r.empty > 0 && r.empty < fifoIdleTicks && !hurry {
				// A steady stream between two writes: look again at the
				// next tick.
				r.empty++
				if err := r.sleep(untilTick(time.Now())); err != nil {
					return 0, err
				}
				continue
			}
			n, err = r.waitRead(p)
			if errDrained(err) {
				return 0, io.EOF
			}
		}
		switch {
		case n > 0:
			r.drained += n
			switch {
			case n == len(p): // more may be waiting: read on
				r.next, r.empty = 0, 0
			case n >= fifoBusy:
				r.next, r.empty = r.wait, 0
				r.since, r.drained = time.Now(), 0
			case hurry: // stopping: read on as the pipe fills
				r.next, r.empty = 0, 0
			default:
				now := time.Now()
				if float64(r.drained) >= fifoBusyRate*now.Sub(r.since).Seconds() {
					// The pipe filled fast since the last wait (the end
					// of a burst read into the rest of a buffer): a
					// short pause, not the grid, or a container writing
					// flat out fills the pipe within the tick and waits
					// for the rest of it (measured: 0.33-0.49 of
					// json-file's throughput). An empty pipe after the
					// pause sends the reader to the grid.
					r.next, r.empty = r.wait, 1
				} else { // a steady stream: the next read on the grid
					r.next, r.empty = untilTick(now), 1
				}
				r.since, r.drained = now, 0
			}
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

// sleep waits d, or returns os.ErrClosed once the reader is closed.
func (r *fifoReader) sleep(d time.Duration) error {
	if r.timer == nil {
		r.timer = time.NewTimer(d)
	} else {
		r.timer.Reset(d)
	}
	select {
	case <-r.timer.C:
		return nil
	case <-r.hurryCh:
		r.timer.Stop()
		return nil
	case <-r.closed:
		r.timer.Stop()
		return os.ErrClosed
	}
}

// errDrainWait ends a wait in the netpoller that Drain cut short.
var errDrainWait = errors.New("draining")

func errDrained(err error) bool {
	return errors.Is(err, errDrainWait) || errors.Is(err, os.ErrDeadlineExceeded)
}

// Drain is for the plugin's shutdown: from now on Read returns what the
// pipe holds without waiting, then io.EOF, so that lines the daemon wrote
// are read before the process ends. A FIFO that no process holds open
// loses its contents: left in the pipe, they would be gone if the
// container stopped before the next plugin process opened it (found by
// the soak: a container that exited during docker plugin disable/enable
// lost its last lines).
func (r *fifoReader) Drain() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fd < 0 || r.draining {
		return
	}
	r.draining = true
	r.hurryLocked()
	if r.waiting != nil {
		_ = r.waiting.SetReadDeadline(time.Unix(1, 0))
	}
}

// Hurry is for StopLogging: the daemon has written everything and closes
// its end next, and a docker logs right after docker stop must find every
// line in the local copy, so the reader stops sleeping on the grid and
// reads to the EOF as the data comes.
func (r *fifoReader) Hurry() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hurryLocked()
}

func (r *fifoReader) hurryLocked() {
	if !r.hurry {
		r.hurry = true
		close(r.hurryCh)
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
	if r.draining {
		r.mu.Unlock()
		f.Close()
		return 0, errDrainWait
	}
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
