package plugin

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logferry/logferry/shared/dockerlog"
	"github.com/logferry/logferry/shared/labels"
	"github.com/logferry/logferry/shared/logopts"
	"github.com/logferry/logferry/shared/loki"
	"github.com/logferry/logferry/shared/pipeline"
)

// copyWriter keeps the lines of one container for `docker logs`. Buffer
// keeps a frame for the next Flush, so that the lines of one FIFO read cost
// one write(2).
type copyWriter interface {
	Buffer(f *dockerlog.Frame) error
	Flush() error
	Close() error
}

// stream reads one container's FIFO. Its goroutine is the only reader; it
// never waits on the network (the dispatcher's Handle does not block), so
// the container's stdout never waits on Loki.
type stream struct {
	file   string
	info   Info
	opts   logopts.Options
	set    labels.Set
	pipe   *pipeline.Step
	disp   *loki.Dispatcher
	fan    *loki.Fanout // a tenant stage's tenants; nil without one
	copy   copyWriter   // nil with no-file
	log    *slog.Logger
	m      *streamMetrics
	fifo   io.ReadCloser
	keeper io.Closer // our own write end, see openFIFO; nil after stop
	done   chan struct{}
	// copyBuf is the line plus its newline for the local copy, and
	// copyFrame the frame that carries it there; both reused.
	copyBuf   []byte
	copyFrame dockerlog.Frame
	// counts are the lines handled since the last settle, added to the
	// registry's counters once per FIFO read instead of once per line.
	counts lineCounts

	// started is when StartLogging first opened the stream: replay after
	// a restart never goes further back (older lines in the copy are from
	// earlier runs of the container).
	started int64
	// replayFrom, when set, is where a re-attached stream resumes shipping
	// from its local copy before it reads the FIFO again.
	replayFrom int64
	replayer   replayer

	// acked is the time of the latest entry Loki accepted, in hand-over
	// order: on restart the local copy is re-sent from the line after it
	// (positions.go, restore.go).
	acked   atomic.Int64
	changed chan<- struct{} // told after acked moves

	mu         sync.Mutex
	stopping   bool
	forceStop  *time.Timer
	ended      bool
	lastHanded int64 // time of the last entry the dispatcher took
	handedAny  bool
	resolved   chan struct{} // closed when the last entry is resolved
	lastAcked  int64
}

var _ loki.Acker = (*stream)(nil)

// Ack is called by the dispatcher, in hand-over order.
func (s *stream) Ack(off int64, delivered bool) {
	if delivered {
		s.acked.Store(off)
		select {
		case s.changed <- struct{}{}:
		default:
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastAcked = off
	s.checkResolved()
}

// checkResolved closes resolved once the stream has ended and its last
// entry has been resolved. Called with s.mu held.
func (s *stream) checkResolved() {
	if !s.ended || s.resolved == nil {
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

// openFIFO opens the read end without blocking. Unless reattach is set it
// also opens a write end of its own ("keeper"): a FIFO read returns EOF
// whenever no writer has it open, and the daemon may open its end only after
// StartLogging returns. The keeper is closed at StopLogging, so the EOF that
// follows the daemon's close means the stream is really over. A re-attached
// stream has no keeper: the daemon's end is open already (or never will be,
// and then EOF at once correctly ends it).
func openFIFO(path string, reattach bool) (fifo io.ReadCloser, keeper io.Closer, err error) {
	r, err := openFIFOReader(path)
	if err != nil {
		return nil, nil, err
	}
	if reattach {
		return r, nil, nil
	}
	if keeper, err = openFIFOKeeper(path); err != nil {
		r.Close()
		return nil, nil, err
	}
	return r, keeper, nil
}

// errors a FrameDecoder recovers from; anything else ends the stream.
func recoverable(err error) bool {
	return errors.Is(err, dockerlog.ErrCorruptFrame) || errors.Is(err, dockerlog.ErrFrameTooLarge)
}

func (s *stream) run(ctx context.Context) {
	defer close(s.done)
	if s.pipe.Joins() {
		stop := s.pipe.StartFlusher(s.handOut)
		defer stop()
	}
	s.replay(ctx) // restore.go
	if s.fifo != nil {
		s.read()
	}
	if s.pipe.Joins() {
		// Every line read is in an entry handed on before the stream
		// counts as ended.
		_ = s.pipe.FlushAll(s.handOut)
	}
	s.mu.Lock()
	if s.forceStop != nil {
		s.forceStop.Stop()
	}
	if s.keeper != nil {
		s.keeper.Close()
		s.keeper = nil
	}
	s.ended = true
	s.checkResolved()
	s.mu.Unlock()
	if s.copy != nil {
		if err := s.copy.Close(); err != nil {
			s.log.Error("closing the local copy", "err", err)
		}
	}
}

// read ships the FIFO's lines until EOF or the FIFO is closed.
func (s *stream) read() {
	dec := dockerlog.NewFrameDecoder(s.fifo, 0)
	joiner := dockerlog.NewJoiner(s.opts.MaxLineSize)
	var f dockerlog.Frame
	for {
		err := dec.Decode(&f)
		if err == nil {
			s.counts.frames++
			if line, ok := joiner.Push(f.Source, f.TimeNano, f.Line, f.EndsLine()); ok {
				s.emit(line)
			}
			if dec.Buffered() == 0 {
				s.settle() // all that was read is handled: before waiting
			}
			continue
		}
		if err == io.EOF {
			break
		}
		if errors.Is(err, dockerlog.ErrTruncatedFrame) {
			s.m.corrupt.Inc()
			s.log.Warn("stream ended inside a frame; the partial frame is skipped", "err", err)
			break
		}
		if recoverable(err) {
			s.m.corrupt.Inc()
			s.log.Warn("skipping a corrupt frame", "err", err)
			continue
		}
		if !errors.Is(err, os.ErrClosed) {
			s.log.Error("reading the FIFO failed; ending the stream", "err", err)
		}
		break
	}
	joiner.Flush(s.emit)
	s.settle()
	s.fifo.Close()
}

// emit ships one complete line from the FIFO and keeps it for docker logs.
func (s *stream) emit(l dockerlog.Line) {
	if l.Truncated {
		s.m.truncated.Inc()
	}
	s.ship(l.Stream, l.TimeNano, l.Data, true)
}

// ship hands one line to the pipeline step, and to the local copy when
// keep.
func (s *stream) ship(source string, timeNano int64, data []byte, keep bool) {
	i := sourceIndex(source)
	s.counts.entries[i]++
	s.counts.bytes[i] += uint64(len(data))
	if keep && s.copy != nil {
		// docker logs prints a plugin's lines as they come: the newline
		// that ended the line in the container goes back on.
		s.copyBuf = append(append(s.copyBuf[:0], data...), '\n')
		s.copyFrame = dockerlog.Frame{Source: source, TimeNano: timeNano, Line: s.copyBuf}
		if err := s.copy.Buffer(&s.copyFrame); err != nil { // not retained
			s.m.copyErrors.Inc()
		}
	}
	if s.set.Dropped {
		// loki-relabel-config drops this container: kept for docker
		// logs, counted, not shipped.
		s.m.relabelDropped.Inc()
		return
	}
	// The offset is the line's own time, whatever a timestamp stage makes
	// of the entry's: acknowledgements follow the FIFO's order.
	_ = s.pipe.Line(source, timeNano, data, timeNano, s.handOut)
}

// handOut hands the dispatcher an entry of the pipeline step
// (pipeline.Out); Handle never blocks, and a full queue is counted by the
// dispatcher. An entry a stage dropped is not handed on: a later entry's
// acknowledgement covers its lines, and after a restart they are read and
// dropped again.
func (s *stream) handOut(o *pipeline.Output) error {
	if !o.Keep {
		return nil
	}
	e := o.Entry
	e.Acker, e.Offset = s, o.Offset
	var err error
	if s.fan != nil {
		err = s.fan.Handle(o.Tenant, e, false)
	} else {
		err = s.disp.Handle(e)
	}
	if err != nil {
		return nil
	}
	s.mu.Lock()
	s.lastHanded, s.handedAny = o.Offset, true
	s.mu.Unlock()
	return nil
}

// settle writes what Buffer kept to the local copy and adds the lines
// counted since the last settle to the metrics. The reader calls it once
// what a read brought in is handled, before it waits for more.
func (s *stream) settle() {
	if s.copy != nil {
		if err := s.copy.Flush(); err != nil {
			s.m.copyErrors.Inc()
		}
	}
	s.m.add(&s.counts)
	s.counts = lineCounts{}
}

// stop is StopLogging's part: it never waits. The daemon closes its end of
// the FIFO right after StopLogging returns; everything it wrote is still in
// the pipe and is read before the EOF. If the EOF does not come within
// grace (a daemon that lost its end), the read is ended by force.
func (s *stream) stop(grace time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return
	}
	s.stopping = true
	if s.keeper != nil {
		s.keeper.Close()
		s.keeper = nil
	}
	if s.fifo != nil {
		if h, ok := s.fifo.(interface{ Hurry() }); ok {
			h.Hurry() // off the grid: read what the daemon wrote now
		}
		s.forceStop = time.AfterFunc(grace, func() { s.fifo.Close() })
	}
}

// abort ends the read (plugin shutdown) once what the pipe holds now is
// read: into the local copy and to the dispatcher, so that it is not lost
// with the pipe if the container stops before the next plugin process
// opens it. What the daemon writes after that stays in the pipe for the
// next process. The caller waits for done.
func (s *stream) abort() {
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
	if s.fifo == nil {
		return
	}
	if d, ok := s.fifo.(interface{ Drain() }); ok {
		d.Drain()
		return
	}
	s.fifo.Close()
}

// release gives back the stream's dispatchers once it has handed its last
// entry; they go on delivering what it handed them.
func (s *stream) release(pool *loki.Pool) {
	if s.fan != nil {
		s.fan.Close()
	}
	pool.Release(s.disp)
}
