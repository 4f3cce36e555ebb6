package loki

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// client does one push at a time to one endpoint. It owns its HTTP
// transport; credentials never leave it (not in errors, logs or labels).
type client struct {
	http     *http.Client
	url      string // without userinfo
	user     string
	password string
	hasBasic bool
	bearer   string
	tenant   string
	timeout  time.Duration
}

func newClient(cfg Config) (*client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, configError("loki-url", "not a URL")
	}
	c := &client{tenant: cfg.TenantID, timeout: cfg.Timeout}
	if u.User != nil {
		c.user = u.User.Username()
		c.password, _ = u.User.Password()
		c.hasBasic = true
		u.User = nil
	}
	c.url = u.String()
	if cfg.BearerTokenFile != "" {
		tok, err := os.ReadFile(cfg.BearerTokenFile)
		if err != nil {
			return nil, configError("loki-bearer-token-file", "%v", err)
		}
		c.bearer = strings.TrimSpace(string(tok))
		if c.bearer == "" {
			return nil, configError("loki-bearer-token-file", "the file is empty")
		}
	}
	tlsCfg := &tls.Config{ServerName: cfg.TLSServerName, InsecureSkipVerify: cfg.TLSInsecureSkipVerify} //nolint:gosec // the operator asked for it
	if cfg.TLSCAFile != "" {
		pem, err := os.ReadFile(cfg.TLSCAFile)
		if err != nil {
			return nil, configError("loki-tls-ca-file", "%v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, configError("loki-tls-ca-file", "no PEM certificate in %s", cfg.TLSCAFile)
		}
		tlsCfg.RootCAs = pool
	}
	if cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, configError("loki-tls-cert-file", "%v", err)
		}
		tlsCfg.Certificates = []tls.Certificate{cert}
	}
	transport := &http.Transport{
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   cfg.Timeout,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		TLSClientConfig:     tlsCfg,
		TLSHandshakeTimeout: cfg.Timeout,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	if cfg.ProxyURL != "" {
		p, err := url.Parse(cfg.ProxyURL)
		if err != nil {
			return nil, configError("loki-proxy-url", "not a URL")
		}
		transport.Proxy = http.ProxyURL(p)
	}
	c.http = &http.Client{Transport: transport}
	return c, nil
}

func (c *client) close() { c.http.CloseIdleConnections() }

// pushResult is the outcome of one push.
type pushResult struct {
	err        error
	status     string // HTTP code, or "network"
	retryable  bool
	retryAfter time.Duration
	reason     string // drop reason for a refused batch
	duration   time.Duration
}

// maxErrorBody bounds how much of Loki's error answer is read.
const maxErrorBody = 4 << 10

func (c *client) push(ctx context.Context, body []byte) pushResult {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return pushResult{err: err, status: "request", reason: "bad_request", duration: time.Since(start)}
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("User-Agent", "logferry")
	if c.tenant != "" {
		req.Header.Set("X-Scope-OrgID", c.tenant)
	}
	if c.hasBasic {
		req.SetBasicAuth(c.user, c.password)
	}
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return pushResult{err: fmt.Errorf("push to Loki: %w", err), status: "network", retryable: true, duration: time.Since(start)}
	}
	defer resp.Body.Close()
	res := pushResult{status: strconv.Itoa(resp.StatusCode), duration: time.Since(start)}
	if resp.StatusCode/100 == 2 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return res
	}
	text, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	msg := strings.TrimSpace(string(text))
	res.err = fmt.Errorf("loki answered %d: %s", resp.StatusCode, msg)
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode/100 == 5:
		res.retryable = true
		res.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	default:
		res.reason = reasonFor(resp.StatusCode, msg)
	}
	res.duration = time.Since(start)
	return res
}

// parseRetryAfter reads seconds or an HTTP date; 0 when absent or invalid.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// reasons maps fragments of Loki's error texts to a bounded set of drop
// reasons, checked in order. The texts come from Loki's validation errors.
var reasons = []struct{ fragment, reason string }{
	{"too far behind", "too_far_behind"},
	{"out of order", "out_of_order"},
	{"timestamp too old", "too_old"},
	{"too far in the future", "too_new"},
	{"greater than max", "too_new"},
	{"line too long", "line_too_long"},
	{"structured metadata", "structured_metadata"},
	{"maximum active stream limit", "stream_limit"},
	{"stream limit", "stream_limit"},
	{"rate limit", "rate_limited"},
	{"label", "invalid_labels"},
	{"tenant", "tenant"},
	{"org id", "tenant"},
}

// reasonFor turns a refused push into a drop reason: a known Loki error, or
// the status code class so the label stays bounded.
func reasonFor(status int, msg string) string {
	lower := strings.ToLower(msg)
	for _, r := range reasons {
		if strings.Contains(lower, r.fragment) {
			return r.reason
		}
	}
	switch status {
	case http.StatusBadRequest:
		return "bad_request"
	case http.StatusUnauthorized, http.StatusForbidden:
		return "unauthorized"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusRequestEntityTooLarge:
		return "too_large"
	default:
		return "http_" + strconv.Itoa(status/100) + "xx"
	}
}
