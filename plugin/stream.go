package plugin

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/logferry/logferry/shared/dockerlog"
	"github.com/logferry/logferry/shared/labels"
	"github.com/logferry/logferry/shared/logopts"
	"github.com/logferry/logferry/shared/loki"
)

// copyWriter keeps the lines of one container for `docker logs`.
type copyWriter interface {
	Write(f *dockerlog.Frame) error
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
	meta   []loki.LabelPairAdapter
	disp   *loki.Dispatcher
	copy   copyWriter // nil with no-file
	log    *slog.Logger
	m      *streamMetrics
	fifo   *os.File
	keeper *os.File // our own write end, see openFIFO; nil after stop
	done   chan struct{}
	// copyBuf is the line plus its newline for the local copy; reused.
	copyBuf []byte

	mu        sync.Mutex
	stopping  bool
	forceStop *time.Timer
}

// openFIFO opens the read end without blocking. Unless reattach is set it
// also opens a write end of its own ("keeper"): a FIFO read returns EOF
// whenever no writer has it open, and the daemon may open its end only after
// StartLogging returns. The keeper is closed at StopLogging, so the EOF that
// follows the daemon's close means the stream is really over. A re-attached
// stream has no keeper: the daemon's end is open already (or never will be,
// and then EOF at once correctly ends it).
func openFIFO(path string, reattach bool) (fifo, keeper *os.File, err error) {
	fifo, err = os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	st, err := fifo.Stat()
	if err != nil || st.Mode()&os.ModeNamedPipe == 0 {
		fifo.Close()
		if err == nil {
			err = errors.New("not a FIFO")
		}
		return nil, nil, err
	}
	if reattach {
		return fifo, nil, nil
	}
	keeper, err = os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		fifo.Close()
		return nil, nil, err
	}
	return fifo, keeper, nil
}

// errors a FrameDecoder recovers from; anything else ends the stream.
func recoverable(err error) bool {
	return errors.Is(err, dockerlog.ErrCorruptFrame) || errors.Is(err, dockerlog.ErrFrameTooLarge)
}

func (s *stream) run() {
	defer close(s.done)
	dec := dockerlog.NewFrameDecoder(s.fifo, 0)
	joiner := dockerlog.NewJoiner(s.opts.MaxLineSize)
	var f dockerlog.Frame
	for {
		err := dec.Decode(&f)
		if err == nil {
			s.m.framesRead.Inc()
			if line, ok := joiner.Push(f.Source, f.TimeNano, f.Line, f.EndsLine()); ok {
				s.emit(line)
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
	s.fifo.Close()
	s.mu.Lock()
	if s.forceStop != nil {
		s.forceStop.Stop()
	}
	if s.keeper != nil {
		s.keeper.Close()
		s.keeper = nil
	}
	s.mu.Unlock()
	if s.copy != nil {
		if err := s.copy.Close(); err != nil {
			s.log.Error("closing the local copy", "err", err)
		}
	}
}

// emit ships one complete line and keeps it for docker logs.
func (s *stream) emit(l dockerlog.Line) {
	data := l.Data
	if l.Truncated {
		s.m.truncated.Inc()
	}
	line := string(data)
	if !utf8.ValidString(line) {
		s.m.invalidUTF8.Inc()
		line = replaceInvalidUTF8(line)
	}
	src := s.m.source(l.Stream)
	src.entries.Inc()
	src.bytes.Add(float64(len(line)))
	if s.copy != nil {
		// docker logs prints a plugin's lines as they come: the newline
		// that ended the line in the container goes back on.
		s.copyBuf = append(append(s.copyBuf[:0], data...), '\n')
		if err := s.copy.Write(&dockerlog.Frame{Source: l.Stream, TimeNano: l.TimeNano, Line: s.copyBuf}); err != nil {
			s.m.copyErrors.Inc()
		}
	}
	// Handle never blocks; a full queue is counted by the dispatcher.
	_ = s.disp.Handle(loki.Entry{Stream: s.set.Stream(l.Stream), TimeNano: l.TimeNano, Line: line, Metadata: s.meta})
}

// replaceInvalidUTF8 turns each invalid byte into U+FFFD, as dockerd's
// json-file writer does, so a line reaches Loki the same whichever way it
// was captured.
func replaceInvalidUTF8(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 8)
	for len(s) > 0 {
		r, n := utf8.DecodeRuneInString(s)
		if r == utf8.RuneError && n == 1 {
			b.WriteString("\uFFFD")
		} else {
			b.WriteString(s[:n])
		}
		s = s[n:]
	}
	return b.String()
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
	s.forceStop = time.AfterFunc(grace, func() { s.fifo.Close() })
}

// abort ends the read at once (plugin shutdown): what is still in the pipe
// stays there for the next plugin process to read.
func (s *stream) abort() {
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
	s.fifo.Close()
}
