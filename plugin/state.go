package plugin

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/logferry/logferry/shared/atomicfile"
)

// State records the open streams on disk. The daemon calls StartLogging once
// per container start and never again: after a plugin crash, these records
// are the only way back to the FIFOs of containers still running.
type State struct {
	dir string
}

// record is one open stream.
type record struct {
	File string `json:"File"`
	Info Info   `json:"Info"`
	// Started is when StartLogging opened the stream (Unix ns).
	Started int64 `json:"Started"`
}

// legacyTempPrefix named the temporary files of a record write before
// package atomicfile did them.
const legacyTempPrefix = ".record-"

// NewState uses dir (created if missing) for the records. It removes the
// temporary files of writes a crash interrupted, under the names of this
// version and of earlier ones: here, before the plugin's socket is open, no
// StartLogging can be writing one. A leftover that cannot be removed is
// harmless (Load skips it) and, as before, does not stop the plugin.
func NewState(dir string) (*State, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	removeTemps(dir)
	return &State{dir: dir}, nil
}

// removeTemps removes, best effort, the temporary files of package
// atomicfile and those of earlier versions in dir.
func removeTemps(dir string) {
	_ = atomicfile.RemoveTemps(dir)
	legacy, _ := filepath.Glob(filepath.Join(dir, legacyTempPrefix+"*"))
	for _, name := range legacy {
		os.Remove(name)
	}
}

func (s *State) path(file string) string {
	sum := sha256.Sum256([]byte(file))
	return filepath.Join(s.dir, hex.EncodeToString(sum[:12])+".json")
}

// Save writes the record for file atomically and durably: it must survive a
// crash that comes right after StartLogging returned.
func (s *State) Save(r record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return atomicfile.Write(s.path(r.File), b, atomicfile.Options{})
}

// Delete removes the record for file; a missing record is not an error.
func (s *State) Delete(file string) error {
	err := os.Remove(s.path(file))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// Load returns every record. Unreadable records are removed and reported in
// the joined error; the others are returned.
func (s *State) Load() ([]record, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	var out []record
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".json") {
			continue // the positions file; temporary files (see NewState)
		}
		b, err := os.ReadFile(filepath.Join(s.dir, name))
		var r record
		if err == nil {
			err = json.Unmarshal(b, &r)
		}
		if err == nil && r.File == "" {
			err = errors.New("no File")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("state record %s: %w", name, err))
			os.Remove(filepath.Join(s.dir, name))
			continue
		}
		out = append(out, r)
	}
	return out, errors.Join(errs...)
}
