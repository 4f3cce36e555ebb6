package dockerlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
)

// The daemon's timestamp layout for logs streams (fixed nine digits).
const streamTimeLayout = "2006-01-02T15:04:05.000000000Z07:00"

const (
	t1 = "2024-05-01T12:34:56.123456789Z"
	t2 = "2024-05-01T12:34:57.000000001Z"
)

var (
	t1Nano = mustTimestamp(t1)
	t2Nano = mustTimestamp(t2)
)

func mustTimestamp(s string) int64 {
	n, err := ParseTimestamp([]byte(s))
	if err != nil {
		panic(err)
	}
	return n
}

// muxFrame is one frame as the daemon's stdcopy writer makes it.
func muxFrame(kind byte, payload string) []byte {
	h := []byte{kind, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(h[4:], uint32(len(payload)))
	return append(h, payload...)
}

func muxStream(frames ...[]byte) []byte { return bytes.Join(frames, nil) }

// streamResult is one result of Next, flattened for comparison.
type streamResult struct {
	stream  string
	time    int64
	line    string
	partial bool
	err     error // compared with errors.Is
}

func (g streamResult) String() string {
	if g.err != nil {
		return fmt.Sprintf("error %v", g.err)
	}
	return fmt.Sprintf("%s %d %q partial=%v", g.stream, g.time, g.line, g.partial)
}

// drain calls Next until io.EOF or a non-recoverable error, which ends the
// list.
func drain(t *testing.T, d *LogStreamDecoder) []streamResult {
	t.Helper()
	var out []streamResult
	for range 10000 {
		var m StreamMessage
		err := d.Next(&m)
		if err == io.EOF {
			return out
		}
		if err != nil {
			out = append(out, streamResult{err: err})
			if !errors.Is(err, ErrCorruptStream) && !errors.Is(err, ErrFrameTooLarge) && !errors.Is(err, ErrDaemonError) {
				return out
			}
			continue
		}
		out = append(out, streamResult{m.Stream, m.TimeNano, string(m.Line), m.Partial, nil})
	}
	t.Fatal("decoder made no progress")
	return nil
}

// errClass is the sentinel err wraps, so that results compare by kind.
func errClass(err error) error {
	for _, sentinel := range []error{ErrCorruptStream, ErrFrameTooLarge, ErrDaemonError, ErrTruncatedFrame, io.ErrNoProgress} {
		if errors.Is(err, sentinel) {
			return sentinel
		}
	}
	return err
}

func sameResults(a, b []streamResult) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if (a[i].err == nil) != (b[i].err == nil) {
			return false
		}
		if a[i].err != nil {
			if errClass(a[i].err) != errClass(b[i].err) {
				return false
			}
			continue
		}
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestLogStreamMultiplexed(t *testing.T) {
	long := strings.Repeat("x", dockerChunkSize)
	tests := []struct {
		name     string
		in       []byte
		maxFrame int
		want     []streamResult
	}{
		{name: "empty", in: nil},
		{
			name: "lines on both streams",
			in:   muxStream(muxFrame(1, t1+" hello\n"), muxFrame(2, t2+" oops\n")),
			want: []streamResult{{"stdout", t1Nano, "hello", false, nil}, {"stderr", t2Nano, "oops", false, nil}},
		},
		{
			name: "partial chunks",
			in:   muxStream(muxFrame(1, t1+" "+long), muxFrame(1, t1+" tail\n")),
			want: []streamResult{{"stdout", t1Nano, long, true, nil}, {"stdout", t1Nano, "tail", false, nil}},
		},
		{
			name: "empty line and text with spaces",
			in:   muxStream(muxFrame(1, t1+" \n"), muxFrame(1, t1+"  two  spaces \n")),
			want: []streamResult{{"stdout", t1Nano, "", false, nil}, {"stdout", t1Nano, " two  spaces ", false, nil}},
		},
		{
			name: "stdin reads as stdout",
			in:   muxFrame(0, t1+" in\n"),
			want: []streamResult{{"stdout", t1Nano, "in", false, nil}},
		},
		{
			name: "offset timestamp",
			in:   muxFrame(1, "2024-05-01T14:34:56.123456789+02:00 x\n"),
			want: []streamResult{{"stdout", t1Nano, "x", false, nil}},
		},
		{
			name: "daemon error, then more",
			in:   muxStream(muxFrame(1, t1+" a\n"), muxFrame(3, "Error grabbing logs: boom\n"), muxFrame(1, t2+" b\n")),
			want: []streamResult{{"stdout", t1Nano, "a", false, nil}, {err: ErrDaemonError}, {"stdout", t2Nano, "b", false, nil}},
		},
		{
			name: "frame without timestamp is skipped",
			in:   muxStream(muxFrame(1, "no timestamp here\n"), muxFrame(1, t1+" ok\n")),
			want: []streamResult{{err: ErrCorruptStream}, {"stdout", t1Nano, "ok", false, nil}},
		},
		{
			name: "frame with bad timestamp is skipped",
			in:   muxStream(muxFrame(2, "2024-13-01T00:00:00Z x\n"), muxFrame(1, t1+" ok\n")),
			want: []streamResult{{err: ErrCorruptStream}, {"stdout", t1Nano, "ok", false, nil}},
		},
		{
			name: "empty frame is skipped",
			in:   muxStream(muxFrame(1, ""), muxFrame(1, t1+" ok\n")),
			want: []streamResult{{err: ErrCorruptStream}, {"stdout", t1Nano, "ok", false, nil}},
		},
		{
			name: "truncated header",
			in:   append(muxFrame(1, t1+" a\n"), 1, 0, 0),
			want: []streamResult{{"stdout", t1Nano, "a", false, nil}, {err: ErrTruncatedFrame}},
		},
		{
			name: "truncated payload",
			in:   append(muxFrame(1, t1+" a\n"), muxFrame(1, t1+" bbbb\n")[:20]...),
			want: []streamResult{{"stdout", t1Nano, "a", false, nil}, {err: ErrTruncatedFrame}},
		},
		{
			name: "garbage between frames",
			in:   muxStream(muxFrame(1, t1+" a\n"), []byte("\x01garbage\x00\x00\x00 in between"), muxFrame(2, t2+" b\n")),
			want: []streamResult{{"stdout", t1Nano, "a", false, nil}, {err: ErrCorruptStream}, {"stderr", t2Nano, "b", false, nil}},
		},
		{
			name: "bad stream byte",
			in:   muxStream(muxFrame(7, t1+" a\n"), muxFrame(1, t2+" b\n")),
			want: []streamResult{{err: ErrCorruptStream}, {"stdout", t2Nano, "b", false, nil}},
		},
		{
			name: "frame too large, then resync",
			in:   muxStream([]byte{1, 0, 0, 0, 0x7f, 0, 0, 0}, []byte("junk"), muxFrame(1, t1+" a\n")),
			want: []streamResult{{err: ErrFrameTooLarge}, {"stdout", t1Nano, "a", false, nil}},
		},
		{
			name: "garbage at the end",
			in:   muxStream(muxFrame(1, t1+" a\n"), []byte{9, 9, 9, 9, 9, 9, 9, 9, 9}),
			want: []streamResult{{"stdout", t1Nano, "a", false, nil}, {err: ErrCorruptStream}, {err: ErrTruncatedFrame}},
		},
		{
			name: "resync candidate cut by the end",
			in:   muxStream(muxFrame(1, t1+" a\n"), []byte{9, 1, 0, 0, 0, 0, 0, 0, 40, '2', '0'}),
			want: []streamResult{{"stdout", t1Nano, "a", false, nil}, {err: ErrCorruptStream}, {err: ErrTruncatedFrame}},
		},
		{
			name: "frame at the cap is accepted",
			in:   muxFrame(1, t1+" "+strings.Repeat("y", minLogStreamFrame-len(t1)-2)+"\n"),
			want: []streamResult{{"stdout", t1Nano, strings.Repeat("y", minLogStreamFrame-len(t1)-2), false, nil}},
		},
		{
			name: "frame over the cap",
			in:   muxFrame(1, t1+" "+strings.Repeat("y", minLogStreamFrame-len(t1))+"\n"),
			want: []streamResult{{err: ErrFrameTooLarge}, {err: ErrTruncatedFrame}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			readers := map[string]io.Reader{
				"whole":    bytes.NewReader(tt.in),
				"one byte": iotest.OneByteReader(bytes.NewReader(tt.in)),
				"half":     iotest.HalfReader(bytes.NewReader(tt.in)),
				"data+EOF": iotest.DataErrReader(bytes.NewReader(tt.in)),
			}
			for name, r := range readers {
				res := drain(t, NewLogStreamDecoder(r, false, 1))
				if !sameResults(res, tt.want) {
					t.Errorf("%s reader:\n got %v\nwant %v", name, res, tt.want)
				}
			}
		})
	}
}

// TestLogStreamFixtureMatchesStdcopy checks the test's frame builder against
// Docker's own demultiplexer, so the format above is the daemon's.
func TestLogStreamFixtureMatchesStdcopy(t *testing.T) {
	in := muxStream(muxFrame(1, t1+" out\n"), muxFrame(2, t2+" err\n"), muxFrame(1, t1+" more"))
	var out, errOut bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &errOut, bytes.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	if out.String() != t1+" out\n"+t1+" more" || errOut.String() != t2+" err\n" {
		t.Fatalf("stdcopy read %q / %q", out.String(), errOut.String())
	}
	_, err := stdcopy.StdCopy(io.Discard, io.Discard, bytes.NewReader(muxFrame(3, "Error grabbing logs: x\n")))
	if err == nil {
		t.Fatal("stdcopy accepted a systemerr frame")
	}
}

func TestLogStreamTTY(t *testing.T) {
	chunk := strings.Repeat("c", dockerChunkSize)
	tests := []struct {
		name     string
		in       string
		maxFrame int
		want     []streamResult
	}{
		{name: "empty", in: ""},
		{
			name: "lines",
			in:   t1 + " hello\n" + t2 + " world\n",
			want: []streamResult{{"stdout", t1Nano, "hello", false, nil}, {"stdout", t2Nano, "world", false, nil}},
		},
		{
			name: "empty line",
			in:   t1 + " \n",
			want: []streamResult{{"stdout", t1Nano, "", false, nil}},
		},
		{
			name: "ends without newline",
			in:   t1 + " a\n" + t2 + " unfinished",
			want: []streamResult{{"stdout", t1Nano, "a", false, nil}, {"stdout", t2Nano, "unfinished", true, nil}},
		},
		{
			name: "daemon chunks of a long line",
			in:   t1 + " " + chunk + t1 + " " + chunk + t1 + " end\n" + t2 + " next\n",
			want: []streamResult{
				{"stdout", t1Nano, chunk, true, nil}, {"stdout", t1Nano, chunk, true, nil},
				{"stdout", t1Nano, "end", false, nil}, {"stdout", t2Nano, "next", false, nil},
			},
		},
		{
			name: "line of exactly one chunk",
			in:   t1 + " " + chunk + "\n" + t2 + " next\n",
			want: []streamResult{{"stdout", t1Nano, chunk, false, nil}, {"stdout", t2Nano, "next", false, nil}},
		},
		{
			name: "chunk at the end of the stream",
			in:   t1 + " " + chunk,
			want: []streamResult{{"stdout", t1Nano, chunk, true, nil}},
		},
		{
			name: "text at the chunk size that is no timestamp",
			in:   t1 + " " + chunk + "2024-05-01 not a timestamp\n",
			want: []streamResult{{"stdout", t1Nano, chunk + "2024-05-01 not a timestamp", false, nil}},
		},
		{
			name:     "line over the cap comes in pieces",
			maxFrame: minLogStreamFrame,
			in:       t1 + " " + strings.Repeat("p", 2*minLogStreamFrame+5) + "\n" + t2 + " next\n",
			want: []streamResult{
				{"stdout", t1Nano, strings.Repeat("p", minLogStreamFrame), true, nil},
				{"stdout", t1Nano, strings.Repeat("p", minLogStreamFrame), true, nil},
				{"stdout", t1Nano, "ppppp", false, nil},
				{"stdout", t2Nano, "next", false, nil},
			},
		},
		{
			name: "line without timestamp is skipped",
			in:   "no timestamp\n" + t1 + " ok\n",
			want: []streamResult{{err: ErrCorruptStream}, {"stdout", t1Nano, "ok", false, nil}},
		},
		{
			name: "bad timestamp is skipped",
			in:   "2024-99-01T00:00:00Z x\n" + t1 + " ok\n",
			want: []streamResult{{err: ErrCorruptStream}, {"stdout", t1Nano, "ok", false, nil}},
		},
		{
			name: "empty line without timestamp",
			in:   "\n" + t1 + " ok\n",
			want: []streamResult{{err: ErrCorruptStream}, {"stdout", t1Nano, "ok", false, nil}},
		},
		{
			name: "daemon error",
			in:   t1 + " a\nError grabbing logs: boom\n" + t2 + " b\n",
			want: []streamResult{{"stdout", t1Nano, "a", false, nil}, {err: ErrDaemonError}, {"stdout", t2Nano, "b", false, nil}},
		},
		{
			name:     "long garbage line is skipped",
			maxFrame: minLogStreamFrame,
			in:       strings.Repeat("g", 3*minLogStreamFrame) + "\n" + t1 + " ok\n",
			want:     []streamResult{{err: ErrCorruptStream}, {"stdout", t1Nano, "ok", false, nil}},
		},
		{
			name: "garbage at the end",
			in:   t1 + " a\n2024-05-0",
			want: []streamResult{{"stdout", t1Nano, "a", false, nil}, {err: ErrCorruptStream}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			readers := map[string]func() io.Reader{
				"whole":    func() io.Reader { return strings.NewReader(tt.in) },
				"one byte": func() io.Reader { return iotest.OneByteReader(strings.NewReader(tt.in)) },
				"half":     func() io.Reader { return iotest.HalfReader(strings.NewReader(tt.in)) },
				"data+EOF": func() io.Reader { return iotest.DataErrReader(strings.NewReader(tt.in)) },
			}
			for name, r := range readers {
				res := drain(t, NewLogStreamDecoder(r(), true, tt.maxFrame))
				if !sameResults(res, tt.want) {
					t.Errorf("%s reader:\n got %.300v\nwant %.300v", name, res, tt.want)
				}
			}
		})
	}
}

type failingReader struct{ err error }

func (f failingReader) Read([]byte) (int, error) { return 0, f.err }

func TestLogStreamReadError(t *testing.T) {
	boom := errors.New("connection reset")
	for _, tty := range []bool{false, true} {
		d := NewLogStreamDecoder(io.MultiReader(bytes.NewReader(muxFrame(1, t1+" a\n")), failingReader{boom}), tty, 0)
		var m StreamMessage
		if tty {
			d = NewLogStreamDecoder(io.MultiReader(strings.NewReader(t1+" a\n"), failingReader{boom}), tty, 0)
		}
		if err := d.Next(&m); err != nil || string(m.Line) != "a" {
			t.Fatalf("tty=%v: first message %q, %v", tty, m.Line, err)
		}
		for range 2 {
			if err := d.Next(&m); !errors.Is(err, boom) {
				t.Fatalf("tty=%v: got %v, want the reader's error", tty, err)
			}
		}
	}
}

// TestLogStreamNoProgress checks that a reader returning nothing forever
// ends the stream instead of spinning.
func TestLogStreamNoProgress(t *testing.T) {
	d := NewLogStreamDecoder(failingReader{nil}, false, 0)
	var m StreamMessage
	if err := d.Next(&m); !errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("got %v", err)
	}
}

// cycleReader replays data forever; each pass ends on a message boundary.
type cycleReader struct {
	data []byte
	off  int
}

func (c *cycleReader) Read(p []byte) (int, error) {
	n := copy(p, c.data[c.off:])
	c.off = (c.off + n) % len(c.data)
	return n, nil
}

func TestLogStreamAllocs(t *testing.T) {
	for _, tty := range []bool{false, true} {
		data, _ := benchLogStream(tty)
		d := NewLogStreamDecoder(&cycleReader{data: data}, tty, 0)
		var m StreamMessage
		for range 1000 {
			if err := d.Next(&m); err != nil {
				t.Fatal(err)
			}
		}
		if a := testing.AllocsPerRun(1000, func() { _ = d.Next(&m) }); a != 0 {
			t.Fatalf("tty=%v: %v allocs per message", tty, a)
		}
	}
}

// benchLogStream returns a stream of ~250 B lines, one in sixteen split in
// 16 KiB chunks, and how many messages it holds.
func benchLogStream(tty bool) ([]byte, int) {
	var out []byte
	n := 0
	add := func(kind byte, msg string) {
		if tty {
			out = append(out, msg...)
		} else {
			out = append(out, muxFrame(kind, msg)...)
		}
		n++
	}
	base := mustTimestamp(t1)
	chunk := strings.Repeat("z", dockerChunkSize)
	for i := range 64 {
		at := timeOf(base + int64(i)*1234567891)
		kind := byte(1 + i%3/2)
		if i%16 == 7 {
			add(kind, at+" "+chunk)
			add(kind, at+" "+chunk)
			add(kind, at+" end of a long line\n")
			continue
		}
		add(kind, fmt.Sprintf("%s 2024-05-01 12:34:56.789 INFO  [http-nio-8080-exec-%d] c.e.s.OrderController - GET /api/v1/orders/%d?expand=items status=200 duration=%d.%dms user=alice%d@example.com trace_id=4bf92f3577b34da6a3ce929d0e0e%04d\n", at, i%16, 10000+i*31, i, i%10, i, i))
	}
	return out, n
}

func timeOf(nano int64) string {
	return time.Unix(0, nano).UTC().Format(streamTimeLayout)
}

func FuzzLogStreamDecode(f *testing.F) {
	mux, _ := benchLogStream(false)
	f.Add(false, mux[:2000])
	tty, _ := benchLogStream(true)
	f.Add(true, tty[:2000])
	f.Add(false, muxStream(muxFrame(1, t1+" a\n"), []byte("\x01junk\x00\x00"), muxFrame(3, "err\n"), muxFrame(2, t2+" b")))
	f.Add(true, []byte(t1+" a\nError grabbing logs: x\nbad\n"+t2+" b"))
	f.Add(true, []byte(t1+" 0123456789abcdef"+t1+" 01234567"+t2+" x\n"))
	f.Add(false, []byte("line one\n\xffline two\xffpartial\xff\xff\n"))
	f.Fuzz(func(t *testing.T, tty bool, in []byte) {
		// Small chunk and cap sizes reach the TTY chunk and continuation
		// logic with short inputs.
		small := func(r io.Reader) *LogStreamDecoder {
			d := NewLogStreamDecoder(r, tty, 0)
			d.chunkSize, d.maxFrame = 16, 48
			return d
		}
		for _, mk := range []func(io.Reader) *LogStreamDecoder{
			func(r io.Reader) *LogStreamDecoder { return NewLogStreamDecoder(r, tty, 0) },
			small,
		} {
			// Reading in small pieces must give the same result as in one.
			whole := drain(t, mk(bytes.NewReader(in)))
			pieces := drain(t, mk(iotest.OneByteReader(bytes.NewReader(in))))
			if !sameResults(whole, pieces) {
				t.Fatalf("one-byte reads differ:\n%v\n%v", whole, pieces)
			}
			text := 0
			for _, g := range whole {
				if g.err != nil {
					continue
				}
				if g.stream != SourceStdout && (tty || g.stream != SourceStderr) {
					t.Fatalf("stream %q (tty=%v)", g.stream, tty)
				}
				if !bytes.Contains(in, []byte(g.line)) {
					t.Fatalf("line %q not in the input", g.line)
				}
				text += len(g.line)
			}
			if text > len(in) {
				t.Fatalf("%d bytes of text out of %d in", text, len(in))
			}
		}

		// Round trip: the input, split at 0xff, as the lines of a stream
		// written the way the daemon writes it.
		texts := bytes.Split(in, []byte{0xff})
		var stream []byte
		var want []streamResult
		for i, text := range texts {
			at := t1Nano + int64(i)*1000000007
			stamp := timeOf(at) + " "
			if !tty {
				kind := byte(1 + len(text)%2)
				stream = append(stream, muxFrame(kind, stamp+string(text))...)
				line, partial := cutNewline(text)
				want = append(want, streamResult{[]string{"", SourceStdout, SourceStderr}[kind], at, string(line), partial, nil})
				continue
			}
			// TTY: no newline inside a message and nothing shaped like a
			// timestamp (the form cannot tell those from message starts);
			// chunks of exactly chunkSize as the daemon's copier cuts them.
			clean := bytes.ReplaceAll(bytes.ReplaceAll(text, []byte("\n"), []byte(" ")), []byte("-"), []byte("_"))
			for len(clean) >= 16 {
				stream = append(stream, stamp+string(clean[:16])...)
				want = append(want, streamResult{SourceStdout, at, string(clean[:16]), true, nil})
				clean = clean[16:]
			}
			stream = append(stream, stamp+string(clean)+"\n"...)
			want = append(want, streamResult{SourceStdout, at, string(clean), false, nil})
		}
		d := NewLogStreamDecoder(iotest.HalfReader(bytes.NewReader(stream)), tty, 0)
		d.chunkSize = 16
		if res := drain(t, d); !sameResults(res, want) {
			t.Fatalf("round trip of %q:\n got %v\nwant %v", stream, res, want)
		}
	})
}

func BenchmarkLogStreamDecode(b *testing.B) {
	for _, tty := range []bool{false, true} {
		b.Run(fmt.Sprintf("tty=%v", tty), func(b *testing.B) {
			data, n := benchLogStream(tty)
			d := NewLogStreamDecoder(&cycleReader{data: data}, tty, 0)
			b.SetBytes(int64(len(data) / n))
			b.ReportAllocs()
			var m StreamMessage
			for b.Loop() {
				if err := d.Next(&m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestLogStreamSkippedBytes(t *testing.T) {
	bad := muxFrame(1, "no timestamp\n")
	junk := []byte("\x07junk!!!!")
	in := muxStream(bad, junk, muxFrame(1, t1+" ok\n"))
	d := NewLogStreamDecoder(bytes.NewReader(in), false, 0)
	res := drain(t, d)
	want := []streamResult{{err: ErrCorruptStream}, {err: ErrCorruptStream}, {"stdout", t1Nano, "ok", false, nil}}
	if !sameResults(res, want) {
		t.Fatalf("got %v", res)
	}
	if n := d.SkippedBytes(); n != int64(len(bad)+len(junk)) {
		t.Fatalf("skipped %d bytes, want %d", n, len(bad)+len(junk))
	}
}
