package loki

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/golang/snappy"
)

// client does one push at a time to one endpoint. It owns its HTTP
// transport; credentials never leave it (not in errors, logs or labels),
// and every error it returns names the endpoint as Config.Endpoint() does:
// no userinfo, no query.
type client struct {
	http     *http.Client
	url      string // where pushes go: without userinfo, with the query
	endpoint string // Config.Endpoint(), for errors
	user     string
	password string
	hasBasic bool
	token    *tokenFile // nil without loki-bearer-token-file
	tenant   string
	timeout  time.Duration
	// secrets are texts an answer may echo that must not reach an error:
	// the password, the basic credentials as sent, the query.
	secrets []string
}

func newClient(cfg Config) (*client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, configError("loki-url", "not a URL")
	}
	c := &client{tenant: cfg.TenantID, timeout: cfg.Timeout, endpoint: cfg.Endpoint()}
	if u.User != nil {
		c.user = u.User.Username()
		c.password, _ = u.User.Password()
		c.hasBasic = true
		u.User = nil
		c.secrets = append(c.secrets, c.password, base64.StdEncoding.EncodeToString([]byte(c.user+":"+c.password)))
	}
	c.url = u.String()
	if u.RawQuery != "" {
		c.secrets = append(c.secrets, u.RawQuery)
		for _, vs := range u.Query() {
			for _, v := range vs {
				// Short values (a flag, a number) are no credential, and
				// hiding them would garble every message.
				if len(v) >= 6 {
					c.secrets = append(c.secrets, v, url.QueryEscape(v))
				}
			}
		}
	}
	if cfg.BearerTokenFile != "" {
		// Read now so that a bad file fails at once, naming the option;
		// it is read again before every push (tokenFile).
		c.token = &tokenFile{path: cfg.BearerTokenFile}
		if _, err := c.token.read(); err != nil {
			return nil, fmt.Errorf("%w: %w", err, ErrInvalidConfig)
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
		if p.User != nil {
			if pw, ok := p.User.Password(); ok {
				c.secrets = append(c.secrets, pw)
			}
		}
	}
	c.http = &http.Client{
		Transport: transport,
		// No redirect is followed: following one turns a push into a
		// body-less GET whose 200 would read as delivered (301, 302,
		// 303), or sends the body and the credentials to a host the
		// operator did not name (307, 308). The 3xx itself comes back.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

func (c *client) close() { c.http.CloseIdleConnections() }

// Failure reasons of a push (logferry_loki_push_failures_total), besides
// the drop reasons of a refusal.
const (
	failNetwork    = "network"
	failTokenFile  = "token_file"
	failRedirect   = "redirect"
	failAuth       = "unauthorized"
	failUnexpected = "unexpected_status"
	failRateLimit  = "rate_limited"
	failServer     = "server_error"
	failRefused    = "refused"
)

// pushResult is the outcome of one push.
type pushResult struct {
	err        error  // nil: Loki acknowledged the push (200 or 204)
	status     string // HTTP code, "network", or "token_file" (no request made)
	retryable  bool
	retryAfter time.Duration
	failure    string // why the push failed, when err is not nil
	reason     string // drop reason for a refused batch (not retryable)
	// A 400: what Loki kept (refusalPartial: all but refused).
	kind      refusalKind
	refused   []refusal
	truncated bool // the 400's text was longer than maxRefusalBody
	duration  time.Duration
}

const (
	// maxErrorBody bounds how much of an error answer is read, and how
	// much of any answer goes into an error.
	maxErrorBody = 4 << 10
	// maxRefusalBody bounds how much of a 400 is read to count what Loki
	// refused: Loki groups identical errors, so even a batch of many bad
	// entries is named in far less.
	maxRefusalBody = 1 << 20
	// maxHostText bounds the redirect host quoted in an error.
	maxHostText = 255
)

// pushError is an error of the client: its text names the endpoint and is
// stripped of secrets; it wraps the cause for errors.Is and errors.As.
type pushError struct {
	text  string
	cause error
}

func (e *pushError) Error() string { return e.text }
func (e *pushError) Unwrap() error { return e.cause }

// errorf makes a pushError from the message and its cause (nil: none).
// A *url.Error cause is unwrapped: its text repeats the request's URL,
// query included.
func (c *client) errorf(token string, cause error, format string, args ...any) error {
	var ue *url.Error
	if errors.As(cause, &ue) {
		cause = ue.Err
	}
	var text []string
	if format != "" {
		text = append(text, fmt.Sprintf(format, args...))
	}
	if cause != nil {
		text = append(text, cause.Error())
	}
	return &pushError{text: "push to " + c.endpoint + ": " + c.redact(strings.Join(text, ": "), token), cause: cause}
}

// redact replaces the request's secrets in s: what an echoing server or a
// library's message could carry.
func (c *client) redact(s, token string) string {
	s = strings.ReplaceAll(s, c.url, c.endpoint)
	for _, secret := range c.secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "REDACTED")
		}
	}
	if token != "" {
		s = strings.ReplaceAll(s, token, "REDACTED")
	}
	return s
}

func (c *client) push(ctx context.Context, body []byte) pushResult {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	token := ""
	if c.token != nil {
		var err error
		if token, err = c.token.read(); err != nil {
			// Retried: the operator may be replacing the file right now.
			return pushResult{err: c.errorf("", err, ""), status: failTokenFile, retryable: true,
				failure: failTokenFile, duration: time.Since(start)}
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return pushResult{err: c.errorf(token, err, ""), status: "request", failure: failRefused, reason: "bad_request", duration: time.Since(start)}
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("User-Agent", "logferry")
	if c.tenant != "" {
		req.Header.Set("X-Scope-OrgID", c.tenant)
	}
	if c.hasBasic {
		req.SetBasicAuth(c.user, c.password)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return pushResult{err: c.errorf(token, err, ""), status: failNetwork, retryable: true, failure: failNetwork, duration: time.Since(start)}
	}
	defer resp.Body.Close()
	res := c.answer(resp, token)
	res.duration = time.Since(start)
	return res
}

// answer reads Loki's answer to a push. Only 200 and 204 acknowledge it.
//
// Retried with backoff (and, when the retries run out, spooled or counted
// as retries_exhausted, like a 5xx), because the operator can fix the
// cause and nothing should be lost meanwhile:
//   - 3xx: loki-url names something that moved (a proxy's http->https
//     redirect, a changed path). The redirect is not followed (see
//     newClient) and is no acknowledgement; the error names the host it
//     points to, never its userinfo or query.
//   - 401, 403 (and 407 from loki-proxy-url): credentials being rotated,
//     or a token file replaced a little after the password changed.
//   - another 2xx, or a code Loki never sends: not Loki, or a proxy that
//     acknowledges on Loki's behalf without saying it delivered.
//   - 429, 5xx: Loki is busy or down; Retry-After is honoured.
//
// A 400 is Loki's validation answer (see refusal.go): it kept what it does
// not name. Any other 4xx refuses the batch, which is dropped and counted.
func (c *client) answer(resp *http.Response, token string) pushResult {
	code := resp.StatusCode
	res := pushResult{status: strconv.Itoa(code)}
	if code == http.StatusOK || code == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return res
	}
	limit := int64(maxErrorBody)
	if code == http.StatusBadRequest {
		limit = maxRefusalBody
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	res.truncated = int64(len(raw)) > limit
	raw = raw[:min(int64(len(raw)), limit)]
	text := strings.TrimSpace(string(raw))
	msg := text
	if len(msg) > maxErrorBody {
		msg = strings.ToValidUTF8(msg[:maxErrorBody], "") + "..."
	}
	res.retryable = true
	switch {
	case code/100 == 3:
		res.failure = failRedirect
		res.err = c.errorf(token, nil, "Loki answered %d, a redirect to %s: logferry follows no redirect (one is no acknowledgement); set loki-url to where Loki answers", code, redirectHost(resp))
	case code == http.StatusUnauthorized || code == http.StatusForbidden || code == http.StatusProxyAuthRequired:
		res.failure = failAuth
		res.err = c.errorf(token, nil, "Loki answered %d (check the credentials: basic auth in loki-url, loki-bearer-token-file): %s", code, msg)
	case code == http.StatusTooManyRequests || code/100 == 5:
		res.failure = failServer
		if code == http.StatusTooManyRequests {
			res.failure = failRateLimit
		}
		res.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		res.err = c.errorf(token, nil, "Loki answered %d: %s", code, msg)
	case code == http.StatusBadRequest:
		res.retryable = false
		res.failure = failRefused
		res.kind, res.refused = parseRefusal(text)
		res.reason = reasonFor(code, text)
		res.err = c.errorf(token, nil, "Loki answered %d: %s", code, msg)
	case code/100 == 4:
		res.retryable = false
		res.failure = failRefused
		res.reason = reasonFor(code, text)
		res.err = c.errorf(token, nil, "Loki answered %d: %s", code, msg)
	default:
		res.failure = failUnexpected
		res.err = c.errorf(token, nil, "Loki answered %d, which acknowledges nothing (only 200 and 204 do; is loki-url Loki's push endpoint?): %s", code, msg)
	}
	return res
}

// redirectHost is the host a 3xx points to, quoted, for the error: never
// the Location's userinfo, path or query.
func redirectHost(resp *http.Response) string {
	loc, err := resp.Location()
	switch {
	case errors.Is(err, http.ErrNoLocation):
		return "no Location"
	case err != nil:
		return "an unreadable Location"
	}
	host := loc.Host
	if len(host) > maxHostText {
		host = host[:maxHostText] + "..."
	}
	return "host " + strconv.Quote(host)
}

// probe pushes stream's labels with no entry. Loki parses every stream's
// labels before it stores anything, and a stream without entries stores
// nothing: a 204 says the labels parse, a 400 "couldn't parse labels" that
// they do not, and nothing is ever stored twice.
func (c *client) probe(ctx context.Context, stream string) pushResult {
	req := PushRequest{Streams: []StreamAdapter{{Labels: stream}}}
	raw, err := req.Marshal()
	if err != nil {
		return pushResult{err: c.errorf("", err, "encoding a probe"), status: "request", failure: failRefused, reason: ReasonEncode}
	}
	return c.push(ctx, snappy.Encode(nil, raw))
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

// reasonFor is the drop reason of a batch refused whole: a 400 that is not
// Loki's validation answer (see refusal.go), or another 4xx, named by its
// status so that the label stays bounded.
func reasonFor(status int, text string) string {
	switch status {
	case http.StatusBadRequest:
		if strings.HasPrefix(text, labelsRefusalPrefix) {
			return "invalid_labels"
		}
		return "bad_request"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusRequestEntityTooLarge:
		return "too_large"
	default:
		return "http_" + strconv.Itoa(status)
	}
}
