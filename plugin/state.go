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

// NewState uses dir (created if missing) for the records.
func NewState(dir string) (*State, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	return &State{dir: dir}, nil
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
	return s.write(s.path(r.File), b, true)
}

// write replaces path atomically; durable adds the fsyncs that make it
// survive a machine crash, not only a process crash.
func (s *State) write(path string, b []byte, durable bool) error {
	tmp, err := os.CreateTemp(s.dir, ".record-*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(b)
	var serr error
	if durable {
		serr = tmp.Sync()
	}
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if durable {
		return syncDir(s.dir)
	}
	return nil
}

// positionsFile holds, per FIFO, the time of the last line Loki accepted.
// It is rewritten every second without fsync: it has to survive the plugin
// process, and a machine crash restarts the containers anyway.
const positionsFile = "positions"

// SavePositions replaces the saved positions.
func (s *State) SavePositions(pos map[string]int64) error {
	b, err := json.Marshal(pos)
	if err != nil {
		return err
	}
	return s.write(filepath.Join(s.dir, positionsFile), b, false)
}

// LoadPositions returns the saved positions; none when there are none or
// the file is unreadable (then lines are re-sent from the stream's start).
func (s *State) LoadPositions() map[string]int64 {
	pos := map[string]int64{}
	b, err := os.ReadFile(filepath.Join(s.dir, positionsFile))
	if err == nil {
		_ = json.Unmarshal(b, &pos)
	}
	return pos
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
		if strings.HasPrefix(name, ".record-") {
			os.Remove(filepath.Join(s.dir, name)) // a save interrupted by a crash
			continue
		}
		if !strings.HasSuffix(name, ".json") {
			continue
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

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
