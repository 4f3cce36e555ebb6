package plugin

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/logferry/logferry/shared/atomicfile"
)

// A crash during a record or positions write leaves a temporary file, whole
// or torn: the next process removes it, whether an earlier version named it
// or package atomicfile did, and loads only the real records.
func TestStateRemovesInterruptedWrites(t *testing.T) {
	dir := t.TempDir()
	s1, err := NewState(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := record{File: "/run/docker/logging/abc", Info: Info{ContainerID: "abc"}, Started: 42}
	if err := s1.Save(want); err != nil {
		t.Fatal(err)
	}
	if err := s1.SavePositions(map[string]int64{want.File: 7}); err != nil {
		t.Fatal(err)
	}
	whole, err := json.Marshal(record{File: "/run/docker/logging/torn", Info: Info{ContainerID: "torn"}})
	if err != nil {
		t.Fatal(err)
	}
	leftovers := []struct {
		name    string
		content []byte
	}{
		{legacyTempPrefix + "123456", whole},
		{legacyTempPrefix + "654321", whole[:len(whole)/2]},
		{atomicfile.TempPrefix + "0123abcd.json-123456.tmp", whole},
		{atomicfile.TempPrefix + positionsFile + "-123456.tmp", []byte(`{"/run/docker/logging/abc": 9`)},
	}
	for _, l := range leftovers {
		if err := os.WriteFile(filepath.Join(dir, l.name), l.content, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	s2, err := NewState(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leftovers {
		if _, err := os.Stat(filepath.Join(dir, l.name)); !os.IsNotExist(err) {
			t.Errorf("leftover %s not removed: %v", l.name, err)
		}
	}
	got, err := s2.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].File != want.File || got[0].Started != want.Started || got[0].Info.ContainerID != "abc" {
		t.Fatalf("loaded %+v, want only %+v", got, want)
	}
	if pos := s2.LoadPositions(); len(pos) != 1 || pos[want.File] != 7 {
		t.Fatalf("positions %v, want the saved ones", pos)
	}
}
