package logstore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// rotatedStore writes n lines into files of about 25 lines each.
func rotatedStore(t *testing.T, n int) *Store {
	t.Helper()
	s := newStore(t)
	w := openWriter(t, s, Config{MaxSize: MinMaxSize, MaxFile: 100})
	writeLines(t, w, 0, n)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.dir, testID, currentName+".3")); err != nil {
		t.Fatalf("expected several rotated files: %v", err)
	}
	return s
}

func TestTail(t *testing.T) {
	const n = 200
	s := rotatedStore(t, n)
	cases := []struct {
		tail int
		want []string
	}{
		{-1, lineRange(0, n)},
		{-5, lineRange(0, n)},
		{0, lineRange(0, 0)},
		{1, lineRange(n-1, n)},
		{7, lineRange(n-7, n)},
		{60, lineRange(n-60, n)}, // across rotated files
		{n, lineRange(0, n)},
		{n + 1000, lineRange(0, n)},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.tail), func(t *testing.T) {
			if got := readAll(t, s, ReadConfig{Tail: c.tail}); !slices.Equal(got, c.want) {
				t.Fatalf("tail %d: got %d lines %v", c.tail, len(got), got)
			}
		})
	}
}

func TestSinceUntil(t *testing.T) {
	const n = 100
	s := rotatedStore(t, n)
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Second) }
	cases := []struct {
		name string
		cfg  ReadConfig
		want []string
	}{
		{"since", ReadConfig{Tail: -1, Since: at(40)}, lineRange(40, n)},
		{"since between lines", ReadConfig{Tail: -1, Since: at(40).Add(time.Millisecond)}, lineRange(41, n)},
		{"until", ReadConfig{Tail: -1, Until: at(30)}, lineRange(0, 31)},
		{"window", ReadConfig{Tail: -1, Since: at(10), Until: at(19)}, lineRange(10, 20)},
		{"since after all", ReadConfig{Tail: -1, Since: at(n + 1)}, lineRange(0, 0)},
		{"until before all", ReadConfig{Tail: -1, Until: at(-1)}, lineRange(0, 0)},
		// As Docker: the tail is taken first, then filtered by time.
		{"tail then since", ReadConfig{Tail: 10, Since: at(95)}, lineRange(95, n)},
		{"tail before since", ReadConfig{Tail: 10, Since: at(0)}, lineRange(n-10, n)},
		{"follow without writer", ReadConfig{Tail: -1, Since: at(98), Follow: true}, lineRange(98, n)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := readAll(t, s, c.cfg); !slices.Equal(got, c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
		})
	}
}

func TestSinceIsDroppedAfterFirstMatch(t *testing.T) {
	s := newStore(t)
	w := openWriter(t, s, DefaultConfig())
	for _, i := range []int{1, 5, 3, 2, 6} { // times going backwards after 5
		writeLines(t, w, i, i+1)
	}
	w.Close()
	got := readAll(t, s, ReadConfig{Tail: -1, Since: base.Add(4 * time.Second)})
	if want := []string{lineText(5), lineText(3), lineText(2), lineText(6)}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestReadUnknownContainerIsEmpty(t *testing.T) {
	s := newStore(t)
	for _, cfg := range []ReadConfig{all, {Tail: 10, Follow: true}, {Tail: 0, Follow: true}} {
		if got := readAll(t, s, cfg); len(got) != 0 {
			t.Fatalf("%+v: got %v", cfg, got)
		}
	}
	if entries(s) != 0 {
		t.Fatal("a read of nothing left an entry behind")
	}
}

func TestCloseBeforeReadingEverything(t *testing.T) {
	s := rotatedStore(t, 300)
	rc, err := s.Read(context.Background(), testID, all)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if err := rc.Close(); err != nil {
		t.Fatal(err)
	}
	if entries(s) != 0 {
		t.Fatal("entry left after Close")
	}
}
