package engine

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"
)

// Actions of the Events the sidecar subscribes to, and ActionResync.
const (
	ActionStart   = "start"
	ActionDie     = "die"
	ActionDestroy = "destroy"
	ActionRename  = "rename"
	// ActionResync is no daemon event: Events delivers it each time a
	// subscription is established (the first one included) to say that
	// events may have been lost before it (the daemon keeps only its last
	// 256 events in memory, and none across a restart), so the caller
	// must re-list the containers and reconcile. Events following it are
	// newer than the re-list or replayed from before it; applied in
	// order, they leave the caller with the daemon's state.
	ActionResync = "resync"
)

// Event is one container event.
type Event struct {
	// Action is one of the Action constants.
	Action string
	// ID is the full container id; empty for ActionResync.
	ID string
	// Time is the daemon's time of the event, to the nanosecond (the
	// event's timeNano); for ActionResync the local time the
	// subscription was established.
	Time time.Time
	// Attributes are the event's actor attributes: the container's labels
	// plus "name" and "image"; a rename adds "oldName", a die "exitCode".
	// Shared with no one: the receiver may keep it.
	Attributes map[string]string
}

// eventFilters subscribes to the container actions the sidecar acts on.
func eventFilters() client.Filters {
	return client.Filters{}.
		Add("type", string(events.ContainerEventType)).
		Add("event", ActionStart, ActionDie, ActionDestroy, ActionRename)
}

// Events delivers container start, die, destroy and rename events to out,
// in the daemon's order, and ActionResync each time a subscription is
// established. It returns ctx.Err() when ctx is done, and only then.
//
// The first subscription asks for events since since, or since now when
// since is zero (Docker 20.10 answers a subscription before it registers it,
// and asking for a since closes that gap). When a subscription fails or ends
// (a daemon restart), Events waits (doubling from the Client's minimum
// backoff to its maximum, reset by each established subscription) and
// subscribes again since the newest event time it delivered; the daemon
// replays from its buffer what it still has, and an event replayed that was
// already delivered is not delivered again.
//
// out is called from Events's goroutine, one call at a time, and must
// return promptly: dockerd drops events for a subscriber that is slow to
// read (its per-subscriber queue holds 1024, then it waits 100 ms per
// event). A caller that re-lists on ActionResync should do so without
// blocking out for long.
func (c *Client) Events(ctx context.Context, since time.Time, out func(Event)) error {
	s := eventStream{since: time.Now().UnixNano()}
	if !since.IsZero() {
		s.since = since.UnixNano()
	}
	bo := c.newBackoff()
	for {
		up, err := c.subscribe(ctx, &s, out)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if up {
			bo.reset()
		}
		d := bo.next()
		c.log.Warn("docker events subscription ended; subscribing again",
			"err", err, "since", FormatSince(s.since), "retry_in", d)
		if err := wait(ctx, d); err != nil {
			return err
		}
	}
}

// eventStream is what Events carries from one subscription to the next.
type eventStream struct {
	since  int64 // the next subscription's since, Unix ns
	recent [recentEvents]eventKey
	next   int // slot of recent to overwrite next
}

// recentEvents bounds the memory of delivered events used to drop replays.
// A replay repeats what happened at or after since, the newest delivered
// event time, so only events of that nanosecond (and any the daemon logged
// out of order around it) can come back; a few dozen is plenty.
const recentEvents = 64

type eventKey struct {
	timeNano int64
	action   string
	id       string
}

func (s *eventStream) seen(k eventKey) bool {
	for _, r := range s.recent {
		if r == k {
			return true
		}
	}
	return false
}

func (s *eventStream) remember(k eventKey) {
	s.recent[s.next] = k
	s.next = (s.next + 1) % len(s.recent)
	s.since = max(s.since, k.timeNano)
}

// subscribe runs one subscription until it fails or ctx is done, and
// reports whether the daemon accepted it. The moby client's goroutine has
// ended when it returns.
func (c *Client) subscribe(ctx context.Context, s *eventStream, out func(Event)) (up bool, err error) {
	var accepted atomic.Bool
	sctx, cancel := context.WithCancel(context.WithValue(ctx, subscribedKey{}, &accepted))
	res := c.api.Events(sctx, client.EventsListOptions{
		Since:   FormatSince(s.since),
		Filters: eventFilters(),
	})
	defer func() {
		cancel()
		for range res.Err { // closed when the client's goroutine returns
		}
	}()

	// The response hook ran before Events returned.
	if accepted.Load() {
		c.log.Debug("docker events subscribed", "since", FormatSince(s.since))
		out(Event{Action: ActionResync, Time: time.Now()})
	}
	for {
		select {
		case m := <-res.Messages:
			if m.Type != events.ContainerEventType {
				continue
			}
			k := eventKey{timeNano: m.TimeNano, action: string(m.Action), id: m.Actor.ID}
			if k.timeNano == 0 {
				// API < 1.22 had no timeNano; 1.41 always sends it.
				k.timeNano = time.Unix(m.Time, 0).UnixNano()
			}
			if s.seen(k) {
				continue
			}
			s.remember(k)
			out(Event{
				Action:     k.action,
				ID:         k.id,
				Time:       time.Unix(0, k.timeNano),
				Attributes: m.Actor.Attributes,
			})
		case err := <-res.Err:
			return accepted.Load(), err
		}
	}
}
