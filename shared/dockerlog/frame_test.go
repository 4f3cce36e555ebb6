package dockerlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// generatedFrame encodes f with the gogo-generated code, the reference the
// hand-written encoder and decoder are checked against.
func generatedFrame(t testing.TB, f *Frame) []byte {
	t.Helper()
	e := LogEntry{Source: f.Source, TimeNano: f.TimeNano, Line: f.Line, Partial: f.Partial}
	if f.HasPartialMetadata {
		e.PartialLogMetadata = &PartialLogEntryMetadata{Last: f.PartialLast, Id: f.PartialID, Ordinal: f.PartialOrdinal}
	}
	p, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(p))), p...)
}

func sameFrame(a, b *Frame) bool {
	return a.Source == b.Source && a.TimeNano == b.TimeNano && bytes.Equal(a.Line, b.Line) &&
		a.Partial == b.Partial && a.HasPartialMetadata == b.HasPartialMetadata &&
		a.PartialLast == b.PartialLast && a.PartialID == b.PartialID && a.PartialOrdinal == b.PartialOrdinal
}

var frameCases = []Frame{
	{Source: "stdout", TimeNano: 1700000000123456789, Line: []byte("hello world")},
	{Source: "stderr", TimeNano: 1, Line: []byte("é ü 日本 🎉")},
	{Source: "stdout", TimeNano: 1700000000000000000},
	{Source: "stdout", TimeNano: 5, Line: bytes.Repeat([]byte("x"), 16<<10), Partial: true,
		HasPartialMetadata: true, PartialID: "abc123", PartialOrdinal: 1},
	{Source: "stdout", TimeNano: 5, Line: []byte("tail"), Partial: true,
		HasPartialMetadata: true, PartialID: "abc123", PartialOrdinal: 2, PartialLast: true},
	{Source: "stdout", TimeNano: -7, Line: []byte("negative time"), HasPartialMetadata: true, PartialOrdinal: -3},
	{Source: "weird", TimeNano: 9, Line: []byte{0, 0xff, '\n'}},
}

func TestFrameRoundTripMatchesGeneratedCode(t *testing.T) {
	for i, want := range frameCases {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			ours := AppendFrame(nil, &want)
			ref := generatedFrame(t, &want)
			if !bytes.Equal(ours, ref) {
				t.Fatalf("AppendFrame differs from generated Marshal:\n ours %x\n ref  %x", ours, ref)
			}
			var got Frame
			d := NewFrameDecoder(bytes.NewReader(ours), 0)
			if err := d.Decode(&got); err != nil {
				t.Fatal(err)
			}
			if !sameFrame(&got, &want) {
				t.Fatalf("decoded %+v, want %+v", got, want)
			}
			if err := d.Decode(&got); err != io.EOF {
				t.Fatalf("after the last frame: %v, want io.EOF", err)
			}
		})
	}
}

func TestFrameEndsLine(t *testing.T) {
	tests := []struct {
		f    Frame
		want bool
	}{
		{Frame{}, true},
		{Frame{Partial: true, HasPartialMetadata: true}, false},
		{Frame{Partial: true, HasPartialMetadata: true, PartialLast: true}, true},
		{Frame{Partial: true}, false},
	}
	for _, tt := range tests {
		if got := tt.f.EndsLine(); got != tt.want {
			t.Errorf("%+v.EndsLine() = %v, want %v", tt.f, got, tt.want)
		}
	}
}

// oneByteReader returns one byte per Read, the worst a FIFO can do.
type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return o.r.Read(p[:1])
}

func TestFrameDecoderSmallReads(t *testing.T) {
	var stream []byte
	for i := range frameCases {
		stream = AppendFrame(stream, &frameCases[i])
	}
	d := NewFrameDecoder(oneByteReader{bytes.NewReader(stream)}, 0)
	for i := range frameCases {
		var got Frame
		if err := d.Decode(&got); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !sameFrame(&got, &frameCases[i]) {
			t.Fatalf("frame %d: got %+v", i, got)
		}
	}
	var f Frame
	if err := d.Decode(&f); err != io.EOF {
		t.Fatalf("got %v, want io.EOF", err)
	}
}

func lines(t *testing.T, d *FrameDecoder) (got []string, errs []error) {
	t.Helper()
	for i := 0; i < 1000; i++ {
		var f Frame
		err := d.Decode(&f)
		if err == io.EOF {
			return got, errs
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		got = append(got, string(f.Line))
	}
	t.Fatal("decoder made no progress")
	return nil, nil
}

func TestFrameDecoderResynchronises(t *testing.T) {
	frame := func(line string) []byte {
		return AppendFrame(nil, &Frame{Source: "stdout", TimeNano: 1700000000000000000, Line: []byte(line)})
	}
	torn := frame("torn-line-that-was-half-read")
	tests := []struct {
		name      string
		stream    []byte
		want      []string
		wantErr   error
		maxFrame  int
		minErrors int
	}{
		{
			name:    "garbage before a frame",
			stream:  append([]byte("\x00\x00\x00\x05garbage!!"), frame("one")...),
			want:    []string{"one"},
			wantErr: ErrCorruptFrame,
		},
		{
			name:    "started mid-frame, as after a plugin restart",
			stream:  append(append(torn[9:], frame("two")...), frame("three")...),
			want:    []string{"two", "three"},
			wantErr: ErrFrameTooLarge,
		},
		{
			name:     "length over the cap",
			stream:   append([]byte{0x7f, 0xff, 0xff, 0xff}, frame("after")...),
			want:     []string{"after"},
			wantErr:  ErrFrameTooLarge,
			maxFrame: 1024,
		},
		{
			name:    "stream ends inside a frame",
			stream:  append(frame("whole"), frame("cut")[:10]...),
			want:    []string{"whole"},
			wantErr: ErrTruncatedFrame,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := lines(t, NewFrameDecoder(bytes.NewReader(tt.stream), tt.maxFrame))
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("lines %q, want %q (errors %v)", got, tt.want, errs)
			}
			if len(errs) == 0 || !errors.Is(errs[0], tt.wantErr) {
				t.Fatalf("errors %v, want first to be %v", errs, tt.wantErr)
			}
		})
	}
}

func TestFrameDecoderKeepsDecodingAfterManyBadFrames(t *testing.T) {
	var stream []byte
	for i := 0; i < 50; i++ {
		stream = append(stream, bytes.Repeat([]byte{byte(i)}, i)...)
		stream = AppendFrame(stream, &Frame{Source: "stderr", TimeNano: int64(i + 1), Line: []byte(fmt.Sprint("line ", i))})
	}
	got, _ := lines(t, NewFrameDecoder(bytes.NewReader(stream), 4096))
	// Garbage can occasionally hide a frame (a run of bytes may parse as a
	// length that swallows it), but every decoded line must be a real one, in
	// order, and nearly all must survive.
	last := -1
	for _, l := range got {
		var n int
		if _, err := fmt.Sscanf(l, "line %d", &n); err != nil || n <= last {
			t.Fatalf("unexpected or out-of-order line %q after %d", l, last)
		}
		last = n
	}
	if len(got) < 45 {
		t.Fatalf("only %d of 50 frames survived the garbage: %q", len(got), got)
	}
}

func FuzzFrameDecode(f *testing.F) {
	for i := range frameCases {
		f.Add(AppendFrame(nil, &frameCases[i]))
	}
	f.Add([]byte{0, 0, 0, 2, 0x0a, 0xff})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		// The payload on its own: whatever the generated code accepts, the
		// hand-written decoder accepts with the same values.
		var ref LogEntry
		if ref.Unmarshal(data) == nil {
			var got Frame
			if err := unmarshalFrame(data, &got, false); err != nil {
				t.Fatalf("generated code accepts %x, ours says %v", data, err)
			}
			want := Frame{Source: ref.Source, TimeNano: ref.TimeNano, Line: ref.Line, Partial: ref.Partial}
			if m := ref.PartialLogMetadata; m != nil {
				want.HasPartialMetadata, want.PartialLast, want.PartialID, want.PartialOrdinal = true, m.Last, m.Id, m.Ordinal
			}
			if !sameFrame(&got, &want) {
				t.Fatalf("decoded %+v, generated code %+v", got, want)
			}
		}
		// The bytes as a stream: no panic, progress on every call, every
		// frame within the cap.
		const maxFrame = 512
		d := NewFrameDecoder(bytes.NewReader(data), maxFrame)
		for calls := 0; ; calls++ {
			if calls > len(data)+1 {
				t.Fatalf("no progress after %d calls on %d bytes", calls, len(data))
			}
			var fr Frame
			err := d.Decode(&fr)
			if err == io.EOF {
				break
			}
			if err == nil && len(fr.Line) > maxFrame {
				t.Fatalf("line of %d bytes from a decoder capped at %d", len(fr.Line), maxFrame)
			}
		}
	})
}

// loopReader replays one buffer forever without allocating.
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p, l.data[l.off:])
	l.off = (l.off + n) % len(l.data)
	return n, nil
}

func benchmarkStream(lineSize int) ([]byte, int) {
	var stream []byte
	n := 0
	for len(stream) < 1<<20 {
		line := bytes.Repeat([]byte("a"), lineSize)
		copy(line, fmt.Sprintf("%d level=info msg=\"request served\" ", n))
		stream = AppendFrame(stream, &Frame{Source: "stdout", TimeNano: 1700000000000000000 + int64(n), Line: line})
		n++
	}
	return stream, n
}

func BenchmarkFrameDecode(b *testing.B) {
	for _, size := range []int{250, 16 << 10} {
		b.Run(fmt.Sprintf("line=%d", size), func(b *testing.B) {
			stream, frames := benchmarkStream(size)
			d := NewFrameDecoder(&loopReader{data: stream}, 0)
			b.SetBytes(int64(len(stream) / frames))
			b.ReportAllocs()
			var f Frame
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := d.Decode(&f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkFrameEncode(b *testing.B) {
	f := Frame{Source: "stdout", TimeNano: 1700000000000000000, Line: bytes.Repeat([]byte("a"), 250)}
	buf := AppendFrame(nil, &f)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = AppendFrame(buf[:0], &f)
	}
}
