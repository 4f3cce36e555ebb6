package positions

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"go.uber.org/goleak"

	"github.com/logferry/logferry/shared/atomicfile"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func pos(content string, off int64) Position {
	var id Identity
	id.Dev, id.Inode = 2049, 1234567
	id.SetFingerprint([]byte(content))
	return Position{File: id, Offset: off}
}

func TestStoreRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 0 {
		t.Fatalf("new store has %d entries", s.Len())
	}
	want := map[string]Position{
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef": pos(`{"log":"hello\n","stream":"stdout","time":"2024-05-01T12:00:00.000000001Z"}`, 81),
		"with space and %percent":   pos("x", 1),
		"unicodé\n\x00":             pos(strings.Repeat("y", 1000), 1<<40+5),
		"empty-file-at-offset-zero": {File: Identity{Dev: 1, Inode: 2}},
	}
	for id, p := range want {
		if err := s.Set(id, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s2.Len() != len(want) {
		t.Fatalf("reopened store has %d entries, want %d", s2.Len(), len(want))
	}
	for id, p := range want {
		got, ok := s2.Get(id)
		if !ok || got != p {
			t.Errorf("Get(%q) = %+v, %v; want %+v", id, got, ok, p)
		}
	}
	if _, ok := s2.Get("missing"); ok {
		t.Error("Get of a missing id succeeded")
	}

	s2.Delete("with space and %percent")
	s2.Delete("never there")
	if err := s2.Flush(); err != nil {
		t.Fatal(err)
	}
	s3, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s3.Get("with space and %percent"); ok || s3.Len() != len(want)-1 {
		t.Errorf("after Delete: %d entries, deleted one present=%v", s3.Len(), ok)
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func TestFlushOnlyWhenChanged(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Path()); !os.IsNotExist(err) {
		t.Fatalf("Flush of an unchanged empty store wrote a file (%v)", err)
	}
	p := pos("abc", 3)
	if err := s.Set("c1", p); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	ino := inode(t, s.Path())

	steps := []struct {
		name    string
		change  func()
		rewrite bool
	}{
		{"nothing", func() {}, false},
		{"same value", func() { _ = s.Set("c1", p) }, false},
		{"delete missing", func() { s.Delete("nope") }, false},
		{"new offset", func() { _ = s.Set("c1", pos("abc", 4)) }, true},
		{"delete", func() { s.Delete("c1") }, true},
	}
	for _, st := range steps {
		st.change()
		wrote, err := s.FlushChanged()
		if err != nil {
			t.Fatal(err)
		}
		now := inode(t, s.Path())
		if rewrote := now != ino; rewrote != st.rewrite || wrote != st.rewrite {
			t.Errorf("%s: rewrote=%v, FlushChanged said %v, want %v", st.name, rewrote, wrote, st.rewrite)
		}
		ino = now
	}
}

func TestSetRejectsInvalid(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name string
		id   string
		p    Position
	}{
		{"empty id", "", Position{}},
		{"long id", strings.Repeat("a", maxIDLen+1), Position{}},
		{"negative offset", "c", Position{Offset: -1}},
		{"fingerprint too long", "c", Position{File: Identity{FingerprintLen: FingerprintSize + 1}}},
		{"fingerprint of nothing", "c", Position{File: Identity{Fingerprint: [16]byte{1}}}},
	}
	for _, tc := range bad {
		if err := s.Set(tc.id, tc.p); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Set = %v, want ErrInvalid", tc.name, err)
		}
	}
	if s.Len() != 0 {
		t.Errorf("rejected positions were stored: %d", s.Len())
	}
}

// A crash during Flush leaves a temporary file, torn or whole, beside the
// old positions file: Open reads the old file and removes the leftover,
// whether an earlier version named it or package atomicfile did.
func TestTornTempFileIgnored(t *testing.T) {
	valid := Encode(map[string]Position{"c1": pos("old", 10)})
	newer := Encode(map[string]Position{"c1": pos("new", 20)})
	cases := []struct {
		name string
		temp []byte
	}{
		{"empty", nil},
		{"torn", newer[:len(newer)/2]},
		{"whole but not renamed", newer},
		{"garbage", []byte("\x00\xff garbage")},
	}
	temps := []struct{ name, file string }{
		{"legacy", legacyTempPrefix + "123456.tmp"},
		{"atomicfile", atomicfile.TempPrefix + FileName + "-123456.tmp"},
	}
	for _, tc := range cases {
		for _, tn := range temps {
			t.Run(tc.name+"/"+tn.name, func(t *testing.T) {
				dir := t.TempDir()
				if err := os.WriteFile(filepath.Join(dir, FileName), valid, 0o600); err != nil {
					t.Fatal(err)
				}
				tmp := filepath.Join(dir, tn.file)
				if err := os.WriteFile(tmp, tc.temp, 0o600); err != nil {
					t.Fatal(err)
				}
				s, err := Open(dir, Options{})
				if err != nil {
					t.Fatal(err)
				}
				if got, _ := s.Get("c1"); got != pos("old", 10) {
					t.Errorf("got %+v, want the old position", got)
				}
				if _, err := os.Stat(tmp); !os.IsNotExist(err) {
					t.Errorf("leftover temp file not removed: %v", err)
				}
			})
		}
	}
}

func TestCorruptFile(t *testing.T) {
	good := Encode(map[string]Position{"c1": pos("a", 1), "c2": pos("b", 2)})
	cases := []struct {
		name string
		data []byte
	}{
		{"empty", []byte{}},
		{"other format", []byte(`{"c1": 12}`)},
		{"header only", []byte(header)},
		{"torn in an entry", good[:len(header)+20]},
		{"torn in the trailer", good[:len(good)-3]},
		{"no final newline", good[:len(good)-1]},
		{"bit flip", flip(good, len(header)+5)},
		{"appended", append(append([]byte{}, good...), "c3 1 2 0 00000000000000000000000000000000 0\n"...)},
		{"duplicate id", withCRC(header+"c1 1 2 0 00000000000000000000000000000000 0\nc1 1 2 0 00000000000000000000000000000000 5\n", 2)},
		{"count mismatch", withCRC(header+"c1 1 2 0 00000000000000000000000000000000 0\n", 2)},
		{"negative offset", withCRC(header+"c1 1 2 0 00000000000000000000000000000000 -1\n", 1)},
		{"leading zero", withCRC(header+"c1 01 2 0 00000000000000000000000000000000 0\n", 1)},
		{"fingerprint length", withCRC(header+"c1 1 2 257 00000000000000000000000000000000 0\n", 1)},
		{"short fingerprint", withCRC(header+"c1 1 2 3 0000 0\n", 1)},
		{"bad escape", withCRC(header+"c%zz 1 2 0 00000000000000000000000000000000 0\n", 1)},
		{"needless escape", withCRC(header+"c%41 1 2 0 00000000000000000000000000000000 0\n", 1)},
		{"extra field", withCRC(header+"c1 1 2 0 00000000000000000000000000000000 0 7\n", 1)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, FileName)
			if err := os.WriteFile(path, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Open(dir, Options{})
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
				t.Fatalf("Open = %v, want ErrCorrupt naming %s", err, path)
			}

			s, err := Open(dir, Options{ResetCorrupt: true})
			if err != nil {
				t.Fatal(err)
			}
			if s.Len() != 0 {
				t.Errorf("reset store has %d entries", s.Len())
			}
			aside := s.Recovered()
			if !strings.HasPrefix(aside, path+".corrupt-") {
				t.Fatalf("Recovered() = %q", aside)
			}
			if b, err := os.ReadFile(aside); err != nil || !bytes.Equal(b, tc.data) {
				t.Errorf("moved-aside file: %v, content kept=%v", err, bytes.Equal(b, tc.data))
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Errorf("corrupt file still in place: %v", err)
			}
			// The store works after the reset.
			if err := s.Set("c9", pos("z", 1)); err != nil {
				t.Fatal(err)
			}
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}
			if s2, err := Open(dir, Options{}); err != nil || s2.Len() != 1 {
				t.Errorf("reopen after reset: %v", err)
			}
		})
	}
}

// Every strict prefix of a file, which is what a non-atomic write could
// leave, is rejected; only the whole file is accepted.
func TestEveryTruncationRejected(t *testing.T) {
	good := Encode(map[string]Position{"c1": pos("a", 1), "c2": pos("bb", 2), "c3": pos("ccc", 3)})
	for n := 0; n < len(good); n++ {
		if _, err := Parse(good[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("prefix of %d/%d bytes: Parse = %v", n, len(good), err)
		}
	}
	if m, err := Parse(good); err != nil || len(m) != 3 {
		t.Fatalf("whole file: %v", err)
	}
}

func TestConcurrentSetFlush(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 200 {
				id := fmt.Sprintf("c%d-%d", w, i%10)
				if err := s.Set(id, pos("abc", int64(i))); err != nil {
					t.Error(err)
				}
				if i%7 == 0 {
					s.Delete(id)
				}
				if i%25 == 0 {
					if err := s.Flush(); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range s.IDs() {
		a, _ := s.Get(id)
		b, ok := s2.Get(id)
		if !ok || a != b {
			t.Errorf("%s: memory %+v, file %+v", id, a, b)
		}
	}
	if s.Len() != s2.Len() {
		t.Errorf("memory %d entries, file %d", s.Len(), s2.Len())
	}
}

func TestIdentityMatching(t *testing.T) {
	content := []byte(strings.Repeat(`{"log":"line\n","stream":"stdout","time":"2024-05-01T12:00:00.000000001Z"}`+"\n", 10))
	var full, small, empty Identity
	full.SetFingerprint(content)
	small.SetFingerprint(content[:40])
	empty.SetFingerprint(nil)
	cases := []struct {
		name   string
		id     Identity
		prefix []byte
		want   bool
	}{
		{"full against itself", full, content, true},
		{"full covers 256 bytes", full, content[:FingerprintSize], true},
		{"full needs 256 bytes", full, content[:FingerprintSize-1], false},
		{"small file grown later", small, content, true},
		{"small against exact", small, content[:40], true},
		{"other content", full, append([]byte("x"), content[1:]...), false},
		{"small other content", small, []byte("different content here, long enough......"), false},
		{"empty matches anything", empty, content, true},
	}
	for _, tc := range cases {
		if got := tc.id.MatchesContent(tc.prefix); got != tc.want {
			t.Errorf("%s: MatchesContent = %v, want %v", tc.name, got, tc.want)
		}
	}
	if full.FingerprintLen != FingerprintSize || small.FingerprintLen != 40 || empty.FingerprintLen != 0 {
		t.Errorf("lengths %d %d %d", full.FingerprintLen, small.FingerprintLen, empty.FingerprintLen)
	}
	if empty.Fingerprint != [16]byte{} {
		t.Error("the fingerprint of no bytes is not zero")
	}
	id := Identity{Dev: 1, Inode: 2}
	if !id.SameInode(1, 2) || id.SameInode(1, 3) || id.SameInode(2, 2) || (Identity{}).SameInode(0, 0) {
		t.Error("SameInode")
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte{}, b...)
	c[i] ^= 1
	return c
}

// withCRC appends a trailer with a correct checksum, so that the parser's
// other checks are what rejects the body.
func withCRC(body string, count int) []byte {
	return fmt.Appendf([]byte(body), "end %d %08x\n", count, crc32Of([]byte(body)))
}

func FuzzParse(f *testing.F) {
	f.Add(Encode(nil))
	f.Add(Encode(map[string]Position{"c1": pos("a", 1), "id with space%": pos(strings.Repeat("z", 300), 99)}))
	f.Add([]byte(header + "c1 1 2 0 00000000000000000000000000000000 0\nend 1 00000000\n"))
	f.Add(withCRC(header+"c%20 1 2 1 00000000000000000000000000000000 0\n", 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		// What parses is exactly what Encode writes: one spelling per file.
		enc := Encode(m)
		if !bytes.Equal(enc, b) {
			t.Fatalf("accepted a non-canonical file:\n%q\nre-encoded:\n%q", b, enc)
		}
		for id, p := range m {
			if err := validate(id, p); err != nil {
				t.Fatalf("parsed an invalid entry %q: %v", id, err)
			}
		}
	})
}

// FuzzParseEntry reaches the entry parser, which FuzzParse rarely gets past
// the checksum to.
func FuzzParseEntry(f *testing.F) {
	f.Add([]byte("c1 1 2 0 00000000000000000000000000000000 0"))
	f.Add([]byte("id%20with%25 18446744073709551615 2 256 0123456789abcdef0123456789abcdef 9223372036854775807"))
	f.Add([]byte("c%zz 1 2 3 0000 -1"))
	f.Fuzz(func(t *testing.T, line []byte) {
		id, p, err := parseEntry(line)
		if err != nil {
			return
		}
		if err := validate(id, p); err != nil {
			t.Fatalf("parsed an invalid entry: %v", err)
		}
		enc := Encode(map[string]Position{id: p})
		want := header + string(line) + "\n"
		if !strings.HasPrefix(string(enc), want) {
			t.Fatalf("entry %q re-encodes as %q", line, enc)
		}
	})
}

// BenchmarkFlush writes 1,000 containers' positions durably, which the
// sidecar does about once a second.
func BenchmarkFlush(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	for i := range 1000 {
		if err := s.Set(fmt.Sprintf("%064x", i), pos("content", int64(i))); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(Encode(s.m))))
	i := 0
	for b.Loop() {
		i++
		_ = s.Set("0", pos("content", int64(i)))
		if err := s.Flush(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	m := map[string]Position{}
	for i := range 1000 {
		m[fmt.Sprintf("%064x", i)] = pos("content", int64(i))
	}
	data := Encode(m)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}
