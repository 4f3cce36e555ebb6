package plugin

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func newFIFO(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A reader that waits in the netpoller gets what was written before and
// after it began waiting, in order, and EOF once the writer is gone.
func TestFIFOReaderReadsAllThenEOF(t *testing.T) {
	p := newFIFO(t)
	r, err := openFIFOReader(p)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	done := make(chan error, 1)
	go func() {
		defer w.Close()
		for i := range 2000 {
			line := bytes.Repeat([]byte{byte('a' + i%26)}, 1+i%300)
			if _, err := w.Write(line); err != nil {
				done <- err
				return
			}
			want.Write(line)
			if i%100 == 0 {
				time.Sleep(3 * time.Millisecond) // let the reader go quiet
			}
		}
		done <- nil
	}()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("read %d bytes, want %d (or different content)", len(got), want.Len())
	}
}

// Data that is in the pipe before the reader first waits is read, not
// missed by the edge-triggered registration.
func TestFIFOReaderDataBeforeWait(t *testing.T) {
	_, r, w := openReaderWriter(t)
	buf := make([]byte, 16)
	for i := range 50 {
		msg := []byte{byte('0' + i%10)}
		if _, err := w.Write(msg); err != nil {
			t.Fatal(err)
		}
		// The first read finds data; a pause follows; the next Read finds
		// the pipe empty and waits, and the write below must wake it.
		n, err := r.Read(buf)
		if err != nil || n != 1 || buf[0] != msg[0] {
			t.Fatalf("read %d: %q %v", i, buf[:n], err)
		}
	}
}

// Close from another goroutine ends a Read that waits for data.
func TestFIFOReaderCloseUnblocksRead(t *testing.T) {
	p := newFIFO(t)
	r, err := openFIFOReader(p)
	if err != nil {
		t.Fatal(err)
	}
	keeper, err := openFIFOKeeper(p) // a writer that never writes
	if err != nil {
		t.Fatal(err)
	}
	defer keeper.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := r.Read(make([]byte, 8))
		errc <- err
	}()
	select {
	case err := <-errc:
		t.Fatalf("Read returned before Close: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("Read after Close: %v, want os.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read still blocked 10 s after Close")
	}
	if _, err := r.Read(make([]byte, 8)); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Read on a closed reader: %v", err)
	}
}

// Without a keeper and with no writer, a FIFO reads as EOF at once (a
// re-attached stream whose daemon end is gone ends).
func TestFIFOReaderNoWriterIsEOF(t *testing.T) {
	p := newFIFO(t)
	r, err := openFIFOReader(p)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Read(make([]byte, 8)); err != io.EOF {
		t.Fatalf("Read: %v, want EOF", err)
	}
}

func TestFIFOReaderRefusesNonFIFO(t *testing.T) {
	p := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if r, err := openFIFOReader(p); err == nil {
		r.Close()
		t.Fatal("opened a regular file as a FIFO")
	}
}

// The reader grows the pipe, so that the daemon writes on while it pauses.
func TestFIFOReaderGrowsPipe(t *testing.T) {
	p := newFIFO(t)
	r, err := openFIFOReader(p)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	size, err := unix.FcntlInt(uintptr(r.fd), unix.F_GETPIPE_SZ, 0)
	if err != nil {
		t.Fatal(err)
	}
	if size < fifoPipeSize {
		t.Fatalf("pipe size %d, want %d", size, fifoPipeSize)
	}
}

// The pause never lets the daemon fill a pipe the kernel would not grow.
func TestFIFOPauseFollowsPipeSize(t *testing.T) {
	for size, want := range map[int]time.Duration{
		fifoPipeSize: fifoPause, 2 * fifoPipeSize: fifoPause, fifoPipeSize / 4: fifoPause / 4,
		64 << 10: time.Millisecond, 4 << 10: time.Millisecond,
	} {
		if got := pauseFor(size); got != want {
			t.Errorf("pauseFor(%d) = %v, want %v", size, got, want)
		}
	}
}

func TestUntilTick(t *testing.T) {
	base := time.Unix(1_700_000_000, 0).Truncate(fifoTick)
	for _, off := range []time.Duration{0, time.Nanosecond, fifoTick / 3, fifoTick - time.Nanosecond} {
		got := untilTick(base.Add(off))
		if want := fifoTick - off; got != want {
			t.Errorf("at tick+%v: %v, want %v", off, got, want)
		}
	}
}

// A steady stream (small writes) is read on the grid: every byte arrives,
// in order, EOF follows the writer's close, and Close ends a Read that
// sleeps until the next tick.
func TestFIFOReaderSteadyStream(t *testing.T) {
	p := newFIFO(t)
	r, err := openFIFOReader(p)
	if err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	done := make(chan error, 1)
	go func() {
		for i := range 30 {
			line := fmt.Sprintf("line %d\n", i)
			want.WriteString(line)
			if _, err := w.WriteString(line); err != nil {
				done <- err
				return
			}
			if i%10 == 9 { // some writes land while the reader sleeps, some while it waits
				time.Sleep(fifoTick * 3 / 2)
			}
		}
		done <- w.Close()
	}()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if string(got) != want.String() {
		t.Fatalf("read %q, want %q", got, want.String())
	}

	r2, err := openFIFOReader(p)
	if err != nil {
		t.Fatal(err)
	}
	keeper, err := openFIFOKeeper(p)
	if err != nil {
		t.Fatal(err)
	}
	defer keeper.Close()
	kw, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer kw.Close()
	if _, err := kw.WriteString("x\n"); err != nil {
		t.Fatal(err)
	}
	if n, err := r2.Read(make([]byte, 64)); n != 2 || err != nil {
		t.Fatalf("first read: %d, %v", n, err)
	}
	if r2.next <= 0 {
		t.Fatalf("after a small read the reader does not wait for the grid (next %v)", r2.next)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := r2.Read(make([]byte, 64))
		errc <- err
	}()
	if err := r2.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("Read after Close: %v, want os.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read still sleeping 10 s after Close")
	}
}

// Drain (shutdown): Read returns what the pipe holds, then io.EOF, while a
// writer still has the FIFO open; a Read waiting in the netpoller ends too.
func TestFIFOReaderDrain(t *testing.T) {
	p, r, w := openReaderWriter(t)
	errc := make(chan error, 1)
	go func() { // waits: the pipe is empty
		_, err := r.Read(make([]byte, 64))
		errc <- err
	}()
	select {
	case err := <-errc:
		t.Fatalf("Read of an empty pipe returned: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := w.WriteString("kept\n"); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteString("left in the pipe at shutdown\n"); err != nil {
		t.Fatal(err)
	}
	r.Drain()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "left in the pipe at shutdown\n" {
		t.Fatalf("drained %q", got)
	}

	r2, err := openFIFOReader(p)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	go func() {
		_, err := r2.Read(make([]byte, 64))
		errc <- err
	}()
	select {
	case err := <-errc:
		t.Fatalf("Read of an empty pipe returned: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	r2.Drain()
	select {
	case err := <-errc:
		if err != io.EOF {
			t.Fatalf("a waiting Read after Drain: %v, want io.EOF", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a waiting Read still blocked 10 s after Drain")
	}
}

// TestFIFOReaderBusyPipeEndsWithAPause: the read that empties a pipe that
// filled fast (here about 1 MiB at once) waits the short pause, not the
// grid (a container writing flat out would fill the pipe within the tick and
// wait for the rest of it); a small read after little came waits for the
// grid, as a steady stream does.
func TestFIFOReaderBusyPipeEndsWithAPause(t *testing.T) {
	_, r, w := openReaderWriter(t)
	const burst = fifoPipeSize - 8<<10 // the pipe holds it: the write does not wait
	if _, err := w.Write(make([]byte, burst)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 32<<10)
	got := 0
	for got < burst {
		n, err := r.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got += n
		if n == len(buf) && r.next != 0 {
			t.Fatalf("after a full read the next waits %v, want 0", r.next)
		}
	}
	if r.next != r.wait || r.next >= fifoTick {
		t.Fatalf("after emptying a busy pipe the next read waits %v, want the pause %v", r.next, r.wait)
	}
	// A small write alone, read after the pause: the grid.
	if _, err := w.Write(make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Read(buf); err != nil || n != 100 {
		t.Fatalf("the small read: %d, %v; want 100", n, err)
	}
	if r.next == r.wait || r.next > fifoTick {
		t.Fatalf("after a small read the next waits %v, want the time to the next tick", r.next)
	}
}

// openReaderWriter makes a FIFO and opens its reader and a writer, both
// closed when the test ends.
func openReaderWriter(t *testing.T) (string, *fifoReader, *os.File) {
	t.Helper()
	p := newFIFO(t)
	r, err := openFIFOReader(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	w, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return p, r, w
}
