package lokitest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Environment variables BinaryPath reads.
const (
	// EnvLokiBin names a Loki binary to use instead of scripts/loki's.
	EnvLokiBin = "LOKI_BIN"
	// EnvNoBuild, set to 1, forbids building Loki when it is not cached.
	EnvNoBuild = "LOGFERRY_NO_LOKI_BUILD"
)

// buildTime is how long a cold Loki build may take: a test whose deadline
// is nearer fails at once instead of timing out halfway.
const buildTime = 30 * time.Minute

// exitNotBuilt is scripts/loki path's exit status for "not built and
// building is not allowed".
const exitNotBuilt = 3

var binary struct {
	mu   sync.Mutex
	path string
}

// BinaryPath returns the Loki binary for tests:
//
//   - $LOKI_BIN if set;
//   - else the binary `scripts/loki path` prints, which it builds if it is
//     not cached (~15-20 minutes cold; the build's progress goes to stderr).
//
// A missing binary is a test failure, not a skip, so missing coverage is
// seen. Exceptions: with -short the test is skipped and nothing is built;
// with LOGFERRY_NO_LOKI_BUILD=1, or a test deadline too close for a build,
// the test fails at once, saying how to build Loki.
func BinaryPath(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv(EnvLokiBin); bin != "" {
		if st, err := os.Stat(bin); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			t.Fatalf("lokitest: %s=%s is not an executable file", EnvLokiBin, bin)
		}
		return bin
	}

	binary.mu.Lock()
	defer binary.mu.Unlock()
	if binary.path != "" {
		return binary.path
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatalf("lokitest: %v", err)
	}
	script := filepath.Join(root, "scripts", "loki")

	// First ask without building.
	path, stderr, err := runScript(script, true)
	if err == nil {
		binary.path = path
		return path
	}
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != exitNotBuilt {
		t.Fatalf("lokitest: %s path: %v\n%s", script, err, stderr)
	}

	howTo := "build it with `scripts/loki build` (~15-20 minutes and ~7 GB of Go caches the first time), or set LOKI_BIN to a Loki v3.7.8 binary"
	switch {
	case testing.Short():
		t.Skipf("lokitest: Loki is not built and -short does not build it; %s", howTo)
	case os.Getenv(EnvNoBuild) == "1":
		t.Fatalf("lokitest: Loki is not built and %s=1 forbids building it here; %s", EnvNoBuild, howTo)
	}
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if deadline, ok := d.Deadline(); ok && time.Until(deadline) < buildTime {
			t.Fatalf("lokitest: Loki is not built and this test's deadline (-timeout) is %v away, too close for a build; %s, or run with -timeout 40m",
				time.Until(deadline).Round(time.Second), howTo)
		}
	}

	t.Logf("lokitest: Loki is not built; building it now with %s path (~15-20 minutes cold, progress on stderr)", script)
	path, stderr, err = runScript(script, false)
	if err != nil {
		t.Fatalf("lokitest: building Loki with %s path: %v\n%s", script, err, stderr)
	}
	binary.path = path
	return path
}

// runScript runs `scripts/loki path` and returns the path it prints. When
// building is allowed its progress goes to this process's stderr.
func runScript(script string, noBuild bool) (path, stderr string, err error) {
	cmd := exec.Command(script, "path")
	var out, errBuf bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &errBuf
	cmd.Env = os.Environ()
	if noBuild {
		cmd.Env = append(cmd.Env, EnvNoBuild+"=1")
	} else {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Run(); err != nil {
		return "", errBuf.String(), err
	}
	path = strings.TrimSpace(out.String())
	if !filepath.IsAbs(path) {
		return "", errBuf.String(), fmt.Errorf("%s path printed %q, not an absolute path", script, path)
	}
	return path, errBuf.String(), nil
}
