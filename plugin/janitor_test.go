package plugin

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logferry/logferry/shared/dockerlog"
	"github.com/logferry/logferry/shared/logopts"
)

func TestCleanRemovesOldAndOversizedCopies(t *testing.T) {
	dir := t.TempDir()
	fs, err := NewFileStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	write := func(id string, age time.Duration, keep bool, lines int) {
		w, err := fs.Open(id, logopts.FileConfig{MaxSize: 1 << 20, MaxFile: 2, KeepFile: keep})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < lines; i++ {
			if err := w.Buffer(&dockerlog.Frame{Source: "stdout", TimeNano: 1, Line: []byte(strings.Repeat("x", 100))}); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		files, _ := filepath.Glob(filepath.Join(dir, id, "*"))
		for _, f := range files {
			if err := os.Chtimes(f, now.Add(-age), now.Add(-age)); err != nil {
				t.Fatal(err)
			}
		}
	}
	id := func(c string) string { return strings.Repeat(c, 64) }
	write(id("a"), 10*24*time.Hour, false, 10) // old: removed
	write(id("b"), 10*24*time.Hour, true, 10)  // old, keep-file: kept
	write(id("c"), time.Hour, false, 10)       // recent: kept
	write(id("d"), 20*24*time.Hour, false, 10) // old but its container is active: kept
	active := func(c string) bool { return c == id("d") }
	n, err := fs.Clean(Retention{MaxAge: 7 * 24 * time.Hour}, active, now)
	if err != nil || n != 1 {
		t.Fatalf("Clean by age: removed %d, %v", n, err)
	}
	exists := func(c string) bool { _, err := os.Stat(filepath.Join(dir, c)); return err == nil }
	if exists(id("a")) || !exists(id("b")) || !exists(id("c")) || !exists(id("d")) {
		t.Fatal("wrong copies removed by age")
	}
	// Over the total, the oldest ended copies go first, keep-file or not.
	write(id("e"), time.Minute, false, 1000)
	var total int64
	_ = filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			total += info.Size()
		}
		return nil
	})
	n, err = fs.Clean(Retention{MaxTotal: total - 1}, active, now) // one copy too many
	if err != nil {
		t.Fatalf("Clean by size: removed %d, %v", n, err)
	}
	if n != 1 || exists(id("b")) || !exists(id("c")) || !exists(id("d")) || !exists(id("e")) {
		t.Fatalf("wrong copies removed by size: %d removed, b=%v c=%v d=%v e=%v", n, exists(id("b")), exists(id("c")), exists(id("d")), exists(id("e")))
	}
}
