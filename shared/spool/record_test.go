package spool

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"io"
	"math"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/logferry/logferry/shared/loki"
)

var recordCases = []Record{
	{},
	{Stream: `{container_name="web", source="stdout"}`, TimeNano: 1_700_000_000_123_456_789, Line: "hello"},
	{Stream: `{a="b"}`, TimeNano: -1, Line: "négatif ✓"},
	{Stream: `{a="b"}`, TimeNano: math.MinInt64, Line: strings.Repeat("x", 300)},
	{Stream: `{a="b"}`, TimeNano: math.MaxInt64, Line: "with\nnewline\x00and NUL",
		Metadata: []loki.LabelPairAdapter{{Name: "container_id", Value: strings.Repeat("f", 64)}, {Name: "", Value: ""}}},
	{Stream: "", Line: string(magic[:]) + "a line that holds the magic"},
}

func TestPayloadRoundTrip(t *testing.T) {
	for i, want := range recordCases {
		b := appendFrame(nil, &want)
		if len(b) != headerSize+payloadSize(&want) {
			t.Errorf("case %d: frame of %d bytes, payloadSize says %d", i, len(b), headerSize+payloadSize(&want))
		}
		var got Record
		if err := decodePayload(b[headerSize:], &got); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("case %d: decoded %+v, want %+v", i, got, want)
		}
	}
}

func TestDecodePayloadRejects(t *testing.T) {
	good := appendFrame(nil, &recordCases[4])[headerSize:]
	cases := map[string][]byte{
		"empty":            {},
		"version":          append([]byte{2}, good[1:]...),
		"truncated":        good[:len(good)-1],
		"trailing":         append(append([]byte{}, good...), 0),
		"huge count":       {1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"string too long":  {1, 0, 5, 'a'},
		"bad time varint":  {1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"count over input": {1, 0, 0, 0, 2, 0, 0},
	}
	for name, p := range cases {
		var r Record
		if err := decodePayload(p, &r); err == nil {
			t.Errorf("%s: decoded %+v", name, r)
		}
	}
}

// frames returns the frames of recs, concatenated, and each frame's size.
func frames(recs ...Record) ([]byte, []int) {
	var b []byte
	var sizes []int
	for i := range recs {
		n := len(b)
		b = appendFrame(b, &recs[i])
		sizes = append(sizes, len(b)-n)
	}
	return b, sizes
}

type damageCount struct {
	corrupt, corruptBytes, torn, tornBytes int64
}

// readAll runs a recordReader over data and returns the decoded records
// and the damage it reported.
func readAll(t *testing.T, r io.Reader) ([]Record, damageCount) {
	t.Helper()
	var d damageCount
	rr := newRecordReader(r, make([]byte, 0, 32), func(off, n int64, torn bool) {
		if torn {
			d.torn++
			d.tornBytes += n
		} else {
			d.corrupt++
			d.corruptBytes += n
		}
	})
	var out []Record
	for {
		p, _, err := rr.next()
		if err == io.EOF {
			return out, d
		}
		if err != nil {
			t.Fatal(err)
		}
		var rec Record
		if err := decodePayload(p, &rec); err != nil {
			t.Fatalf("intact frame with a bad payload: %v", err)
		}
		out = append(out, rec)
	}
}

func TestRecordReaderDamage(t *testing.T) {
	recs := make([]Record, 6)
	for i := range recs {
		recs[i] = Record{Stream: `{job="t"}`, TimeNano: int64(i), Line: strings.Repeat(string(rune('a'+i)), 40*(i+1))}
	}
	data, sizes := frames(recs...)
	at := func(i int) int { // offset of frame i
		n := 0
		for _, s := range sizes[:i] {
			n += s
		}
		return n
	}
	flip := func(offs ...int) []byte {
		b := bytes.Clone(data)
		for _, o := range offs {
			b[o] ^= 0x5a
		}
		return b
	}
	all := []int{0, 1, 2, 3, 4, 5}
	cases := []struct {
		name string
		data []byte
		want []int // indexes of records delivered
		dmg  damageCount
	}{
		{"intact", data, all, damageCount{}},
		{"payload byte", flip(at(2) + headerSize + 5), []int{0, 1, 3, 4, 5}, damageCount{corrupt: 1, corruptBytes: int64(sizes[2])}},
		{"payload crc", flip(at(2) + 9), []int{0, 1, 3, 4, 5}, damageCount{corrupt: 1, corruptBytes: int64(sizes[2])}},
		{"length", flip(at(3) + 5), []int{0, 1, 2, 4, 5}, damageCount{corrupt: 1, corruptBytes: int64(sizes[3])}},
		{"magic", flip(at(1)), []int{0, 2, 3, 4, 5}, damageCount{corrupt: 1, corruptBytes: int64(sizes[1])}},
		{"header crc", flip(at(4) + 14), []int{0, 1, 2, 3, 5}, damageCount{corrupt: 1, corruptBytes: int64(sizes[4])}},
		{"first frame", flip(2), []int{1, 2, 3, 4, 5}, damageCount{corrupt: 1, corruptBytes: int64(sizes[0])}},
		{"two apart", flip(at(1)+20, at(4)+6), []int{0, 2, 3, 5}, damageCount{corrupt: 2, corruptBytes: int64(sizes[1] + sizes[4])}},
		{"two adjacent headers", flip(at(1)+6, at(2)+6), []int{0, 3, 4, 5}, damageCount{corrupt: 1, corruptBytes: int64(sizes[1] + sizes[2])}},
		{"last payload", flip(at(5) + headerSize + 1), []int{0, 1, 2, 3, 4}, damageCount{corrupt: 1, corruptBytes: int64(sizes[5])}},
		{"last header is torn", flip(at(5) + 6), []int{0, 1, 2, 3, 4}, damageCount{torn: 1, tornBytes: int64(sizes[5])}},
		{"torn payload", data[:len(data)-7], []int{0, 1, 2, 3, 4}, damageCount{torn: 1, tornBytes: int64(sizes[5] - 7)}},
		{"torn header", data[:at(5)+9], []int{0, 1, 2, 3, 4}, damageCount{torn: 1, tornBytes: 9}},
		{"torn magic", data[:at(5)+2], []int{0, 1, 2, 3, 4}, damageCount{torn: 1, tornBytes: 2}},
		{"garbage before", append([]byte("garbage!"), data...), all, damageCount{corrupt: 1, corruptBytes: 8}},
		{"zeros after", append(bytes.Clone(data), make([]byte, 4096)...), all, damageCount{torn: 1, tornBytes: 4096}},
		{"zeros between", append(append(bytes.Clone(data[:at(3)]), make([]byte, 100)...), data[at(3):]...), all, damageCount{corrupt: 1, corruptBytes: 100}},
		{"only garbage", bytes.Repeat([]byte{0xfe, 'L', 'F'}, 1000), nil, damageCount{torn: 1, tornBytes: 3000}},
		{"empty", nil, nil, damageCount{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, r := range []struct {
				name string
				r    io.Reader
			}{{"whole", bytes.NewReader(c.data)}, {"byte by byte", iotest.OneByteReader(bytes.NewReader(c.data))}} {
				got, dmg := readAll(t, r.r)
				var want []Record
				for _, i := range c.want {
					want = append(want, recs[i])
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s: got %d records, want %v", r.name, len(got), c.want)
				}
				if dmg != c.dmg {
					t.Errorf("%s: damage %+v, want %+v", r.name, dmg, c.dmg)
				}
			}
		})
	}
}

func TestRecordReaderLargeRecord(t *testing.T) {
	big := Record{Stream: `{a="b"}`, Line: strings.Repeat("z", 3*readChunk+17)}
	data, _ := frames(recordCases[1], big, recordCases[2])
	got, dmg := readAll(t, bytes.NewReader(data))
	if want := []Record{recordCases[1], big, recordCases[2]}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %d records, want 3", len(got))
	}
	if dmg != (damageCount{}) {
		t.Fatalf("damage %+v", dmg)
	}
}

func TestRecordReaderReadError(t *testing.T) {
	data, _ := frames(recordCases...)
	rr := newRecordReader(iotest.TimeoutReader(bytes.NewReader(data)), nil, nil)
	for {
		_, _, err := rr.next()
		if err == io.EOF {
			t.Fatal("read error not reported")
		}
		if err != nil {
			if err != iotest.ErrTimeout {
				t.Fatalf("got %v, want the reader's error", err)
			}
			return
		}
	}
}

// FuzzRecordReader: arbitrary bytes never panic and never stall the reader,
// every payload returned carries its checksum, and every byte is accounted
// for: in an intact frame or in a damaged run.
func FuzzRecordReader(f *testing.F) {
	data, sizes := frames(recordCases...)
	f.Add(data)
	f.Add(data[:len(data)-3])
	flipped := bytes.Clone(data)
	flipped[sizes[0]+6] ^= 1
	f.Add(flipped)
	f.Add(append([]byte("junk"), data...))
	f.Add(bytes.Repeat(magic[:], 20))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var damaged int64
		lastEnd := int64(0)
		rr := newRecordReader(bytes.NewReader(data), make([]byte, 0, 64), func(off, n int64, torn bool) {
			if off < lastEnd || n <= 0 || off+n > int64(len(data)) {
				t.Fatalf("damaged run [%d,+%d) overlaps what came before (%d) or leaves the input (%d)", off, n, lastEnd, len(data))
			}
			damaged += n
			lastEnd = off + n
		})
		var intact int64
		for calls := 0; ; calls++ {
			if calls > len(data)+1 {
				t.Fatalf("no end after %d calls on %d bytes", calls, len(data))
			}
			p, end, err := rr.next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			start := end - int64(headerSize+len(p))
			if start < lastEnd {
				t.Fatalf("frame at %d overlaps what came before (%d)", start, lastEnd)
			}
			h := data[start : start+headerSize]
			if !bytes.Equal(h[:4], magic[:]) || int(binary.LittleEndian.Uint32(h[4:8])) != len(p) ||
				binary.LittleEndian.Uint32(h[8:12]) != crc32.Checksum(p, castagnoli) ||
				binary.LittleEndian.Uint32(h[12:16]) != crc32.Checksum(h[:12], castagnoli) ||
				!bytes.Equal(data[start+headerSize:end], p) {
				t.Fatalf("frame at %d does not check", start)
			}
			intact += end - start
			lastEnd = end
			var r Record
			if decodePayload(p, &r) == nil {
				// What decodes re-encodes to something that decodes the same.
				var again Record
				if err := decodePayload(appendFrame(nil, &r)[headerSize:], &again); err != nil || !reflect.DeepEqual(again, r) {
					t.Fatalf("re-encoding %+v gives %+v, %v", r, again, err)
				}
			}
		}
		if intact+damaged != int64(len(data)) {
			t.Fatalf("%d bytes intact + %d damaged != %d", intact, damaged, len(data))
		}
	})
}

// TestRecordOfJoinsMetadata: a spooled entry keeps its shared and its own
// metadata, in the order the push sends them.
func TestRecordOfJoinsMetadata(t *testing.T) {
	shared := []loki.LabelPairAdapter{{Name: "container_id", Value: "c1"}}
	own := []loki.LabelPairAdapter{{Name: "seq", Value: "7"}}
	for _, c := range []struct {
		e    loki.Entry
		want []loki.LabelPairAdapter
	}{
		{loki.Entry{Line: "a"}, nil},
		{loki.Entry{Line: "b", SharedMetadata: shared}, shared},
		{loki.Entry{Line: "c", Metadata: own}, own},
		{loki.Entry{Line: "d", SharedMetadata: shared, Metadata: own}, append(append([]loki.LabelPairAdapter{}, shared...), own...)},
	} {
		r := RecordOf(c.e)
		b := appendFrame(nil, &r)
		var back Record
		if err := decodePayload(b[headerSize:], &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back.Entry().Metadata, c.want) && !(len(back.Entry().Metadata) == 0 && len(c.want) == 0) {
			t.Errorf("%s: metadata %v, want %v", c.e.Line, back.Entry().Metadata, c.want)
		}
	}
}
