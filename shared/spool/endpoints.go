package spool

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/logferry/logferry/shared/atomicfile"
	"github.com/logferry/logferry/shared/loki"
)

// EndpointFileName is the file in each endpoint's spool directory that says,
// without credentials, which endpoint the spool belongs to: a spool left by
// an earlier run can be found again.
const EndpointFileName = "endpoint.json"

// Endpoint is what EndpointFileName holds.
type Endpoint struct {
	URL    string `json:"url"` // loki.Config.Endpoint(): no credentials, no query
	Tenant string `json:"tenant"`
}

// EndpointDir is the directory, under base, of the spool of cfg's endpoint,
// named by a hash of its whole transport configuration: the URL, the
// tenant, the bearer token file, the TLS files and settings and the proxy.
// Entries spooled under one credential or TLS identity are replayed with
// the same one, never with another configuration's that happens to name the
// same URL. Configurations that differ only in batching or retries share a
// spool. One that sets no credential, TLS or proxy keeps the name of the
// spools of earlier versions (URL and tenant only), so they are found again.
func EndpointDir(base string, cfg loki.Config) string {
	id := cfg.URL + "\x00" + cfg.TenantID
	if t := transportKey(cfg); t != "" {
		id += "\x00" + t
	}
	h := sha256.Sum256([]byte(id))
	return filepath.Join(base, hex.EncodeToString(h[:8]))
}

// transportKey is what, besides URL and tenant, decides where and as whom
// entries are sent; "" when none of it is set.
func transportKey(c loki.Config) string {
	parts := []string{c.BearerTokenFile, c.TLSCAFile, c.TLSCertFile, c.TLSKeyFile, c.TLSServerName, c.ProxyURL}
	if c.TLSInsecureSkipVerify {
		parts = append(parts, "insecure-skip-verify")
	}
	if strings.Join(parts, "") == "" {
		return ""
	}
	return strings.Join(parts, "\x00")
}

// NewEndpointSpools returns a loki.SpoolSet that opens, under base, one
// spool per endpoint (see EndpointDir) with cfg (its Dir is replaced), and
// writes the endpoint's file into each. Dispatchers of one endpoint share
// its open spool: the directory lock allows one. metrics and log may be nil.
func NewEndpointSpools(base string, cfg Config, metrics *Metrics, spoolMetrics *loki.SpoolMetrics, log *slog.Logger) *loki.SpoolSet {
	return loki.NewSpoolSet(
		func(c loki.Config) string { return EndpointDir(base, c) },
		func(dir string, c loki.Config) (loki.Spool, error) {
			sc := cfg
			sc.Dir = dir
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, fmt.Errorf("spool directory: %w", err)
			}
			b, err := json.Marshal(Endpoint{URL: c.Endpoint(), Tenant: c.TenantID})
			if err != nil {
				return nil, err
			}
			if err := atomicfile.Write(filepath.Join(dir, EndpointFileName), append(b, '\n'), atomicfile.Options{Perm: 0o600}); err != nil {
				return nil, fmt.Errorf("spool: writing the endpoint file: %w", err)
			}
			l := log
			if l != nil {
				l = l.With("endpoint", c.Endpoint(), "tenant", c.TenantID)
			}
			s, err := Open(sc, metrics, l)
			if err != nil {
				return nil, err
			}
			return s, nil
		}, spoolMetrics)
}

// Unacked reports whether the spool directory dir, not open, holds
// segments with records not acknowledged; a directory that does not exist
// holds none.
func Unacked(dir string) (bool, error) {
	acked, err := readAck(dir)
	if errors.Is(err, fs.ErrNotExist) {
		acked = 0
	} else if err != nil && !errors.Is(err, errCorruptAck) {
		return false, err
	}
	segs, err := listSegments(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, g := range segs {
		if g.size > 0 && g.end() > acked {
			return true, nil
		}
	}
	return false, nil
}
