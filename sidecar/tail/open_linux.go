//go:build linux

package tail

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// openLogFile opens path, a file of a container's log,
// <containers>/<id>/<name>, for reading, or refuses it (ErrRefused).
//
// The containers directory is the operator's and may be reached through
// symlinks (a data root moved elsewhere). Below it nothing is followed: the
// container directory is opened with O_NOFOLLOW relative to it, and the file
// with O_NOFOLLOW relative to that. openat2 with RESOLVE_NO_SYMLINKS would
// do both in one call, but it needs Linux 5.6 and the default seccomp
// profile of Docker releases before 20.10.x refuses it with EPERM (the
// sidecar runs in a container), so it would need a fallback anyway; two
// openat calls give the same guarantee for this fixed two-level layout on
// every kernel, with no fallback to get wrong.
//
// The file is opened O_NONBLOCK, so that a FIFO does not block the open
// (without it, opening one waits for a writer), and is read only once fstat
// of the descriptor says it is a regular file: no check of a path that a
// rename could change after it. An lstat before spares opening a FIFO or a
// device at all (opening a device can have effects); it decides nothing.
func openLogFile(path string) (*os.File, error) {
	dirfd, err := openContainerDir(path)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dirfd)
	name := filepath.Base(path)
	var st unix.Stat_t
	if err := ignoringEINTR(func() error { return unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) }); err != nil {
		return nil, &fs.PathError{Op: "lstat", Path: path, Err: err}
	}
	if err := checkRegular(path, fileMode(st.Mode)); err != nil {
		return nil, err
	}
	return openRegularAt(dirfd, name, path)
}

// openRegularAt opens name in the directory dirfd, without following a
// symlink or blocking on a FIFO, and returns it if it is a regular file.
func openRegularAt(dirfd int, name, path string) (*os.File, error) {
	fd, err := openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_LARGEFILE)
	if errors.Is(err, unix.ELOOP) {
		return nil, refusal(path, fs.ModeSymlink)
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "fstat", Path: path, Err: err}
	}
	if err := checkRegular(path, fileMode(st.Mode)); err != nil {
		unix.Close(fd)
		return nil, err
	}
	// Reads of a regular file ignore O_NONBLOCK, but os.NewFile would take
	// such a descriptor for one to poll.
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// openContainerDir opens path's directory, refusing a symlink or anything
// but a directory there; what is above it is followed. A path without a
// directory of its own (not Docker's layout: a file at the root or in the
// working directory) has its directory opened as it is.
func openContainerDir(path string) (int, error) {
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC
	dir := filepath.Dir(path)
	parent, sub := filepath.Dir(dir), filepath.Base(dir)
	if sub == "." || sub == ".." || sub == string(filepath.Separator) {
		fd, err := openat(unix.AT_FDCWD, dir, flags)
		if err != nil {
			return -1, &fs.PathError{Op: "open", Path: dir, Err: err}
		}
		return fd, nil
	}
	parentfd, err := openat(unix.AT_FDCWD, parent, flags)
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: parent, Err: err}
	}
	defer unix.Close(parentfd)
	fd, err := openat(parentfd, sub, flags|unix.O_NOFOLLOW)
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		// Only to say what is there: the open has refused it already.
		var st unix.Stat_t
		if unix.Fstatat(parentfd, sub, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
			return -1, dirRefusal(path, dir, fileMode(st.Mode))
		}
	}
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	return fd, nil
}

func openat(dirfd int, name string, flags int) (fd int, err error) {
	err = ignoringEINTR(func() error {
		fd, err = unix.Openat(dirfd, name, flags, 0)
		return err
	})
	return fd, err
}

func ignoringEINTR(f func() error) error {
	for {
		if err := f(); !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// fileMode is the type of st_mode as fs.FileMode bits.
func fileMode(mode uint32) fs.FileMode {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return 0
	case unix.S_IFDIR:
		return fs.ModeDir
	case unix.S_IFLNK:
		return fs.ModeSymlink
	case unix.S_IFIFO:
		return fs.ModeNamedPipe
	case unix.S_IFSOCK:
		return fs.ModeSocket
	case unix.S_IFCHR:
		return fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		return fs.ModeDevice
	default:
		return fs.ModeIrregular
	}
}
