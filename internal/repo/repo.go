// Package repo finds the logferry repository from a test's working
// directory, for test helpers that run its scripts.
package repo

import (
	"errors"
	"os"
	"path/filepath"
)

// ErrNoRoot: no directory above the working directory holds go.mod and the
// marker.
var ErrNoRoot = errors.New("cannot find the logferry repository root above the working directory")

// Root walks up from the working directory (go test sets it to the
// package's directory) to the directory holding go.mod and marker, a path
// relative to the root such as "scripts/loki".
func Root(marker string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if exists(filepath.Join(dir, "go.mod")) && exists(filepath.Join(dir, marker)) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.Join(ErrNoRoot, errors.New("looked for go.mod and "+marker))
		}
		dir = parent
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
