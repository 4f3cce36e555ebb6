package sidecar

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

// ErrLogPathOutside is wrapped by checkLogPath's errors: the Engine named a
// json-file log that is not the container's own file in the containers
// directory.
var ErrLogPathOutside = errors.New("log path outside the containers directory")

// refusedOutside is the reason of logferry_sidecar_files_refused_total for
// ErrLogPathOutside.
const refusedOutside = "outside_containers_dir"

// checkLogPath accepts logPath, the json-file log the Engine named for the
// container id (mapped to this process's view, see Router.hostPath), only
// when it is <containersDir>/<id>/<id>-json.log. Which host file is read is
// the operator's choice (containers-dir), not the Engine's answer: a spoofed
// or compromised Engine, or a container id that is not an id, must not
// point the sidecar, which runs as root, at another file.
//
// The comparison is on cleaned paths, but a ".." in logPath is refused even
// when it cleans away: the kernel resolves "<id>/.." through a symlink at
// <id>, to another place than the lexical one. What is in the container's
// directory, a symlink or a FIFO, is the tailer's to refuse (tail.ErrRefused).
func checkLogPath(containersDir, id, logPath string) error {
	if !validContainerID(id) {
		return fmt.Errorf("%w: container id %q is not 64 lowercase hex digits (log path %q)", ErrLogPathOutside, id, logPath)
	}
	if containersDir == "" {
		return fmt.Errorf("%w: no containers directory (log path %q)", ErrLogPathOutside, logPath)
	}
	want := filepath.Join(filepath.Clean(containersDir), id, id+"-json.log")
	switch {
	case logPath == "":
		return fmt.Errorf("%w: the Engine gave no log path, want %s", ErrLogPathOutside, want)
	case slices.Contains(strings.Split(filepath.ToSlash(logPath), "/"), ".."):
		return fmt.Errorf("%w: log path %q has a \"..\", want %s", ErrLogPathOutside, logPath, want)
	case filepath.Clean(logPath) != want:
		return fmt.Errorf("%w: log path %q is not %s", ErrLogPathOutside, logPath, want)
	}
	return nil
}

// validContainerID reports whether id is a full container id as Docker
// makes them: 64 lowercase hex digits.
func validContainerID(id string) bool {
	if len(id) != 64 {
		return false
	}
	for i := range len(id) {
		if c := id[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
