package loki

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"
)

// errTokenFile is wrapped by every error reading the bearer token file.
var errTokenFile = errors.New("loki-bearer-token-file")

// maxTokenBytes bounds what is read of a token file: a JWT or an opaque
// token is far smaller, and a file the operator named by mistake (a log, a
// device) must not be read whole before every push.
const maxTokenBytes = 16 << 10

// tokenFile is the bearer token file the operator named. It is read before
// every push, as Prometheus reads a credentials file per request: a token
// rotated by any means (rename over it, rewrite in place with the same size
// and modification time, a Kubernetes projected volume's symlink swap) is
// sent from the next push on, with no restart and no cache to go stale.
// One small read per push costs far less than the push itself.
type tokenFile struct {
	path string
}

// read returns the token: the file's content without surrounding white
// space. Its errors wrap errTokenFile and name the path, never the content.
func (f tokenFile) read() (string, error) {
	fh, err := os.Open(f.path)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errTokenFile, err)
	}
	defer fh.Close()
	raw, err := io.ReadAll(io.LimitReader(fh, maxTokenBytes+1))
	if err != nil {
		return "", fmt.Errorf("%w: reading %s: %w", errTokenFile, f.path, err)
	}
	if len(raw) > maxTokenBytes {
		return "", fmt.Errorf("%w: %s is larger than %d bytes: not a token", errTokenFile, f.path, maxTokenBytes)
	}
	tok := strings.TrimSpace(string(raw))
	if tok == "" {
		return "", fmt.Errorf("%w: %s is empty", errTokenFile, f.path)
	}
	// A line break inside would let the file's author add header lines;
	// Go's transport refuses such a value too, with a less clear error.
	if strings.ContainsFunc(tok, unicode.IsControl) {
		return "", fmt.Errorf("%w: %s holds a control character (more than one line?)", errTokenFile, f.path)
	}
	return tok, nil
}
