package engine

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/logferry/logferry/shared/dockerlog"
	"github.com/logferry/logferry/shared/metadata"
)

// FormatSince formats Unix nanoseconds as the Engine API's since and until
// parameters take them to the nanosecond: seconds, a dot and nine digits
// ("1700000000.000000042"). The daemon (API 1.41 as today) parses the
// fraction as nanoseconds, and the moby client passes this form through
// unchanged. Negative values are formatted as 0.
func FormatSince(ns int64) string {
	ns = max(ns, 0)
	return fmt.Sprintf("%d.%09d", ns/1e9, ns%1e9)
}

// Follow reads the logs of the container id through the Engine API's logs
// stream (follow, timestamps, stdout and stderr) and hands every message to
// out, in the stream's order. It is the sidecar's reader for containers
// whose log driver it cannot read from disk (local, journald, ...). tty must
// be the container's Config.Tty: the stream is then raw instead of
// multiplexed. since is in Unix nanoseconds; messages at or after it are
// delivered (the daemon's since is inclusive), all of them when since <= 0.
//
// Follow returns nil when the stream ended and the container is no longer
// running (it stopped or was removed; a container its restart policy started
// again is followed on), ctx.Err() when ctx is done, the error out returned
// when out fails (as is), and an error for a request that cannot succeed: no
// such container (wrapping metadata.ErrNotFound), or a log driver the daemon
// cannot read logs from.
//
// Any other failure (the daemon restarting, a cut connection, a truncated
// frame) is retried after a backoff, with since set to the last timestamps
// delivered. The daemon then repeats messages already delivered, at least
// those at exactly that nanosecond; Follow recognises them (by timestamp,
// stream and content, also when stdout and stderr were logged slightly out
// of timestamp order) and does not deliver them again.
//
// A chunk of a line the daemon split is delivered Partial, to be joined with
// what follows on its stream. In the multiplexed form a chunk shorter than
// the daemon's 16 KiB ends its line even without a '\n': Docker 20.10's
// local driver writes none after the last chunk. (The TTY form has no
// framing to tell; there such a last chunk arrives glued to the next
// message, see dockerlog.LogStreamDecoder.)
//
// Corrupt stream bytes and errors the daemon writes into the stream are
// logged and skipped. out is called from Follow's goroutine; the message's
// Line is valid only until out returns.
func (c *Client) Follow(ctx context.Context, id string, tty bool, since int64, out func(dockerlog.StreamMessage) error) error {
	log := c.log.With("container", id)
	r := newResumer(since)
	bo := c.newBackoff()
	for {
		delivered, err := c.followOnce(ctx, id, tty, r, out, log)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if oe, ok := errors.AsType[*outError](err); ok {
			return oe.err
		}
		if err == nil {
			// The stream ended: the container stopped, or the daemon
			// went away without cutting the connection.
			ct, ierr := c.Inspect(ctx, id)
			switch {
			case errors.Is(ierr, metadata.ErrNotFound):
				return nil
			case ierr == nil && !ct.Running:
				return nil
			case ierr != nil:
				err = ierr
			default:
				err = errors.New("the logs stream ended while the container runs")
			}
		} else if permanent(err) {
			if cerrdefs.IsNotFound(err) {
				return fmt.Errorf("engine: logs of %s: %w: %w", id, metadata.ErrNotFound, err)
			}
			return fmt.Errorf("engine: logs of %s: %w", id, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if delivered > 0 {
			bo.reset()
		}
		d := bo.next()
		log.Warn("docker logs stream interrupted; resuming", "err", err, "delivered", delivered, "retry_in", d)
		if err := wait(ctx, d); err != nil {
			return err
		}
	}
}

// outError carries the error of Follow's out, which ends Follow.
type outError struct{ err error }

func (e *outError) Error() string { return e.err.Error() }
func (e *outError) Unwrap() error { return e.err }

// permanent reports errors that retrying the same request cannot fix.
func permanent(err error) bool {
	return cerrdefs.IsNotFound(err) || cerrdefs.IsInvalidArgument(err) || cerrdefs.IsNotImplemented(err) ||
		cerrdefs.IsPermissionDenied(err) || cerrdefs.IsUnauthorized(err)
}

// followOnce runs one logs request until the stream ends (nil) or fails,
// and returns how many messages it delivered.
func (c *Client) followOnce(ctx context.Context, id string, tty bool, r *resumer, out func(dockerlog.StreamMessage) error, log *slog.Logger) (delivered int, err error) {
	since, repeat, complete := r.point()
	opts := client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Follow: true, Timestamps: true}
	if since > 0 {
		opts.Since = FormatSince(since)
	}
	if !complete {
		log.Warn("resuming a logs stream past what is remembered of it; lines may repeat", "since", opts.Since)
	}
	log.Debug("logs request", "since", opts.Since, "repeats", len(repeat))
	rc, err := c.api.ContainerLogs(ctx, id, opts)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	defer func() { log.Debug("logs stream ended", "delivered", delivered, "err", err) }()

	dec := dockerlog.NewLogStreamDecoder(rc, tty, 0)
	defer func() {
		if n := dec.SkippedBytes(); n > 0 {
			log.Warn("skipped corrupt logs stream bytes", "bytes", n)
		}
	}()
	var m dockerlog.StreamMessage
	for {
		err := dec.Next(&m)
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			return delivered, nil
		case errors.Is(err, dockerlog.ErrCorruptStream), errors.Is(err, dockerlog.ErrFrameTooLarge):
			log.Warn("skipping corrupt logs stream data", "err", err)
			continue
		case errors.Is(err, dockerlog.ErrDaemonError):
			log.Warn("the daemon reported an error in the logs stream", "err", err)
			continue
		default: // a truncated frame, a cut connection, ctx done
			return delivered, err
		}
		if !tty && m.Partial && len(m.Line) < daemonChunkSize {
			// Docker 20.10's local driver omits the '\n' after the last
			// chunk of a line it split; every chunk but the last is
			// exactly daemonChunkSize, so a shorter one ends the line.
			m.Partial = false
		}

		if len(repeat) > 0 {
			if m.TimeNano == repeat[0].timeNano && r.sum(&m) == repeat[0].sum {
				repeat = repeat[1:]
				continue
			}
			log.Warn("the resumed logs stream differs from what was delivered; lines may repeat",
				"since", opts.Since, "unmatched", len(repeat))
			repeat = nil
		}
		if err := out(m); err != nil {
			return delivered, &outError{err}
		}
		r.record(&m)
		delivered++
	}
}

const (
	// daemonChunkSize is the size of every chunk but the last of a line
	// the daemon split (its copier's buffer).
	daemonChunkSize = 16 << 10
	// resumeWindow is how many delivered messages Follow remembers to
	// recognise the ones a resumed stream repeats (16 bytes each).
	resumeWindow = 1024
	// reorderWindow is how many of the last delivered messages the resume
	// point goes back over. Docker stamps stdout and stderr in separate
	// goroutines, so a stream can hold T2 then T1 < T2; resuming at the
	// smallest timestamp among the last few keeps an undelivered message
	// stamped before the last delivered ones. Under load the two copiers
	// drift apart by more than 8 messages (a stderr line was lost after a
	// cut connection in CI with 8), hence 256.
	reorderWindow = 256
)

// sent is what Follow remembers of a delivered message.
type sent struct {
	timeNano int64
	sum      uint64 // of stream, partial flag and line
}

// resumer remembers the last messages Follow delivered, to compute where a
// new request starts and which of its first messages were delivered
// already.
type resumer struct {
	since int64 // the caller's since
	ring  [resumeWindow]sent
	n     int // messages delivered in all
	h     maphash.Hash
}

func newResumer(since int64) *resumer {
	r := &resumer{since: since}
	r.h.SetSeed(maphash.MakeSeed())
	return r
}

func (r *resumer) sum(m *dockerlog.StreamMessage) uint64 {
	r.h.Reset()
	r.h.WriteString(m.Stream)
	if m.Partial {
		r.h.WriteByte(1)
	} else {
		r.h.WriteByte(0)
	}
	r.h.Write(m.Line)
	return r.h.Sum64()
}

func (r *resumer) record(m *dockerlog.StreamMessage) {
	r.ring[r.n%resumeWindow] = sent{timeNano: m.TimeNano, sum: r.sum(m)}
	r.n++
}

// point returns the since of the next request, the delivered messages with
// timestamps at or after it in delivery order (the daemon sends them again
// first, in the same order), and whether that list is complete: it is not
// when timestamps went backwards by more than the window remembers.
func (r *resumer) point() (since int64, repeat []sent, complete bool) {
	if r.n == 0 {
		return r.since, nil, true
	}
	kept := min(r.n, resumeWindow)
	at := func(back int) sent { return r.ring[(r.n-back)%resumeWindow] } // back 1: the last
	since = at(1).timeNano
	for back := 2; back <= min(kept, reorderWindow); back++ {
		since = min(since, at(back).timeNano)
	}
	for back := kept; back >= 1; back-- {
		if s := at(back); s.timeNano >= since {
			repeat = append(repeat, s)
		}
	}
	complete = r.n <= resumeWindow || at(kept).timeNano < since
	return since, repeat, complete
}
