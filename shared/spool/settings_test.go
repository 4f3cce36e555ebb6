package spool

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseSettings(t *testing.T) {
	upper := func(k string) string { return strings.ToUpper(strings.ReplaceAll(k, "-", "_")) }
	parse := func(vals map[string]string, policies ...string) (Settings, error) {
		return ParseSettings(func(k string) string { return vals[k] }, upper, "/state/spool", policies...)
	}

	s, err := parse(nil, OverflowBlock, OverflowSpool)
	if err != nil {
		t.Fatal(err)
	}
	if s.Overflow != OverflowBlock || s.Spool.Dir != "/state/spool" || s.Spool.MaxBytes != DefaultMaxBytes ||
		s.Spool.Fsync != FsyncInterval || s.Spool.FsyncInterval != DefaultFsyncInterval || s.Spool.Full != DropOldest {
		t.Fatalf("defaults: %+v", s)
	}

	s, err = parse(map[string]string{"overflow": "spool", "spool-dir": "/x", "spool-max-size": "64m",
		"spool-fsync": "250ms", "spool-full-policy": "refuse"}, OverflowBlock, OverflowSpool)
	if err != nil {
		t.Fatal(err)
	}
	if s.Overflow != OverflowSpool || s.Spool.Dir != "/x" || s.Spool.MaxBytes != 64<<20 ||
		s.Spool.FsyncInterval != 250*time.Millisecond || s.Spool.Full != Refuse {
		t.Fatalf("set: %+v", s)
	}

	// Every bad value is named by what the operator calls its key.
	for _, c := range []struct {
		vals map[string]string
		name string
	}{
		{map[string]string{"overflow": "block"}, "OVERFLOW"}, // not offered to this binary
		{map[string]string{"overflow": "later"}, "OVERFLOW"},
		{map[string]string{"spool-max-size": "lots"}, "SPOOL_MAX_SIZE"},
		{map[string]string{"spool-max-size": "1m"}, "SPOOL_MAX_SIZE"}, // below two segments
		{map[string]string{"spool-fsync": "sometimes"}, "SPOOL_FSYNC"},
		{map[string]string{"spool-fsync": "-1s"}, "SPOOL_FSYNC"},
		{map[string]string{"spool-full-policy": "panic"}, "SPOOL_FULL_POLICY"},
	} {
		_, err := parse(c.vals, OverflowSpool, OverflowDrop)
		if err == nil || !strings.HasPrefix(err.Error(), c.name+": ") || !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%v: got %v, want an error naming %s", c.vals, err, c.name)
		}
	}
}
