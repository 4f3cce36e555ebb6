package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logferry/logferry/internal/dockertest"
	"github.com/logferry/logferry/internal/loggen"
	"github.com/logferry/logferry/shared/dockerlog"
	"github.com/logferry/logferry/shared/metadata"
)

// The tests in this file run against the private dockerd of
// internal/dockertest (Docker 20.10, API 1.41) and skip with -short.

// testTimeout bounds every wait of these tests.
const testTimeout = 2 * time.Minute

// tlog writes a Client's log into the test's log.
type tlog struct{ t *testing.T }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func daemonClient(t *testing.T, d *dockertest.Daemon) *Client {
	t.Helper()
	c, err := New(d.Host(), WithLogger(slog.New(slog.NewTextHandler(tlog{t}, nil))), WithBackoff(10*time.Millisecond, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func loggenArgs(cfg loggen.Config, extra ...string) []string {
	args := []string{
		"-id", cfg.ID,
		"-n", strconv.FormatUint(cfg.Lines, 10),
		"-size", strconv.Itoa(cfg.Size),
		"-stderr", strconv.FormatFloat(cfg.StderrShare, 'g', -1, 64),
	}
	if cfg.LongEvery > 0 {
		args = append(args, "-long-every", strconv.FormatUint(cfg.LongEvery, 10), "-long-size", strconv.Itoa(cfg.LongSize))
	}
	return append(args, extra...)
}

// TestDaemonListInspect: List and Inspect give what docker inspect shows,
// in the form the plugin's StartLogging Info gives it.
func TestDaemonListInspect(t *testing.T) {
	d := dockertest.Start(t)
	image := d.EnsureTestImage(t)
	c := daemonClient(t, d)
	ctx := testContext(t)

	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if v := c.APIVersion(); v != "1.41" {
		t.Errorf("negotiated API version %s, want 1.41 (Docker 20.10)", v)
	}

	name := "lf-engine-inspect-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	id := d.Run(t, "--name", name, "--log-driver", "local", "--log-opt", "max-size=5m",
		"--label", "com.example.team=logs", "-e", "FOO=bar", image, "-n", "1", "-sleep-after", "10m")

	var raw []struct {
		ID      string `json:"Id"`
		Created time.Time
		Image   string
		LogPath string
		State   struct{ StartedAt time.Time }
		Config  struct {
			Image  string
			Env    []string
			Labels map[string]string
		}
	}
	if err := json.Unmarshal([]byte(d.Docker(t, "container", "inspect", id)), &raw); err != nil || len(raw) != 1 {
		t.Fatalf("docker inspect: %v (%d results)", err, len(raw))
	}
	want := raw[0]

	list, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(list, func(ct Container) bool { return ct.ID == id })
	if i < 0 {
		t.Fatalf("List did not return the running container %s: %+v", id, list)
	}
	ct := list[i]
	if ct.Name != name || ct.ImageName != image || ct.ImageName != want.Config.Image ||
		ct.ImageID != want.Image || !strings.HasPrefix(ct.ImageID, "sha256:") ||
		!ct.Created.Equal(want.Created) || ct.DaemonName != "docker" {
		t.Errorf("metadata %+v\nwant name %s, image %s, image id %s, created %s, daemon name docker",
			ct.Container, name, want.Config.Image, want.Image, want.Created)
	}
	if !maps.Equal(ct.Labels, want.Config.Labels) || ct.Labels["com.example.team"] != "logs" || ct.Labels[dockertest.LabelKey] != "1" {
		t.Errorf("labels %v, want %v", ct.Labels, want.Config.Labels)
	}
	if !slices.Equal(ct.Env, want.Config.Env) || !slices.Contains(ct.Env, "FOO=bar") {
		t.Errorf("env %q, want %q", ct.Env, want.Config.Env)
	}
	if ct.LogDriver != "local" || ct.LogOpts["max-size"] != "5m" || ct.LogPath != want.LogPath || ct.TTY ||
		!ct.Running || !ct.StartedAt.Equal(want.State.StartedAt) || !ct.FinishedAt.IsZero() {
		t.Errorf("log driver %q, opts %v, path %q, tty %v, running %v, started %s, finished %s;\nwant local, max-size=5m, %q, false, true, %s, zero",
			ct.LogDriver, ct.LogOpts, ct.LogPath, ct.TTY, ct.Running, ct.StartedAt, ct.FinishedAt, want.LogPath, want.State.StartedAt)
	}
	t.Logf("a local-driver container's LogPath: %q", ct.LogPath)

	byID, err := c.Inspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if byName, err := c.Inspect(ctx, name); err != nil || byName.ID != id {
		t.Errorf("Inspect(%s) = %s, %v; want %s", name, byName.ID, err, id)
	}
	if byID.ID != ct.ID || byID.Name != ct.Name || byID.LogDriver != ct.LogDriver || !byID.StartedAt.Equal(ct.StartedAt) {
		t.Errorf("Inspect %+v differs from List %+v", byID, ct)
	}

	const missing = "0000000000000000000000000000000000000000000000000000000000000000"
	if _, err := c.Inspect(ctx, missing); !errors.Is(err, metadata.ErrNotFound) {
		t.Errorf("Inspect of a missing container: %v, want metadata.ErrNotFound", err)
	}

	host, err := c.HostName(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cli := strings.TrimSpace(d.Docker(t, "info", "--format", "{{.Name}}")); host != cli {
		t.Errorf("HostName %q, docker info says %q", host, cli)
	}

	d.Docker(t, "stop", "-t", "5", id)
	list, err = c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(list, func(ct Container) bool { return ct.ID == id }) {
		t.Errorf("List returned the stopped container %s", id)
	}
	stopped, err := c.Inspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if stopped.Running || stopped.FinishedAt.Before(stopped.StartedAt) {
		t.Errorf("stopped container: running %v, started %s, finished %s", stopped.Running, stopped.StartedAt, stopped.FinishedAt)
	}

	// Existing has stopped containers too, and not removed ones.
	exist, err := c.Existing(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !exist[id] {
		t.Errorf("Existing lacks the stopped container %s", id)
	}
	d.Docker(t, "rm", id)
	if exist, err = c.Existing(ctx); err != nil {
		t.Fatal(err)
	}
	if exist[id] {
		t.Errorf("Existing has the removed container %s", id)
	}
}

// TestDaemonEvents: start, rename, die and destroy of a container arrive in
// order with the daemon's nanosecond times, and a subscription since the
// first of them replays them all.
func TestDaemonEvents(t *testing.T) {
	d := dockertest.Start(t)
	image := d.EnsureTestImage(t)
	c := daemonClient(t, d)
	ctx := testContext(t)

	evCtx, cancel := context.WithCancel(ctx)
	evs := make(chan Event, 1000)
	done := make(chan error, 1)
	go func() { done <- c.Events(evCtx, time.Time{}, func(e Event) { evs <- e }) }()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Events returned %v, want context.Canceled", err)
		}
	}()
	if e := nextEvent(t, evs); e.Action != ActionResync {
		t.Fatalf("first event %+v, want resync", e)
	}

	name := "lf-engine-events-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	id := d.Run(t, "--name", name, "--log-driver", "local", image, "-n", "1", "-sleep-after", "10m")
	d.Docker(t, "rename", name, name+"-renamed")
	d.Docker(t, "stop", "-t", "5", id)
	d.Docker(t, "rm", id)

	var got []Event
	for len(got) == 0 || got[len(got)-1].Action != ActionDestroy {
		e := nextEvent(t, evs)
		if e.ID == id {
			got = append(got, e)
		} else if e.Action == ActionResync {
			t.Errorf("unexpected resync")
		}
	}
	actions := make([]string, len(got))
	for i, e := range got {
		actions[i] = e.Action
	}
	if want := []string{ActionStart, ActionRename, ActionDie, ActionDestroy}; !slices.Equal(actions, want) {
		t.Fatalf("events %v, want %v", actions, want)
	}
	if r := got[1].Attributes; r["name"] != name+"-renamed" || strings.TrimPrefix(r["oldName"], "/") != name {
		t.Errorf("rename attributes %v, want name %s and oldName %s", r, name+"-renamed", name)
	}
	if got[2].Attributes["exitCode"] != "0" || got[0].Attributes[dockertest.LabelKey] != "1" || got[0].Attributes["image"] != image {
		t.Errorf("die attributes %v, start attributes %v", got[2].Attributes, got[0].Attributes)
	}
	t.Logf("rename attributes: %v", got[1].Attributes)

	// The CLI's view of the same events, to the nanosecond.
	from, to := got[0].Time, got[3].Time
	cli := d.Docker(t, "events", "--filter", "container="+id,
		"--since", FormatSince(from.UnixNano()), "--until", FormatSince(to.UnixNano()),
		"--format", "{{.Action}} {{.TimeNano}}")
	var want []string
	for _, l := range strings.Split(strings.TrimSpace(cli), "\n") {
		if a, _, _ := strings.Cut(l, " "); slices.Contains(actions, a) {
			want = append(want, l)
		}
	}
	var have []string
	for _, e := range got {
		have = append(have, e.Action+" "+strconv.FormatInt(e.Time.UnixNano(), 10))
	}
	if !slices.Equal(have, want) {
		t.Errorf("events with times:\n%q\ndocker events:\n%q", have, want)
	}

	// A subscription since the start event's exact nanosecond replays all
	// four (the daemon's since is inclusive).
	replayCtx, stopReplay := context.WithCancel(ctx)
	defer stopReplay()
	var replayed []Event
	err := c.Events(replayCtx, from, func(e Event) {
		if e.ID == id {
			replayed = append(replayed, e)
			if e.Action == ActionDestroy {
				stopReplay()
			}
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("replaying Events returned %v", err)
	}
	if len(replayed) != len(got) {
		t.Fatalf("replayed %d events, want %d", len(replayed), len(got))
	}
	for i := range got {
		if replayed[i].Action != got[i].Action || !replayed[i].Time.Equal(got[i].Time) {
			t.Errorf("replayed event %d: %+v, want %+v", i, replayed[i], got[i])
		}
	}
}

func nextEvent(t *testing.T, evs <-chan Event) Event {
	t.Helper()
	select {
	case e := <-evs:
		return e
	case <-time.After(30 * time.Second):
		t.Fatal("no event within 30s")
		return Event{}
	}
}

// TestDaemonFollow follows a local-driver container through the logs API,
// multiplexed and with a TTY, and checks every line arrived exactly once, in
// order, with the exact bytes and timestamps docker logs shows.
func TestDaemonFollow(t *testing.T) {
	d := dockertest.Start(t)
	image := d.EnsureTestImage(t)
	for _, tty := range []bool{false, true} {
		t.Run(fmt.Sprintf("tty=%v", tty), func(t *testing.T) {
			c := daemonClient(t, d)
			ctx := testContext(t)
			cfg := loggen.Config{ID: fmt.Sprintf("follow-tty-%v", tty), Lines: 3000, Size: 150, StderrShare: 0.25}
			if !tty {
				// Long lines, which the daemon splits into 16 KiB chunks.
				// Not with a TTY: Docker 20.10's local driver ends the
				// last chunk with the terminal's '\r' but no '\n', and
				// shared/dockerlog's TTY decoder, which has no framing to
				// go by, glues it to the next message.
				cfg.LongEvery, cfg.LongSize = 1000, loggen.DefaultLongSize
			}
			args := []string{"--log-driver", "local"}
			if tty {
				args = append(args, "-t")
			}
			id := d.Run(t, append(append(args, image), loggenArgs(cfg, "-rate", "3000")...)...)

			var got []dockerlog.StreamMessage
			if err := c.Follow(ctx, id, tty, 0, collect(&got)); err != nil {
				t.Fatalf("Follow: %v", err)
			}
			checkAgainstDockerLogs(t, d, id, tty, got)
			checkLoggenLines(t, cfg, tty, got, cfg.Lines)

			// Resuming at a message's exact nanosecond gets it again (since
			// is inclusive), and one nanosecond later does not.
			at := got[len(got)/2].TimeNano
			for _, since := range []int64{at, at + 1} {
				var want, again []dockerlog.StreamMessage
				for _, m := range got {
					if m.TimeNano >= since {
						want = append(want, m)
					}
				}
				if err := c.Follow(ctx, id, tty, since, collect(&again)); err != nil {
					t.Fatalf("Follow since %d: %v", since, err)
				}
				if !equalMessages(again, want) {
					t.Errorf("Follow since %s: %d messages, want %d (the first: %+v)", FormatSince(since), len(again), len(want), first(again))
				}
			}
		})
	}
}

// TestDaemonFollowStopped follows a container that is writing, stops it in
// the middle of its output, and checks that Follow returns and delivered
// exactly what the container wrote.
func TestDaemonFollowStopped(t *testing.T) {
	d := dockertest.Start(t)
	image := d.EnsureTestImage(t)
	c := daemonClient(t, d)
	ctx := testContext(t)
	cfg := loggen.Config{ID: "follow-stop", Lines: 1_000_000, Size: 120, StderrShare: 0.5}
	id := d.Run(t, append([]string{"--log-driver", "local", image}, loggenArgs(cfg, "-rate", "400")...)...)

	var got []dockerlog.StreamMessage
	enough := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- c.Follow(ctx, id, false, 0, func(m dockerlog.StreamMessage) error {
			m.Line = bytes.Clone(m.Line)
			got = append(got, m)
			if len(got) == 200 {
				close(enough)
			}
			return nil
		})
	}()
	select {
	case <-enough:
	case err := <-done:
		t.Fatalf("Follow returned %v before the container stopped", err)
	case <-ctx.Done():
		t.Fatal("fewer than 200 lines in time")
	}
	d.Docker(t, "stop", "-t", "10", id)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Follow: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Follow did not return after the container stopped")
	}
	checkAgainstDockerLogs(t, d, id, false, got)
	// stdout and stderr are stamped and logged by separate goroutines: the
	// last line written is the highest seq, not the last message.
	var last uint64
	for _, m := range got {
		r, err := loggen.Parse(string(m.Line))
		if err != nil {
			t.Fatal(err)
		}
		last = max(last, r.Seq)
	}
	checkLoggenLines(t, cfg, false, got, last)
	t.Logf("followed %d lines, then the container stopped", last)
}

// TestDaemonFollowUnreadable: a container whose driver keeps no logs gives
// an error at once, not retries.
func TestDaemonFollowUnreadable(t *testing.T) {
	d := dockertest.Start(t)
	image := d.EnsureTestImage(t)
	c := daemonClient(t, d)
	ctx := testContext(t)
	id := d.Run(t, "--log-driver", "none", image, "-n", "1", "-sleep-after", "10m")
	err := c.Follow(ctx, id, false, 0, func(dockerlog.StreamMessage) error { return nil })
	if err == nil || ctx.Err() != nil {
		t.Fatalf("Follow of a --log-driver none container returned %v", err)
	}
	t.Logf("Follow of a --log-driver none container: %v", err)
}

// checkAgainstDockerLogs compares the messages with docker logs --timestamps
// of the container: the CLI copies the daemon's stream as it is, so each
// stream's output must be exactly the messages re-encoded the daemon's way.
func checkAgainstDockerLogs(t *testing.T, d *dockertest.Daemon, id string, tty bool, got []dockerlog.StreamMessage) {
	t.Helper()
	stdout, stderr, err := d.DockerErr("logs", "--timestamps", id)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	want := map[string]string{dockerlog.SourceStdout: stdout, dockerlog.SourceStderr: stderr}
	b := map[string]*strings.Builder{dockerlog.SourceStdout: {}, dockerlog.SourceStderr: {}}
	chunked := map[string]bool{}
	for _, m := range got {
		w := b[m.Stream]
		w.WriteString(daemonTime(m.TimeNano))
		w.WriteByte(' ')
		w.Write(m.Line)
		// The local driver writes no '\n' after the last chunk of a
		// split line.
		if !m.Partial && !chunked[m.Stream] {
			w.WriteByte('\n')
		}
		chunked[m.Stream] = m.Partial
	}
	for _, s := range []string{dockerlog.SourceStdout, dockerlog.SourceStderr} {
		if g := b[s].String(); g != want[s] {
			t.Errorf("%s differs from docker logs -t: %d bytes, want %d; first difference at byte %d",
				s, len(g), len(want[s]), firstDiff(g, want[s]))
		}
	}
	if tty && stderr != "" {
		t.Errorf("a TTY container has stderr in docker logs: %q", stderr[:min(len(stderr), 80)])
	}
}

// checkLoggenLines joins split lines and checks that lines 1..n of cfg
// arrived exactly once, in order on each stream (on the one TTY stream, in
// order of seq), byte for byte.
func checkLoggenLines(t *testing.T, cfg loggen.Config, tty bool, got []dockerlog.StreamMessage, n uint64) {
	t.Helper()
	pending := map[string][]byte{}
	lines := map[string][]string{}
	for _, m := range got {
		pending[m.Stream] = append(pending[m.Stream], m.Line...)
		if !m.Partial {
			line := string(pending[m.Stream])
			if tty {
				line = strings.TrimSuffix(line, "\r")
			}
			lines[m.Stream] = append(lines[m.Stream], line)
			pending[m.Stream] = nil
		}
	}
	for s, p := range pending {
		if len(p) > 0 {
			t.Errorf("%s ends in an unfinished line %q", s, p[:min(len(p), 80)])
		}
	}
	want := map[string][]string{}
	for seq := uint64(1); seq <= n; seq++ {
		s, line := cfg.Line(seq)
		if tty {
			s = dockerlog.SourceStdout
		}
		want[s] = append(want[s], line)
	}
	for _, s := range []string{dockerlog.SourceStdout, dockerlog.SourceStderr} {
		g, w := lines[s], want[s]
		if slices.Equal(g, w) {
			continue
		}
		i := 0
		for i < len(g) && i < len(w) && g[i] == w[i] {
			i++
		}
		var gi, wi string
		if i < len(g) {
			gi = g[i][:min(len(g[i]), 80)]
		}
		if i < len(w) {
			wi = w[i][:min(len(w[i]), 80)]
		}
		t.Errorf("%s: %d lines, want %d; line %d is %q, want %q", s, len(g), len(w), i, gi, wi)
	}
}

func equalMessages(a, b []dockerlog.StreamMessage) bool {
	return slices.EqualFunc(a, b, func(x, y dockerlog.StreamMessage) bool {
		return x.Stream == y.Stream && x.TimeNano == y.TimeNano && x.Partial == y.Partial && bytes.Equal(x.Line, y.Line)
	})
}

func first(ms []dockerlog.StreamMessage) dockerlog.StreamMessage {
	if len(ms) == 0 {
		return dockerlog.StreamMessage{}
	}
	return ms[0]
}

func firstDiff(a, b string) int {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return i
}

// cutProxy stands between a Client and the daemon's socket and cuts the
// connections on demand, as a daemon restart does; while down it closes
// every new connection at once.
type cutProxy struct {
	t      *testing.T
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	down  bool
}

func newCutProxy(t *testing.T, d *dockertest.Daemon) *cutProxy {
	t.Helper()
	dir, err := os.MkdirTemp("", "lfe-") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", filepath.Join(dir, "p.sock"))
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{t: t, ln: ln, target: strings.TrimPrefix(d.Host(), "unix://"), conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		p.setDown(true)
		p.wg.Wait()
		_ = os.RemoveAll(dir)
	})
	return p
}

func (p *cutProxy) host() string { return "unix://" + p.ln.Addr().String() }

func (p *cutProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			_ = c.Close()
			continue
		}
		up, err := net.Dial("unix", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			_ = c.Close()
			_ = up.Close()
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			defer p.wg.Done()
			_, _ = io.Copy(dst, src)
			_ = dst.Close()
			_ = src.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		p.wg.Add(2)
		go pipe(c, up)
		go pipe(up, c)
	}
}

// cut closes every connection going through the proxy.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
}

// setDown makes the proxy refuse connections (and cuts those it has), or
// accept them again.
func (p *cutProxy) setDown(down bool) {
	p.mu.Lock()
	p.down = down
	p.mu.Unlock()
	if down {
		p.cut()
	}
}

// TestDaemonFollowResumes cuts the logs stream again and again while a
// container writes both streams and long lines, and checks that Follow
// resumes each time without losing or repeating anything: the result is
// byte for byte what docker logs shows.
func TestDaemonFollowResumes(t *testing.T) {
	d := dockertest.Start(t)
	image := d.EnsureTestImage(t)
	p := newCutProxy(t, d)
	c, err := New(p.host(), WithLogger(slog.New(slog.NewTextHandler(tlog{t}, nil))), WithBackoff(10*time.Millisecond, 100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := testContext(t)
	cfg := loggen.Config{ID: "follow-resume", Lines: 6000, Size: 100, StderrShare: 0.4, LongEvery: 750, LongSize: loggen.DefaultLongSize}
	id := d.Run(t, append([]string{"--log-driver", "local", image}, loggenArgs(cfg, "-rate", "2000")...)...)

	var got []dockerlog.StreamMessage
	cuts := 0
	err = c.Follow(ctx, id, false, 0, func(m dockerlog.StreamMessage) error {
		m.Line = bytes.Clone(m.Line)
		got = append(got, m)
		if len(got)%701 == 0 {
			p.cut()
			cuts++
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Follow: %v", err)
	}
	if cuts < 5 {
		t.Errorf("only %d cuts", cuts)
	}
	checkAgainstDockerLogs(t, d, id, false, got)
	checkLoggenLines(t, cfg, false, got, cfg.Lines)
	t.Logf("%d messages through %d cut connections", len(got), cuts)
}

// TestDaemonEventsResubscribe: while the daemon cannot be reached, a
// container starts and dies; when it can again, Events resubscribes since
// the last event it delivered, signals a resync, and the daemon replays the
// two events.
func TestDaemonEventsResubscribe(t *testing.T) {
	d := dockertest.Start(t)
	image := d.EnsureTestImage(t)
	p := newCutProxy(t, d)
	c, err := New(p.host(), WithLogger(slog.New(slog.NewTextHandler(tlog{t}, nil))), WithBackoff(10*time.Millisecond, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := testContext(t)

	evCtx, cancel := context.WithCancel(ctx)
	evs := make(chan Event, 1000)
	done := make(chan error, 1)
	go func() { done <- c.Events(evCtx, time.Time{}, func(e Event) { evs <- e }) }()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Events returned %v, want context.Canceled", err)
		}
	}()
	if e := nextEvent(t, evs); e.Action != ActionResync {
		t.Fatalf("first event %+v, want resync", e)
	}
	first := d.Run(t, "--log-driver", "local", image, "-n", "1")
	d.Docker(t, "wait", first)
	waitFor := func(id, action string) {
		t.Helper()
		for {
			e := nextEvent(t, evs)
			if e.ID == id && e.Action == action {
				return
			}
		}
	}
	waitFor(first, ActionDie)

	p.setDown(true)
	second := d.Run(t, "--log-driver", "local", image, "-n", "1")
	d.Docker(t, "wait", second)
	p.setDown(false)

	var got []string
	for len(got) < 3 {
		e := nextEvent(t, evs)
		switch {
		case e.Action == ActionResync:
			got = append(got, e.Action)
		case e.ID == second:
			got = append(got, e.Action)
		case e.ID == first:
			t.Errorf("event %s of the first container delivered again", e.Action)
		}
	}
	if want := []string{ActionResync, ActionStart, ActionDie}; !slices.Equal(got, want) {
		t.Errorf("after the outage: %v, want %v", got, want)
	}
}
