package dockerlog

import (
	"errors"
	"math"
	"testing"
	"time"
)

var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// checkTimestampAgainstStdlib fails when ParseTimestamp disagrees with
// time.Parse(time.RFC3339Nano): same value for every representable instant,
// an error for everything else.
func checkTimestampAgainstStdlib(t *testing.T, s string) {
	t.Helper()
	got, err := ParseTimestamp([]byte(s))
	want, werr := time.Parse(time.RFC3339Nano, s)
	switch {
	case werr != nil:
		if err == nil {
			t.Errorf("ParseTimestamp(%q) = %d, want an error like time.Parse's %v", s, got, werr)
		}
	case want.Before(minTime) || want.After(maxTime):
		if err == nil {
			t.Errorf("ParseTimestamp(%q) = %d, want a range error", s, got)
		}
	case err != nil:
		t.Errorf("ParseTimestamp(%q) error %v, want %d", s, err, want.UnixNano())
	case got != want.UnixNano():
		t.Errorf("ParseTimestamp(%q) = %d, want %d (%v)", s, got, want.UnixNano(), time.Unix(0, got).UTC())
	}
	if err != nil && !errors.Is(err, ErrBadTimestamp) {
		t.Errorf("ParseTimestamp(%q) error %v does not wrap ErrBadTimestamp", s, err)
	}
}

func TestParseTimestamp(t *testing.T) {
	tests := []struct {
		in   string
		want int64 // checked when wantErr is false
		err  bool
	}{
		{in: "1970-01-01T00:00:00Z", want: 0},
		{in: "1970-01-01T00:00:00.000000001Z", want: 1},
		{in: "2024-05-01T12:34:56.123456789Z", want: 1714566896123456789},
		{in: "2024-05-01T12:34:56.1Z", want: 1714566896100000000},
		{in: "2024-05-01T12:34:56.12Z", want: 1714566896120000000},
		{in: "2024-05-01T12:34:56Z", want: 1714566896000000000},
		{in: "2024-05-01T14:34:56.123456789+02:00", want: 1714566896123456789},
		{in: "2024-05-01T07:04:56.123456789-05:30", want: 1714566896123456789},
		{in: "2024-05-01T12:34:56.1234567891234Z", want: 1714566896123456789}, // extra digits truncated
		{in: "2024-02-29T00:00:00Z", want: 1709164800000000000},
		{in: "2000-02-29T23:59:59.999999999Z", want: 951868799999999999},
		{in: "1969-12-31T23:59:59.5Z", want: -500000000},
		{in: "1677-09-21T00:12:43.145224192Z", want: math.MinInt64},
		{in: "2262-04-11T23:47:16.854775807Z", want: math.MaxInt64},
		{in: "2024-05-01T12:34:56,5Z", want: 1714566896500000000}, // comma: slow path
		{in: "1677-09-21T00:12:43.145224191Z", err: true},
		{in: "2262-04-11T23:47:16.854775808Z", err: true},
		{in: "0001-01-01T00:00:00Z", err: true},
		{in: "9999-12-31T23:59:59Z", err: true},
		{in: "2023-02-29T00:00:00Z", err: true},
		{in: "2024-13-01T00:00:00Z", err: true},
		{in: "2024-05-01T24:00:00Z", err: true},
		{in: "2024-05-01T12:60:00Z", err: true},
		{in: "2024-05-01T12:34:60Z", err: true},
		{in: "2024-05-01T12:34:56", err: true},
		{in: "2024-05-01T12:34:56.Z", err: true},
		{in: "2024-05-01 12:34:56Z", err: true},
		{in: "2024-05-01T12:34:56+0200", err: true},
		{in: "2024-05-01T12:34:56ZZ", err: true},
		{in: "", err: true},
		{in: "garbage", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseTimestamp([]byte(tt.in))
			if tt.err {
				if err == nil {
					t.Fatalf("got %d, want an error", got)
				}
			} else if err != nil || got != tt.want {
				t.Fatalf("got %d, %v; want %d", got, err, tt.want)
			}
			checkTimestampAgainstStdlib(t, tt.in)
		})
	}
}

// TestParseTimestampSweep compares with time.Parse over many instants, zones
// and fraction widths, including the days around every month end.
func TestParseTimestampSweep(t *testing.T) {
	layouts := []string{
		time.RFC3339Nano,
		time.RFC3339,
		"2006-01-02T15:04:05.000000000Z07:00", // what dockerd writes
		"2006-01-02T15:04:05.000Z07:00",
		"2006-01-02T15:04:05.0Z07:00",
	}
	zones := []*time.Location{
		time.UTC,
		time.FixedZone("", 2*3600),
		time.FixedZone("", -(5*3600 + 30*60)),
		time.FixedZone("", 23*3600+59*60),
		time.FixedZone("", -(23*3600 + 59*60)),
	}
	n := 0
	for year := 1678; year <= 2261; year += 7 {
		for month := time.January; month <= time.December; month++ {
			for _, day := range []int{1, 28, 29, 30, 31} {
				base := time.Date(year, month, day, 23, 59, 59, 987654321, time.UTC)
				for _, zone := range zones {
					for _, layout := range layouts {
						checkTimestampAgainstStdlib(t, base.In(zone).Format(layout))
						n++
					}
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no case ran")
	}
}

func TestParseTimestampAllocs(t *testing.T) {
	in := []byte("2024-05-01T12:34:56.123456789Z")
	if a := testing.AllocsPerRun(100, func() { _, _ = ParseTimestamp(in) }); a != 0 {
		t.Fatalf("%v allocs per parse, want 0", a)
	}
}

func FuzzParseTimestamp(f *testing.F) {
	for _, s := range []string{
		"2024-05-01T12:34:56.123456789Z",
		"2024-05-01T12:34:56Z",
		"2024-05-01T12:34:56.1+02:00",
		"2024-05-01T12:34:56,1-23:59",
		"1677-09-21T00:12:43.145224192Z",
		"2262-04-11T23:47:16.854775807Z",
		"2024-02-29T00:00:00Z",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkTimestampAgainstStdlib(t, s)
	})
}

func BenchmarkParseTimestamp(b *testing.B) {
	in := []byte("2024-05-01T12:34:56.123456789Z")
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseTimestamp(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseTimestampStdlib(b *testing.B) {
	in := []byte("2024-05-01T12:34:56.123456789Z")
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		t, err := time.Parse(time.RFC3339Nano, string(in))
		if err != nil {
			b.Fatal(err)
		}
		_ = t.UnixNano()
	}
}
