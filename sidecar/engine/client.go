// Package engine is the sidecar's view of the Docker Engine API: it lists and
// inspects containers, follows container events across daemon restarts, and
// follows a container's logs stream when its log driver cannot be read from
// disk. It owns the one API client of the process; nothing else talks to the
// daemon.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/moby/moby/client"
)

// Defaults for the retry backoff of Events and Follow.
const (
	// DefaultMinBackoff is the first wait after a subscription or a logs
	// stream failed. A since-based resume loses nothing by waiting, so
	// the wait only keeps a failing daemon from being hammered.
	DefaultMinBackoff = 100 * time.Millisecond
	// DefaultMaxBackoff bounds the wait: a restarted daemon is noticed
	// within this long.
	DefaultMaxBackoff = 10 * time.Second
)

// ErrInvalidOption is wrapped by New's errors for a bad Option.
var ErrInvalidOption = errors.New("engine: invalid option")

// Option sets an optional setting of a Client.
type Option func(*Client)

// WithLogger makes the Client log retries and skipped stream bytes to l.
// Without it the Client logs nothing.
func WithLogger(l *slog.Logger) Option {
	return func(c *Client) { c.log = l }
}

// WithBackoff replaces the retry backoff bounds (DefaultMinBackoff,
// DefaultMaxBackoff). The wait doubles from minWait to maxWait on each
// failure in a row.
func WithBackoff(minWait, maxWait time.Duration) Option {
	return func(c *Client) { c.minBackoff, c.maxBackoff = minWait, maxWait }
}

// Client is the sidecar's Engine API client. It is safe for concurrent use:
// one Client serves every container of the host. Call Close when done.
type Client struct {
	api        *client.Client
	log        *slog.Logger
	minBackoff time.Duration
	maxBackoff time.Duration
}

// New returns a Client for the daemon at host, a DOCKER_HOST value such as
// "unix:///var/run/docker.sock" or "tcp://127.0.0.1:2375". With host ""
// the environment decides as for the docker CLI: DOCKER_HOST (and
// DOCKER_CERT_PATH / DOCKER_TLS_VERIFY for TLS), else the local socket
// unix:///var/run/docker.sock.
//
// The API version is negotiated with the daemon on the first request, down
// to what the daemon speaks (1.41 for Docker 20.10; the moby client refuses
// daemons below API 1.40). DOCKER_API_VERSION is deliberately not honoured:
// it would turn negotiation off. New does not contact the daemon.
func New(host string, opts ...Option) (*Client, error) {
	c := &Client{
		log:        slog.New(slog.DiscardHandler),
		minBackoff: DefaultMinBackoff,
		maxBackoff: DefaultMaxBackoff,
	}
	for _, o := range opts {
		o(c)
	}
	if c.log == nil {
		return nil, fmt.Errorf("%w: nil logger", ErrInvalidOption)
	}
	if c.minBackoff <= 0 || c.maxBackoff < c.minBackoff {
		return nil, fmt.Errorf("%w: backoff: want 0 < min <= max, got min %s, max %s", ErrInvalidOption, c.minBackoff, c.maxBackoff)
	}

	// Negotiation is the v0.6 client's default (its WithAPIVersionNegotiation
	// is a deprecated no-op); fixing a version is what would disable it.
	copts := []client.Opt{client.WithHTTPResponseHook(markSubscribed)}
	if host == "" {
		copts = append(copts, client.WithTLSClientConfigFromEnv(), client.WithHostFromEnv())
	} else {
		copts = append(copts, client.WithHost(host))
	}
	api, err := client.New(copts...)
	if err != nil {
		return nil, fmt.Errorf("engine: docker host %q: %w", host, err)
	}
	c.api = api
	return c, nil
}

// Close releases the Client's idle connections. Streams in progress end
// with their contexts.
func (c *Client) Close() error { return c.api.Close() }

// Host returns the DOCKER_HOST value the Client talks to.
func (c *Client) Host() string { return c.api.DaemonHost() }

// APIVersion returns the API version requests use: the negotiated one after
// the first request (Ping forces it), the client's maximum before.
func (c *Client) APIVersion() string { return c.api.ClientVersion() }

// Ping checks that the daemon answers, and negotiates the API version if no
// request has yet.
func (c *Client) Ping(ctx context.Context) error {
	if _, err := c.api.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		return fmt.Errorf("engine: ping %s: %w", c.Host(), err)
	}
	return nil
}

// HostName returns the daemon's host name, the Name of GET /info (the
// daemon's os.Hostname()). The sidecar uses it for the host label so that
// it matches the plugin's, which is the machine's hostname as the plugin
// sees it, and not the name of the sidecar's own container.
//
// The two differ when the daemon is remote (DOCKER_HOST=tcp://...), when
// the daemon runs in its own UTS namespace (rootless Docker, Docker in
// Docker), or when the hostname changed after the plugin started (a managed
// plugin's UTS namespace is a copy taken at its start); the plugin's
// HOST_LABEL and the sidecar's configuration can then set the label
// explicitly.
func (c *Client) HostName(ctx context.Context) (string, error) {
	res, err := c.api.Info(ctx, client.InfoOptions{})
	if err != nil {
		return "", fmt.Errorf("engine: info: %w", err)
	}
	if res.Info.Name == "" {
		return "", errors.New("engine: info: the daemon reported no Name")
	}
	return res.Info.Name, nil
}

// backoff is the doubling wait between retries.
type backoff struct {
	min, max, cur time.Duration
}

func (c *Client) newBackoff() backoff { return backoff{min: c.minBackoff, max: c.maxBackoff} }

// next returns the wait before the next retry.
func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur
}

// reset starts the doubling over after a success.
func (b *backoff) reset() { b.cur = 0 }

// wait returns nil after d, or ctx.Err() as soon as ctx is done.
func wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// subscribedKey is the context key under which Events hands the response
// hook the flag it sets when the daemon accepted the subscription.
type subscribedKey struct{}

// markSubscribed is a response hook: the moby client's Events returns before
// it is known whether the request succeeded (the error comes later on a
// channel), and Events must know that the subscription is live before it
// tells its caller to re-list.
func markSubscribed(resp *http.Response) {
	// The request's context also reaches the ping that negotiates the API
	// version before the first request: only the events answer counts.
	if resp.Request == nil || !strings.HasSuffix(resp.Request.URL.Path, "/events") ||
		resp.StatusCode < 200 || resp.StatusCode > 299 {
		return
	}
	if up, ok := resp.Request.Context().Value(subscribedKey{}).(*atomic.Bool); ok {
		up.Store(true)
	}
}
