//go:build linux

package tail

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fanotify is the Linux closeNotifier: one fanotify group in notification
// mode, with FAN_CLOSE_WRITE marks on container directories. Each event
// carries a file descriptor that the kernel opened for it when the file was
// closed, so the file stays readable after a rotation deletes it, however
// long this process waits for a CPU before it reads the queue.
type fanotify struct {
	fd  int
	buf []byte
}

var _ closeNotifier = (*fanotify)(nil)

// newCloseNotifier needs CAP_SYS_ADMIN (EPERM otherwise). The kernel opens
// each event's file O_NONBLOCK: a FIFO closed in a marked directory would
// otherwise block the read of the queue until it had a writer (the keeper
// refuses it after fstat). Reads of regular files ignore the flag.
func newCloseNotifier() (closeNotifier, error) {
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK,
		unix.O_RDONLY|unix.O_LARGEFILE|unix.O_CLOEXEC|unix.O_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("fanotify_init: %w", err)
	}
	return &fanotify{fd: fd, buf: make([]byte, 32<<10)}, nil
}

const fanMask = unix.FAN_CLOSE_WRITE | unix.FAN_EVENT_ON_CHILD

// fanMarkFlags mark the container directory itself, never what a symlink
// there points to: a directory the log's files may not come from (see
// openLogFile). What is above it is followed.
const fanMarkFlags = unix.FAN_MARK_DONT_FOLLOW | unix.FAN_MARK_ONLYDIR

func (n *fanotify) mark(dir string) error {
	if err := unix.FanotifyMark(n.fd, unix.FAN_MARK_ADD|fanMarkFlags, fanMask, unix.AT_FDCWD, dir); err != nil {
		return fmt.Errorf("fanotify_mark %s: %w", dir, err)
	}
	return nil
}

func (n *fanotify) unmark(dir string) error {
	err := unix.FanotifyMark(n.fd, unix.FAN_MARK_REMOVE|fanMarkFlags, fanMask, unix.AT_FDCWD, dir)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		// ENOENT: the directory is gone, and its mark with it.
		return fmt.Errorf("fanotify_mark remove %s: %w", dir, err)
	}
	return nil
}

func (n *fanotify) read(closed func(f *os.File, path string)) (overflow bool, err error) {
	const metaLen = int(unsafe.Sizeof(unix.FanotifyEventMetadata{}))
	for {
		r, err := unix.Read(n.fd, n.buf)
		if errors.Is(err, unix.EAGAIN) {
			return overflow, nil
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return overflow, fmt.Errorf("reading fanotify events: %w", err)
		}
		if r <= 0 {
			return overflow, nil
		}
		for b := n.buf[:r]; len(b) >= metaLen; {
			ev := (*unix.FanotifyEventMetadata)(unsafe.Pointer(&b[0]))
			size := int(ev.Event_len)
			if size < metaLen || size > len(b) || ev.Vers != unix.FANOTIFY_METADATA_VERSION {
				// Not a layout this code knows: what follows cannot be
				// parsed either, and the descriptors the kernel opened for
				// the rest stay open for good. Not expected to happen.
				return overflow, fmt.Errorf("fanotify event version %d, length %d", ev.Vers, size)
			}
			b = b[size:]
			if ev.Mask&unix.FAN_Q_OVERFLOW != 0 {
				overflow = true
			}
			if ev.Fd < 0 {
				continue
			}
			fd := int(ev.Fd)
			path, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
			if err != nil {
				unix.Close(fd)
				continue
			}
			closed(os.NewFile(uintptr(fd), path), path)
		}
	}
}

func (n *fanotify) close() error { return unix.Close(n.fd) }

// reopenFile opens f's file again, deleted or not, with an offset of its
// own: the keeper keeps its descriptor while a Tailer reads the other.
func reopenFile(f *os.File) (*os.File, error) {
	// The magic link opens the file itself, not a path that may name
	// another file by now: the regular file the keeper checked (fstat),
	// whatever is at its name. Being a link, it cannot be opened
	// O_NOFOLLOW; it needs none.
	g, err := os.Open("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	if err != nil {
		return nil, fmt.Errorf("reopening %s: %w", f.Name(), err)
	}
	return g, nil
}
