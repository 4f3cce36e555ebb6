package dockerlog

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// ErrBadTimestamp is returned (wrapped) by ParseTimestamp for a value that is
// not an RFC 3339 time, or one outside the range of int64 Unix nanoseconds
// (1677-09-21 to 2262-04-11), which Loki cannot store anyway.
var ErrBadTimestamp = errors.New("bad timestamp")

var errTimestampRange = fmt.Errorf("%w: outside the int64 Unix nanosecond range", ErrBadTimestamp)

// ParseTimestamp parses a timestamp in the form Docker writes into json-file
// lines and in front of logs-stream messages (time.RFC3339Nano, e.g.
// 2024-05-01T12:34:56.123456789Z) into Unix nanoseconds.
//
// It is called once per log line on both the json-file and the logs-stream
// paths, so the common shapes (any number of fraction digits or none, "Z" or a
// ±hh:mm offset) are parsed by hand without allocating. Anything else goes to
// time.Parse(time.RFC3339Nano, ...), so the accepted set and the result are
// exactly those of time.Parse, except that values outside the int64 range
// are an error instead of a wrapped-around UnixNano.
func ParseTimestamp(b []byte) (int64, error) {
	if n, ok := parseTimestampFast(b); ok {
		return n, nil
	}
	return parseTimestampSlow(b)
}

// parseTimestampFast accepts a subset of what time.Parse's own RFC 3339 fast
// path accepts and computes the same instant; ok is false for anything it
// does not recognise, including out-of-range years, so that the slow path
// decides and produces the error.
func parseTimestampFast(b []byte) (int64, bool) {
	// "2006-01-02T15:04:05" + at least "Z".
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' {
		return 0, false
	}
	year, ok1 := digits4(b[0:4])
	month, ok2 := digits2(b[5:7])
	day, ok3 := digits2(b[8:10])
	hour, ok4 := digits2(b[11:13])
	minute, ok5 := digits2(b[14:16])
	sec, ok6 := digits2(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return 0, false
	}
	// Years far outside the int64 range are left to the slow path, which
	// reports them; the fine-grained range check happens in unixNano.
	if year < 1677 || year > 2262 || month < 1 || month > 12 || day < 1 ||
		day > daysInMonth(month, year) || hour > 23 || minute > 59 || sec > 59 {
		return 0, false
	}

	i := 19
	var nsec int64
	if i+1 < len(b) && b[i] == '.' && isDigit(b[i+1]) {
		i++
		// time.Parse keeps the first nine digits and ignores the rest.
		n := 0
		for ; i < len(b) && isDigit(b[i]); i++ {
			if n < 9 {
				nsec = nsec*10 + int64(b[i]-'0')
				n++
			}
		}
		nsec *= pow10[9-n]
	}

	var offset int64
	switch rest := b[i:]; {
	case len(rest) == 1 && rest[0] == 'Z':
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		oh, okh := digits2(rest[1:3])
		om, okm := digits2(rest[4:6])
		if !okh || !okm || oh > 23 || om > 59 {
			return 0, false
		}
		offset = int64(oh*3600 + om*60)
		if rest[0] == '-' {
			offset = -offset
		}
	default:
		return 0, false
	}

	secs := daysFromCivil(year, month, day)*86400 + int64(hour*3600+minute*60+sec) - offset
	return unixNano(secs, nsec)
}

func parseTimestampSlow(b []byte) (int64, error) {
	t, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrBadTimestamp, err)
	}
	n, ok := unixNano(t.Unix(), int64(t.Nanosecond()))
	if !ok {
		return 0, errTimestampRange
	}
	return n, nil
}

// unixNano combines seconds and nanoseconds (0 <= nsec < 1e9) without
// overflowing, reporting whether the result fits an int64.
func unixNano(sec, nsec int64) (int64, bool) {
	const (
		second = int64(time.Second)
		maxSec = math.MaxInt64 / second // 9223372036
	)
	switch {
	case sec > maxSec || sec < -maxSec-1:
		return 0, false
	case sec == maxSec && nsec > math.MaxInt64%second:
		return 0, false
	case sec == -maxSec-1:
		// sec*1e9 alone would overflow: go through sec+1.
		if nsec < second+math.MinInt64%second {
			return 0, false
		}
		return (sec+1)*second + (nsec - second), true
	}
	return sec*second + nsec, true
}

// daysFromCivil returns the number of days from 1970-01-01 to the given
// proleptic Gregorian date, counting years from March so that the leap day
// is the last day of a year (the usual era-of-400-years arithmetic).
// year must be >= 1.
func daysFromCivil(year, month, day int) int64 {
	y := int64(year)
	if month <= 2 {
		y--
	}
	era := y / 400
	yoe := y - era*400
	mp := int64((month + 9) % 12)
	doy := (153*mp+2)/5 + int64(day) - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

func daysInMonth(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

var pow10 = [...]int64{1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func digits2(b []byte) (int, bool) {
	d0, d1 := b[0]-'0', b[1]-'0'
	return int(d0)*10 + int(d1), d0 <= 9 && d1 <= 9
}

func digits4(b []byte) (int, bool) {
	hi, ok1 := digits2(b[0:2])
	lo, ok2 := digits2(b[2:4])
	return hi*100 + lo, ok1 && ok2
}
