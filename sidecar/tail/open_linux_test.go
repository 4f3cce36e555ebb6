package tail

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// What openLogFile opens and what it refuses, with the sentinel each
// refusal wraps; nothing it refuses is read, and nothing blocks.
func TestOpenLogFile(t *testing.T) {
	secret := secretFile(t, false)
	cases := []struct {
		name string
		make func(t *testing.T, path string)
		want error // nil: opened
	}{
		{"regular", func(t *testing.T, path string) { writeFile(t, path, jsonLines("ok", 1)) }, nil},
		{"missing", func(t *testing.T, path string) {}, fs.ErrNotExist},
		{"symlink", func(t *testing.T, path string) { must(t, os.Symlink(secret, path)) }, ErrSymlink},
		{"relative symlink", func(t *testing.T, path string) { must(t, os.Symlink("../../../../"+secret, path)) }, ErrSymlink},
		{"dangling symlink", func(t *testing.T, path string) { must(t, os.Symlink("/nonexistent", path)) }, ErrSymlink},
		{"symlink to /dev/zero", func(t *testing.T, path string) { must(t, os.Symlink("/dev/zero", path)) }, ErrSymlink},
		{"FIFO", func(t *testing.T, path string) { must(t, syscall.Mkfifo(path, 0o640)) }, ErrNotRegular},
		{"directory", func(t *testing.T, path string) { must(t, os.Mkdir(path, 0o710)) }, ErrNotRegular},
		{"symlinked container directory", func(t *testing.T, path string) {
			dir := filepath.Dir(path)
			must(t, os.Remove(dir))
			must(t, os.Symlink(filepath.Dir(secret), dir))
			must(t, os.Symlink(secret, filepath.Join(filepath.Dir(secret), filepath.Base(path))))
		}, ErrSymlink},
		{"container directory is a file", func(t *testing.T, path string) {
			dir := filepath.Dir(path)
			must(t, os.Remove(dir))
			writeFile(t, dir, nil)
		}, ErrNotRegular},
		{"container directory is a FIFO", func(t *testing.T, path string) {
			dir := filepath.Dir(path)
			must(t, os.Remove(dir))
			must(t, syscall.Mkfifo(dir, 0o640))
		}, ErrNotRegular},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := containerDir(t)
			tc.make(t, path)
			f, err := withDeadline(t, func() (*os.File, error) { return openLogFile(path) })
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				b, err := io.ReadAll(f)
				if err != nil || string(b) != string(jsonLines("ok", 1)) {
					t.Errorf("read %q, %v", b, err)
				}
				return
			}
			if err == nil {
				f.Close()
				t.Fatalf("opened, want %v", tc.want)
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %v, want %v naming %s", err, tc.want, path)
			}
		})
	}
}

// The check that decides is fstat of the opened descriptor: opening a FIFO
// that the lstat before did not see (it took the file's place in between)
// neither blocks nor returns it; a symlink there fails the open.
func TestOpenRegularAtAfterSwap(t *testing.T) {
	dir := t.TempDir()
	must(t, syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o640))
	must(t, os.Symlink(secretFile(t, false), filepath.Join(dir, "link")))
	dirfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	must(t, err)
	defer unix.Close(dirfd)
	for name, want := range map[string]error{"fifo": ErrNotRegular, "link": ErrSymlink} {
		f, err := withDeadline(t, func() (*os.File, error) { return openRegularAt(dirfd, name, filepath.Join(dir, name)) })
		if err == nil {
			f.Close()
		}
		if !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
	}
}

// withDeadline runs open, failing the test if it blocks.
func withDeadline(t *testing.T, open func() (*os.File, error)) (f *os.File, err error) {
	t.Helper()
	within(t, "opening", func() { f, err = open() })
	return f, err
}

// within runs f, failing the test if it does not return in time.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s blocked", what)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A FIFO with a log file's name that is closed after writing in a kept
// directory: the kernel opens it for the event without blocking the
// keeper, which refuses it and keeps nothing. Recent kernels report no
// such close (6.18 here): the test then only shows that nothing blocks
// or is kept.
func TestKeeperRefusesFIFO(t *testing.T) {
	needFanotify(t)
	path := containerDir(t)
	writeFile(t, path, nil)
	w := manualWatcher(t, NewMetrics(nil))
	var refused []error
	l := w.keep(path, 1<<30, func(_ string, err error) { refused = append(refused, err) })
	if l == nil {
		t.Fatal("no keeper")
	}
	defer w.unkeep(l)
	fifo := path + ".1"
	must(t, syscall.Mkfifo(fifo, 0o640))
	f, err := os.OpenFile(fifo, os.O_RDWR, 0) // never blocks on Linux
	must(t, err)
	must(t, f.Close())
	var kept int
	within(t, "reading fanotify events", func() { kept = l.count() })
	if kept != 0 {
		t.Fatalf("kept %d files", kept)
	}
	if len(refused) == 0 {
		t.Skip("this kernel reports no close of a FIFO to fanotify")
	}
	if len(refused) != 1 || !errors.Is(refused[0], ErrNotRegular) {
		t.Errorf("refused %v, want one ErrNotRegular", refused)
	}
}
