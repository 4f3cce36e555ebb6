package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteReplaces(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "positions.json")
	for _, o := range []Options{{}, {NoSync: true}, {Perm: 0o644}} {
		for _, content := range []string{"first", "second, longer", ""} {
			if err := Write(p, []byte(content), o); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(p)
			if err != nil || string(b) != content {
				t.Fatalf("%+v: read %q, %v; want %q", o, b, err, content)
			}
			st, _ := os.Stat(p)
			want := o.Perm
			if want == 0 {
				want = 0o600
			}
			if st.Mode().Perm() != want {
				t.Fatalf("%+v: mode %v, want %v", o, st.Mode().Perm(), want)
			}
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("%d entries in the directory, want only the file", len(entries))
	}
}

func TestWriteFailsLeavesOld(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := Write(p, []byte("old"), Options{}); err != nil {
		t.Fatal(err)
	}
	// A directory where the file should go: the rename fails.
	bad := filepath.Join(dir, "sub")
	if err := os.Mkdir(bad, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bad, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(bad, []byte("new"), Options{}); err == nil {
		t.Fatal("replacing a non-empty directory succeeded")
	}
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Fatalf("old file now %q", b)
	}
	matches, _ := filepath.Glob(filepath.Join(dir, TempPrefix+"*"))
	if len(matches) != 0 {
		t.Fatalf("temporary files left: %v", matches)
	}
}

func TestRemoveTemps(t *testing.T) {
	dir := t.TempDir()
	left := filepath.Join(dir, TempPrefix+"f-123.tmp")
	if err := os.WriteFile(left, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	keep := filepath.Join(dir, "f")
	if err := os.WriteFile(keep, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := RemoveTemps(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(left); !os.IsNotExist(err) {
		t.Fatal("a leftover temporary file was kept")
	}
	if _, err := os.Stat(keep); err != nil {
		t.Fatal("a real file was removed")
	}
}
