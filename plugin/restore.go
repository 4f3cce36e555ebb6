package plugin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// Restore: re-attaching after a restart. The daemon calls StartLogging once
// per container start and never again, so a restarted plugin finds its
// streams in the State records and what Loki already has in the positions
// (positions.go).
//
// The contract:
//   - Restore is called once, after NewDriver; StartLogging may run at the
//     same time (the socket is open first) and wins: a FIFO already
//     registered is left alone.
//   - For each record it opens the FIFO without a keeper (the daemon's
//     end is open already, or never will be, and then EOF ends the stream)
//     and registers the stream under d.mu, as StartLogging does.
//   - A stream whose local copy supports replay (replayer) first re-sends
//     the lines Loki has not acknowledged: from the later of the stream's
//     start and its position less ReplayMargin, after the line stamped
//     exactly at its position. Without a position everything since the
//     stream's start is re-sent: duplicates rather than a loss.
//   - A record whose FIFO is gone (the container stopped while the plugin
//     was down) only re-sends, then ends and is deleted as any stream.
//   - A record that cannot be re-attached is deleted and named in the
//     joined error; the others are still restored.

// replayer reads back a container's local copy.
type replayer interface {
	Replay(ctx context.Context, containerID string, since, after int64, fn func(source string, timeNano int64, line []byte)) error
}

// Restore re-attaches to the FIFOs recorded by an earlier process and
// re-sends, from each container's local copy, the lines Loki had not yet
// acknowledged. It returns how many streams it started.
func (d *Driver) Restore() (int, error) {
	records, loadErr := d.state.Load()
	acked := d.state.LoadPositions()
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	var errs []error
	for _, r := range records {
		if _, ok := d.streams[r.File]; ok {
			continue
		}
		st, err := os.Stat(r.File)
		gone := err != nil || st.Mode()&os.ModeNamedPipe == 0
		s, err := d.buildStream(r.File, r.Info, true, gone)
		if err != nil {
			errs = append(errs, fmt.Errorf("re-attaching %s: %w", shortID(r.Info.ContainerID), err))
			_ = d.state.Delete(r.File)
			continue
		}
		s.started = r.Started
		from := r.Started
		if a, ok := acked[r.File]; ok {
			from = max(from, a-d.cfg.ReplayMargin.Nanoseconds())
			s.acked.Store(a)
			s.pipe.SetAckFloor(a)
		}
		if rp, ok := d.store.(replayer); ok && s.copy != nil && from > 0 {
			s.replayFrom, s.replayer = from, rp
		}
		if gone {
			s.log.Info("the container stopped while the plugin was down; re-sending its unacknowledged lines")
		}
		d.launch(s)
		d.m.reattached.Inc()
		n++
	}
	return n, errors.Join(loadErr, errors.Join(errs...))
}

// replay re-sends, on the stream's goroutine before it reads the FIFO, the
// lines of the local copy that Loki has not acknowledged. They are not
// written to the copy again.
func (s *stream) replay(ctx context.Context) {
	if s.replayFrom <= 0 || s.replayer == nil {
		return
	}
	n := 0
	err := s.replayer.Replay(ctx, s.info.ContainerID, s.replayFrom, s.acked.Load(), func(source string, t int64, line []byte) {
		line = bytes.TrimSuffix(line, []byte("\n"))
		s.ship(source, t, line, false)
		n++
	})
	s.settle()
	s.m.replayed.Add(float64(n))
	s.log.Info("re-sent lines from the local copy that Loki had not acknowledged", "lines", n,
		"since", time.Unix(0, s.replayFrom).UTC().Format(time.RFC3339Nano), "err", err)
}
