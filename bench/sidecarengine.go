package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/system"
)

// EngineAPIVersion is the API version the fake Engine answers in /_ping:
// Docker 20.10's, the daemon of the machines these benchmarks run on. The
// sidecar's client negotiates down to it.
const EngineAPIVersion = "1.41"

// daemonContainersDir is where the daemon says json-file logs are; the
// sidecar maps it to its containers-dir.
const daemonContainersDir = "/var/lib/docker/containers"

// EngineContainer is a running json-file container the fake Engine reports.
type EngineContainer struct {
	ID   string // 64 hex digits
	Name string // without the leading /
}

// FakeEngine plays as much of the Docker Engine API as the sidecar uses, on
// a unix socket: /_ping (with the API-Version header the client negotiates
// from), /info, /containers/json, /containers/{id}/json and /events, which
// stays open until the client goes or Close. Paths are served with and
// without the /vX.Y prefix. Any other request is answered 404 and counted
// (Unexpected), so that a run notices the sidecar asking for something the
// benchmark does not expect (e.g. a logs stream).
type FakeEngine struct {
	srv      *http.Server
	ln       net.Listener
	wg       sync.WaitGroup
	hostName string
	created  time.Time
	quit     chan struct{} // closed by Close: ends open event streams

	mu          sync.Mutex
	listed      map[string]EngineContainer // running containers, by id
	subscribers map[chan events.Message]struct{}
	subscribed  chan struct{} // closed and replaced at each new subscription
	hold        chan struct{} // /events answers once this is closed
	unexpected  []string
}

// NewFakeEngine serves the fake Engine on a new unix socket at socket. With
// hold, every /events request waits for Release before it is answered:
// the sidecar discovers containers only once its events subscription is up,
// so it reads nothing until then.
func NewFakeEngine(socket, hostName string, hold bool) (*FakeEngine, error) {
	if len(socket) > 100 {
		return nil, fmt.Errorf("socket path %s is too long for a unix socket; use a shorter directory", socket)
	}
	ln, err := net.Listen("unix", socket)
	if err != nil {
		return nil, fmt.Errorf("fake engine: %w", err)
	}
	e := &FakeEngine{
		ln: ln, hostName: hostName, created: time.Now().UTC(), quit: make(chan struct{}),
		listed: map[string]EngineContainer{}, subscribers: map[chan events.Message]struct{}{},
		subscribed: make(chan struct{}), hold: make(chan struct{}),
	}
	if !hold {
		close(e.hold)
	}
	e.srv = &http.Server{Handler: http.HandlerFunc(e.serve), ReadHeaderTimeout: 10 * time.Second}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		_ = e.srv.Serve(ln)
	}()
	return e, nil
}

// DockerHost is the engine's address as a DOCKER_HOST value.
func (e *FakeEngine) DockerHost() string { return "unix://" + e.ln.Addr().String() }

// Release lets held /events requests be answered (see NewFakeEngine).
func (e *FakeEngine) Release() {
	e.mu.Lock()
	defer e.mu.Unlock()
	select {
	case <-e.hold:
	default:
		close(e.hold)
	}
}

// Add makes c a running container. With announce, every open events
// subscription gets a start event for it, as when a container starts;
// without, it is only listed, as a container that was running before the
// sidecar started.
func (e *FakeEngine) Add(c EngineContainer, announce bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.listed[c.ID] = c
	if !announce {
		return
	}
	now := time.Now()
	ev := events.Message{
		Type: events.ContainerEventType, Action: events.ActionStart, Scope: "local",
		Actor: events.Actor{ID: c.ID, Attributes: map[string]string{"name": c.Name, "image": benchImage}},
		Time:  now.Unix(), TimeNano: now.UnixNano(),
	}
	for ch := range e.subscribers {
		select {
		case ch <- ev:
		default: // a subscriber 16 events behind: the daemon would drop it too
		}
	}
}

// WaitSubscribed returns once an events subscription has been answered
// (after Release, with hold), or with ctx's error.
func (e *FakeEngine) WaitSubscribed(ctx context.Context) error {
	for {
		e.mu.Lock()
		n, ch := len(e.subscribers), e.subscribed
		e.mu.Unlock()
		if n > 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("the sidecar did not subscribe to events: %w", ctx.Err())
		}
	}
}

// Unexpected returns the requests the fake Engine could not answer.
func (e *FakeEngine) Unexpected() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.unexpected...)
}

// Close ends open event streams and stops the server.
func (e *FakeEngine) Close() error {
	close(e.quit)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := e.srv.Shutdown(ctx)
	e.wg.Wait()
	return err
}

const benchImage = "logferry-loggen:bench"

var apiVersionPrefix = regexp.MustCompile(`^/v[0-9]+\.[0-9]+/`)

func (e *FakeEngine) serve(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if loc := apiVersionPrefix.FindStringIndex(p); loc != nil {
		p = p[loc[1]-1:]
	}
	switch {
	case p == "/_ping" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		w.Header().Set("Api-Version", EngineAPIVersion)
		w.Header().Set("Ostype", "linux")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache, no-store, must-revalidate")
		if r.Method == http.MethodGet {
			_, _ = w.Write([]byte("OK"))
		}
	case r.Method != http.MethodGet:
		e.notFound(w, r)
	case p == "/info":
		writeEngineJSON(w, http.StatusOK, system.Info{
			ID: "BENCH", Name: e.hostName, OSType: "linux", ServerVersion: "20.10.24",
			Driver: "overlay2", LoggingDriver: "json-file", DockerRootDir: "/var/lib/docker",
		})
	case p == "/containers/json":
		e.list(w)
	case strings.HasPrefix(p, "/containers/") && strings.HasSuffix(p, "/json"):
		e.inspect(w, strings.TrimSuffix(strings.TrimPrefix(p, "/containers/"), "/json"))
	case p == "/events":
		e.events(w, r)
	default:
		e.notFound(w, r)
	}
}

func (e *FakeEngine) notFound(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	if len(e.unexpected) < 100 {
		e.unexpected = append(e.unexpected, r.Method+" "+r.URL.String())
	}
	e.mu.Unlock()
	writeEngineJSON(w, http.StatusNotFound, map[string]string{"message": "page not found"})
}

func (e *FakeEngine) list(w http.ResponseWriter) {
	e.mu.Lock()
	out := make([]container.Summary, 0, len(e.listed))
	for _, c := range e.listed {
		out = append(out, container.Summary{
			ID: c.ID, Names: []string{"/" + c.Name}, Image: benchImage, ImageID: "sha256:" + ContainerID("image"),
			Command: "/loggen", Created: e.created.Unix(), State: container.StateRunning, Status: "Up 1 second",
		})
	}
	e.mu.Unlock()
	writeEngineJSON(w, http.StatusOK, out)
}

// inspect answers as the daemon does for a running json-file container;
// LogPath is the daemon's path, under /var/lib/docker/containers.
func (e *FakeEngine) inspect(w http.ResponseWriter, id string) {
	e.mu.Lock()
	c, ok := e.listed[id]
	if !ok {
		for _, l := range e.listed {
			if l.Name == id || strings.HasPrefix(l.ID, id) {
				c, ok = l, true
				break
			}
		}
	}
	e.mu.Unlock()
	if !ok {
		writeEngineJSON(w, http.StatusNotFound, map[string]string{"message": "No such container: " + id})
		return
	}
	created := e.created.Format(time.RFC3339Nano)
	writeEngineJSON(w, http.StatusOK, container.InspectResponse{
		ID:      c.ID,
		Created: created,
		Path:    "/loggen",
		State: &container.State{
			Status: container.StateRunning, Running: true, Pid: 4242,
			StartedAt: created, FinishedAt: "0001-01-01T00:00:00Z",
		},
		Image:   "sha256:" + ContainerID("image"),
		LogPath: daemonContainersDir + "/" + c.ID + "/" + c.ID + "-json.log",
		Name:    "/" + c.Name,
		Driver:  "overlay2",
		HostConfig: &container.HostConfig{
			LogConfig: container.LogConfig{Type: "json-file", Config: map[string]string{}},
		},
		Config: &container.Config{
			Hostname: c.ID[:12], Image: benchImage, Labels: map[string]string{},
			Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		},
	})
}

// events answers a subscription and streams start events (Add) until the
// client goes or the engine closes. The filters are not applied: the fake
// only ever sends container start events.
func (e *FakeEngine) events(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	hold := e.hold
	e.mu.Unlock()
	select {
	case <-hold:
	case <-r.Context().Done():
		return
	case <-e.quit:
		return
	}
	ch := make(chan events.Message, 16)
	e.mu.Lock()
	e.subscribers[ch] = struct{}{}
	close(e.subscribed)
	e.subscribed = make(chan struct{})
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.subscribers, ch)
		e.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	enc := json.NewEncoder(w)
	for {
		select {
		case ev := <-ch:
			if err := enc.Encode(ev); err != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		case <-r.Context().Done():
			return
		case <-e.quit:
			return
		}
	}
}

func writeEngineJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// errEngineUnexpected: the sidecar asked the fake Engine for something it
// does not serve.
var errEngineUnexpected = errors.New("the sidecar made requests the fake Engine does not serve")
