package spool

import (
	"fmt"
	"path/filepath"
	"testing"
)

// benchConfig is the default configuration in a temporary directory, with
// a bound large enough that nothing is dropped.
func benchConfig(b *testing.B, policy FsyncPolicy) Config {
	cfg := DefaultConfig()
	cfg.Dir = filepath.Join(b.TempDir(), "spool")
	cfg.Fsync = policy
	cfg.MaxBytes = 64 << 30
	return cfg
}

// BenchmarkAppend appends batches of frameBytes records (about 450 bytes of
// line each) as the dispatcher's overflow does; bytes are frame bytes.
func BenchmarkAppend(b *testing.B) {
	for _, c := range []struct {
		policy FsyncPolicy
		batch  int
	}{
		{FsyncNever, 1}, {FsyncInterval, 1}, {FsyncInterval, 100}, {FsyncAlways, 100},
	} {
		b.Run(fmt.Sprintf("fsync=%s/batch=%d", c.policy, c.batch), func(b *testing.B) {
			s, err := Open(benchConfig(b, c.policy), nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			recs := testRecords(0, c.batch)
			b.SetBytes(int64(c.batch * frameBytes))
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Append(recs...); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAppendParallel appends single records from GOMAXPROCS goroutines.
func BenchmarkAppendParallel(b *testing.B) {
	s, err := Open(benchConfig(b, FsyncInterval), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.SetBytes(frameBytes)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := testRecord(1)
		for pb.Next() {
			if err := s.Append(r); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkReplay reads 64 MiB of spooled records back in batches of about
// 1 MiB (the dispatcher's default batch), from the page cache.
func BenchmarkReplay(b *testing.B) {
	s, err := Open(benchConfig(b, FsyncNever), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const n = 64 << 20 / frameBytes
	recs := testRecords(0, 1024)
	for i := 0; i < n; i += len(recs) {
		if err := s.Append(recs...); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(n * frameBytes)
	b.ReportAllocs()
	for b.Loop() {
		s.Rewind()
		got := 0
		for {
			batch, err := s.Read(1<<20/frameBytes, 1<<20)
			if err != nil {
				b.Fatal(err)
			}
			if len(batch) == 0 {
				break
			}
			got += len(batch)
		}
		if got != n {
			b.Fatalf("replayed %d records, want %d", got, n)
		}
	}
}
