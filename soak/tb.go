package soak

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"
)

// errFatal marks a failure that internal/dockertest or internal/lokitest
// reported through the harness's testing.TB: they stop a test with
// t.Fatalf, the harness turns that into this error.
var errFatal = errors.New("soak: fatal")

// fatal is what harnessTB.Fatalf panics with; guard recovers it.
type fatal struct{ msg string }

// harnessTB lets the soak drive internal/dockertest and internal/lokitest,
// which take a testing.TB, from a program and from any goroutine of a test:
// Fatal panics with fatal (guard turns it into an error on the goroutine
// that called), Cleanup functions run when Run ends (close), Log goes to the
// parent test or to a writer. The embedded testing.TB is the parent, or nil
// in the program: only the methods below are called on it.
type harnessTB struct {
	testing.TB // parent test, or nil

	out io.Writer // Log output when there is no parent

	mu       sync.Mutex
	cleanups []func()
	failed   bool
	tempDirs []string
}

var _ testing.TB = (*harnessTB)(nil)

func newHarnessTB(parent testing.TB, out io.Writer) *harnessTB {
	return &harnessTB{TB: parent, out: out}
}

func (h *harnessTB) Helper() {}

func (h *harnessTB) Name() string { return "soak" }

func (h *harnessTB) Logf(format string, args ...any) {
	if h.TB != nil {
		h.TB.Logf(format, args...)
		return
	}
	fmt.Fprintf(h.out, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func (h *harnessTB) Log(args ...any) { h.Logf("%s", fmt.Sprint(args...)) }

func (h *harnessTB) Errorf(format string, args ...any) {
	h.mu.Lock()
	h.failed = true
	h.mu.Unlock()
	h.Logf("ERROR "+format, args...)
}

func (h *harnessTB) Error(args ...any) { h.Errorf("%s", fmt.Sprint(args...)) }

func (h *harnessTB) Fatalf(format string, args ...any) {
	h.mu.Lock()
	h.failed = true
	h.mu.Unlock()
	panic(fatal{msg: fmt.Sprintf(format, args...)})
}

func (h *harnessTB) Fatal(args ...any) { h.Fatalf("%s", fmt.Sprint(args...)) }

func (h *harnessTB) FailNow() { h.Fatalf("FailNow") }

func (h *harnessTB) Fail() {
	h.mu.Lock()
	h.failed = true
	h.mu.Unlock()
}

func (h *harnessTB) Failed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.failed
}

// Skip and Skipf come from dockertest.Start under -short: in a test they
// skip it (only Run's own goroutine starts the daemon); in the program
// they are a failure.
func (h *harnessTB) Skipf(format string, args ...any) {
	if h.TB != nil {
		h.TB.Skipf(format, args...)
	}
	h.Fatalf("skipped: "+format, args...)
}

func (h *harnessTB) Skip(args ...any) { h.Skipf("%s", fmt.Sprint(args...)) }

func (h *harnessTB) Cleanup(f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cleanups = append(h.cleanups, f)
}

func (h *harnessTB) TempDir() string {
	dir, err := os.MkdirTemp("", "lf-soak-")
	if err != nil {
		h.Fatalf("soak: %v", err)
	}
	h.mu.Lock()
	h.tempDirs = append(h.tempDirs, dir)
	h.mu.Unlock()
	return dir
}

// close runs the cleanups, last registered first, then removes the
// temporary directories. A cleanup's fatal is logged, not propagated.
func (h *harnessTB) close() {
	for {
		h.mu.Lock()
		n := len(h.cleanups)
		if n == 0 {
			h.mu.Unlock()
			break
		}
		f := h.cleanups[n-1]
		h.cleanups = h.cleanups[:n-1]
		h.mu.Unlock()
		if err := guard(f); err != nil {
			h.Logf("cleanup: %v", err)
		}
	}
	h.mu.Lock()
	dirs := h.tempDirs
	h.tempDirs = nil
	h.mu.Unlock()
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			h.Logf("removing %s: %v", d, err)
		}
	}
}

// guard runs f and returns the fatal it raised through harnessTB as an
// error wrapping errFatal; other panics go on.
func guard(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			ft, ok := r.(fatal)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("%w: %s", errFatal, ft.msg)
		}
	}()
	f()
	return nil
}
