package loki

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ErrInvalidConfig is wrapped by every configuration error.
var ErrInvalidConfig = errors.New("invalid Loki client configuration")

// Config is one Loki endpoint configuration. The field comments give the
// log-opt each field is read from (see the logopts package); defaults follow
// Grafana's Loki Docker driver where it has the option.
type Config struct {
	URL      string // loki-url, e.g. http://127.0.0.1:3100/loki/api/v1/push
	TenantID string // loki-tenant-id, sent as X-Scope-OrgID

	BatchSize  int           // loki-batch-size: bytes of log lines per push
	BatchWait  time.Duration // loki-batch-wait: longest an entry waits for a batch to fill
	Timeout    time.Duration // loki-timeout: one push, from connect to response
	MinBackoff time.Duration // loki-min-backoff
	MaxBackoff time.Duration // loki-max-backoff
	Retries    int           // loki-retries: retries of one batch; 0 retries forever

	TLSCAFile             string // loki-tls-ca-file
	TLSCertFile           string // loki-tls-cert-file
	TLSKeyFile            string // loki-tls-key-file
	TLSServerName         string // loki-tls-server-name
	TLSInsecureSkipVerify bool   // loki-tls-insecure-skip-verify
	ProxyURL              string // loki-proxy-url
	BearerTokenFile       string // loki-bearer-token-file (logferry's own): read before every push, so a rotated token needs no restart

	// QueueBytes bounds the line bytes held in memory waiting for Loki
	// (loki-queue-size, logferry's own), besides the one batch in flight.
	// Past it the overflow policy decides.
	QueueBytes int
}

// Defaults.
const (
	DefaultBatchSize  = 1 << 20
	DefaultBatchWait  = time.Second
	DefaultTimeout    = 10 * time.Second
	DefaultMinBackoff = 500 * time.Millisecond
	DefaultMaxBackoff = 5 * time.Minute
	DefaultRetries    = 10
	DefaultQueueBytes = 64 << 20
)

// DefaultConfig returns a Config with every default set and no URL.
func DefaultConfig() Config {
	return Config{
		BatchSize:  DefaultBatchSize,
		BatchWait:  DefaultBatchWait,
		Timeout:    DefaultTimeout,
		MinBackoff: DefaultMinBackoff,
		MaxBackoff: DefaultMaxBackoff,
		Retries:    DefaultRetries,
		QueueBytes: DefaultQueueBytes,
	}
}

func configError(key, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %w", key, fmt.Sprintf(format, args...), ErrInvalidConfig)
}

// Validate checks every field and names the log-opt of the first bad one.
// Error text never contains the URL's password.
func (c Config) Validate() error {
	if c.URL == "" {
		return configError("loki-url", "no Loki URL given")
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		// url.Error repeats the input, which may hold a password.
		return configError("loki-url", "not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return configError("loki-url", "scheme must be http or https, not %q", u.Scheme)
	}
	if u.Host == "" {
		return configError("loki-url", "no host in %q", redactURL(u))
	}
	if c.BatchSize <= 0 {
		return configError("loki-batch-size", "must be positive, got %d", c.BatchSize)
	}
	if c.BatchWait <= 0 {
		return configError("loki-batch-wait", "must be positive, got %s", c.BatchWait)
	}
	if c.Timeout <= 0 {
		return configError("loki-timeout", "must be positive, got %s", c.Timeout)
	}
	if c.MinBackoff <= 0 {
		return configError("loki-min-backoff", "must be positive, got %s", c.MinBackoff)
	}
	if c.MaxBackoff < c.MinBackoff {
		return configError("loki-max-backoff", "%s is below loki-min-backoff %s", c.MaxBackoff, c.MinBackoff)
	}
	if c.Retries < 0 {
		return configError("loki-retries", "must be 0 (forever) or more, got %d", c.Retries)
	}
	if c.QueueBytes < c.BatchSize {
		return configError("loki-queue-size", "%d bytes is below loki-batch-size %d", c.QueueBytes, c.BatchSize)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return configError("loki-tls-cert-file", "loki-tls-cert-file and loki-tls-key-file go together")
	}
	if c.ProxyURL != "" {
		p, err := url.Parse(c.ProxyURL)
		if err != nil || p.Host == "" {
			return configError("loki-proxy-url", "not a URL with a host")
		}
	}
	if strings.ContainsAny(c.TenantID, "\r\n") {
		return configError("loki-tenant-id", "must not contain line breaks")
	}
	return nil
}

// Key identifies the configuration: entries for configurations with equal
// keys can share one Dispatcher.
func (c Config) Key() string {
	return strings.Join([]string{
		c.URL, c.TenantID,
		strconv.Itoa(c.BatchSize), c.BatchWait.String(), c.Timeout.String(),
		c.MinBackoff.String(), c.MaxBackoff.String(), strconv.Itoa(c.Retries),
		c.TLSCAFile, c.TLSCertFile, c.TLSKeyFile, c.TLSServerName,
		strconv.FormatBool(c.TLSInsecureSkipVerify), c.ProxyURL, c.BearerTokenFile,
		strconv.Itoa(c.QueueBytes),
	}, "\x00")
}

// Endpoint returns the URL without credentials or query, for logs and
// metric labels.
func (c Config) Endpoint() string {
	u, err := url.Parse(c.URL)
	if err != nil {
		return "invalid-url"
	}
	return redactURL(u)
}

func redactURL(u *url.URL) string {
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	return r.String()
}
