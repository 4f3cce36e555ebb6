package sidecar

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logferry/logferry/shared/dockerlog"
	"github.com/logferry/logferry/shared/labels"
	"github.com/logferry/logferry/shared/logopts"
	"github.com/logferry/logferry/shared/loki"
	"github.com/logferry/logferry/shared/pipeline"
	"github.com/logferry/logferry/shared/spool"
	"github.com/logferry/logferry/sidecar/engine"
	"github.com/logferry/logferry/sidecar/positions"
	"github.com/logferry/logferry/sidecar/tail"
)

// FileTail follows one container's json-file log across rotations; a
// *tail.Tailer is one.
type FileTail interface {
	// Run calls out for every line until ctx ends, or after Finish once
	// everything written has been read. out may block (backpressure). A
	// line's Data is valid during the call; its Token identifies the
	// position right after it, and tokens only grow over a tail's life.
	Run(ctx context.Context, out func(tail.Line) error) error
	// Finish asks Run to read to the end and return.
	Finish()
	// Position maps a token to the durable position after its line.
	Position(token int64) (positions.Position, bool)
	// Release lets the tail forget what came before token: the
	// acknowledgements that map tokens arrive in order.
	Release(token int64)
	// HoldRotated keeps files that rotations create while out blocks from
	// being deleted unread; call it from within out, while it waits.
	HoldRotated()
}

var _ FileTail = (*tail.Tailer)(nil)

// FileSource opens FileTails; one is shared by every container.
type FileSource interface {
	// Open follows the log at path from start, or without start from the
	// live file's beginning, or from the oldest rotated file with
	// fromOldest.
	Open(path, name string, start *positions.Position, fromOldest bool, maxLine int) (FileTail, error)
}

// engineMessage is a message of the Engine's logs stream.
type engineMessage = dockerlog.StreamMessage

// shipper ships one container. Its acknowledgements, in hand-over order,
// move the container's saved position: only what Loki accepted (or what was
// dropped and counted) is ever behind it.
type shipper struct {
	r     *Router
	c     engine.Container
	route string
	opts  logopts.Options
	set   labels.Set
	pipe  *pipeline.Step
	out   pipeline.Out // handOut of the reading route's context
	disp  *loki.Dispatcher
	fan   *loki.Fanout // the dispatchers: disp, a tenant stage's, a reload's
	log   *slog.Logger
	m     *containerMetrics
	tail  FileTail
	// fromOldest: with no saved position, start at the oldest rotated file
	// (a container started after the sidecar), not the live file.
	fromOldest bool

	cancel     context.CancelFunc
	destroyed  atomic.Bool // the container is gone: keep no position
	gaveUp     atomic.Bool // a shipper of the next run took over: keep no position
	finishOnce sync.Once
	finishCh   chan struct{}
	lines      int64

	mu         sync.Mutex
	lastHanded int64
	handedAny  bool
	lastAcked  int64
	ended      bool
	resolved   chan struct{}
}

var _ loki.Acker = (*shipper)(nil)

// Ack moves the saved position. A dropped line (delivered false) moves it
// too: it was counted, and re-reading it would only drop it again; but not
// once the sidecar is stopping, when drops are the shutdown's (reason
// shutdown) and the line is to be read again at the next start. Nor once
// a shipper of the container's next run took over (gaveUp).
func (s *shipper) Ack(off int64, delivered bool) {
	switch {
	case s.destroyed.Load(), s.gaveUp.Load():
	case !delivered && s.r.stopping.Load():
	case s.route == RouteFile:
		if p, ok := s.tail.Position(off); ok {
			s.tail.Release(off)
			if err := s.r.pos.Set(s.c.ID, p); err == nil {
				s.r.dirty()
			}
		}
	case s.route == RouteAPI:
		// Resume after this line's time: the logs API's since is
		// inclusive.
		if err := s.r.pos.Set(s.c.ID, positions.Position{Offset: off + 1}); err == nil {
			s.r.dirty()
		}
	}
	s.mu.Lock()
	s.lastAcked = off
	s.checkResolved()
	s.mu.Unlock()
}

func (s *shipper) checkResolved() {
	if !s.ended {
		return
	}
	select {
	case <-s.resolved:
		return
	default:
	}
	if !s.handedAny || s.lastAcked == s.lastHanded {
		close(s.resolved)
	}
}

// finish asks the shipper to read to the end (the container died). The
// logs-API route ends by itself when the stream does and the container is
// not running (a container running again is followed on).
func (s *shipper) finish() {
	s.finishOnce.Do(func() {
		close(s.finishCh)
		s.mu.Lock()
		t := s.tail
		s.mu.Unlock()
		if t != nil {
			t.Finish()
		}
	})
}

// finishing reports whether finish was called: on the file route the
// shipper then reads no further than the end of what is written now.
func (s *shipper) finishing() bool {
	select {
	case <-s.finishCh:
		return true
	default:
		return false
	}
}

func (s *shipper) run(ctx context.Context) {
	out := s.handOut(ctx)
	var stopFlusher func()
	if s.pipe.Joins() {
		stopFlusher = s.pipe.StartFlusher(out)
	}
	var err error
	switch s.route {
	case RouteFile:
		err = s.runFile(ctx)
	case RouteAPI:
		err = s.runAPI(ctx)
	}
	if stopFlusher != nil {
		stopFlusher()
		// Every line read is in an entry handed on before the shipper
		// counts as ended (at shutdown, what cannot be handed is read
		// again at the next start: positions did not move past it).
		ferr := s.pipe.FlushAll(out)
		if err == nil {
			err = ferr
		}
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		s.log.Error("shipping stopped", "err", err)
	}
	s.mu.Lock()
	s.ended = true
	s.checkResolved()
	s.mu.Unlock()
	if ctx.Err() != nil {
		return // shutdown: the position stays where Loki's acceptance got it
	}
	// Wait until Loki has the last line, so the position is final.
	drain := s.r.cfg.DrainTimeout
	if drain <= 0 {
		drain = loki.DefaultDrainTimeout
	}
	t := time.NewTimer(drain)
	defer t.Stop()
	select {
	case <-s.resolved:
	case <-t.C:
		s.log.Warn("Loki did not accept the last lines in time")
	case <-ctx.Done():
	}
}

func (s *shipper) runFile(ctx context.Context) error {
	s.out = s.handOut(ctx)
	var start *positions.Position
	path := s.r.hostPath(s.c.LogPath)
	if p, ok := s.r.pos.Get(s.c.ID); ok {
		start = &p
	}
	// A container started after the sidecar is shipped from its first
	// line, also when it rotated before this shipper began.
	t, err := s.r.files.Open(path, s.c.Name, start, s.fromOldest, s.opts.MaxLineSize)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.tail = t
	s.mu.Unlock()
	select {
	case <-s.finishCh:
		t.Finish() // died before the tail was open
	default:
	}
	return t.Run(ctx, func(l tail.Line) error {
		return s.ship(ctx, l.Stream, l.TimeNano, l.Data, l.Truncated, l.Token)
	})
}

func (s *shipper) runAPI(ctx context.Context) error {
	s.out = s.handOut(ctx)
	// After the last line Loki accepted; without a saved position from
	// the beginning of what the daemon keeps of the log, as the file
	// route reads a json-file log from its oldest rotated file: the
	// sidecar never shipped any of it. Not from State.StartedAt: the
	// daemon sets it after the process started, and its copier stamps
	// the first lines before it (by 15 ms on an idle machine, in two
	// containers of six). Nor from the previous run's FinishedAt when it
	// is before StartedAt: a container that exits at once has one too.
	since := int64(0)
	if p, ok := s.r.pos.Get(s.c.ID); ok {
		since = p.Offset
		s.pipe.SetAckFloor(since - 1) // Ack(since-1) keeps the position at since
	}
	joiner := dockerlog.NewJoiner(s.opts.MaxLineSize)
	var shipErr error
	err := s.r.eng.Follow(ctx, s.c.ID, s.c.TTY, since, func(m dockerlog.StreamMessage) error {
		line := m.Line
		if s.c.TTY {
			line = trimCR(line)
		}
		if l, ok := joiner.Push(m.Stream, m.TimeNano, line, !m.Partial); ok {
			shipErr = s.ship(ctx, l.Stream, l.TimeNano, l.Data, l.Truncated, l.TimeNano)
			return shipErr
		}
		return nil
	})
	joiner.Flush(func(l dockerlog.Line) { _ = s.ship(ctx, l.Stream, l.TimeNano, l.Data, l.Truncated, l.TimeNano) })
	return err
}

// handOut hands on the entries of the pipeline step (pipeline.Out). A
// dropped one is not handed on: a later acknowledgement moves the
// position past it.
func (s *shipper) handOut(ctx context.Context) pipeline.Out {
	return func(o *pipeline.Output) error {
		if !o.Keep {
			return nil
		}
		return s.hand(ctx, o.Entry, o.Source, o.Tenant, o.Offset)
	}
}

func trimCR(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		return b[:n-1]
	}
	return b
}

// ship hands one line to the dispatcher. Under the overflow policy "block"
// (the default) it waits for room when the queue is full, which only slows
// the reading of files the daemon has already written; no container waits.
// Under "spool" the dispatcher spools what the queue cannot hold, and ship
// waits only while the spool refuses too; under "drop" the dispatcher drops
// and counts the line at once.
//
// Every line either route reads passes here once (whole, or flushed
// incomplete when its stream ends): a line cut at max-line-size (truncated)
// is counted here and nowhere else.
func (s *shipper) ship(ctx context.Context, source string, timeNano int64, data []byte, truncated bool, token int64) error {
	if truncated {
		s.r.m.truncated.Inc()
	}
	return s.pipe.Line(source, timeNano, data, token, s.out)
}

// hand gives the dispatcher one entry, acknowledged by token, by the
// overflow policy (see ship).
func (s *shipper) hand(ctx context.Context, e loki.Entry, source, tenant string, token int64) error {
	e.Acker, e.Offset = s, token
	line := e.Line
	if s.r.cfg.Overflow.Overflow == spool.OverflowDrop {
		err := s.handle(tenant, e, false)
		if errors.Is(err, loki.ErrQueueFull) {
			return nil // dropped and counted by the dispatcher
		}
		if err != nil {
			return err
		}
		return s.handed(source, line, token)
	}
	wait := 5 * time.Millisecond
	for {
		err := s.handle(tenant, e, true)
		if err == nil {
			break
		}
		if !errors.Is(err, loki.ErrQueueFull) {
			return err
		}
		s.r.m.blocked.Inc()
		if s.tail != nil {
			// While reading waits, the daemon may rotate the log past
			// max-file: keep what it rotates open.
			s.tail.HoldRotated()
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		// At most 20 ms: a busy container rotates a 1 MiB file every 50 ms
		// or so, and a starved sidecar wakes late.
		wait = min(2*wait, 20*time.Millisecond)
	}
	return s.handed(source, line, token)
}

// handle is the dispatcher's Handle, or TryHandle when try is set, through
// the Fanout.
func (s *shipper) handle(tenant string, e loki.Entry, try bool) error {
	return s.fan.Handle(tenant, e, try)
}

// handed records that the dispatcher took a line.
func (s *shipper) handed(source, line string, token int64) error {
	s.mu.Lock()
	s.lastHanded, s.handedAny = token, true
	s.mu.Unlock()
	s.lines++
	s.m.lines(source).Inc()
	s.m.bytes(source).Add(float64(len(line)))
	return nil
}
