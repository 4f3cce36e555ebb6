package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang/snappy"
)

// Sink is a Loki-compatible push endpoint on 127.0.0.1 that decodes every
// push (snappy, then the protobuf PushRequest of shared/loki) and counts its
// entries and line bytes. The decoding is the sink's cost, paid in the
// benchmark's own process, not the plugin's; it must stay well ahead of the
// plugin, or the plugin's queue fills and it drops entries.
type Sink struct {
	srv *http.Server
	ln  net.Listener
	wg  sync.WaitGroup

	entries  atomic.Int64
	bytes    atomic.Int64
	requests atomic.Int64
	bad      atomic.Int64

	mu      sync.Mutex // one decode at a time: the buffers are reused
	body    []byte
	raw     []byte
	streams map[string]int64 // entries per stream selector
	changed chan struct{}    // closed and replaced when a push was counted
	delay   time.Duration    // SetDelay
	track   *lineTrack       // TrackLines
	forward string           // Forward
	fwd     *http.Client
}

// Forward makes the sink hand every push, as it came, to a real Loki's
// push URL before it answers: the shipper's push succeeds only once that
// Loki has accepted it (its status is passed back when it refuses), and
// TrackLines' latency runs to that moment, when Loki's ingesters hold the
// entries and queries find them. Call it before the first push.
func (s *Sink) Forward(pushURL string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forward = pushURL
	s.fwd = &http.Client{Timeout: 30 * time.Second}
}

// pass hands body to the Loki of Forward; the status to answer with when
// it did not accept it. Called with s.mu held.
func (s *Sink) pass(r *http.Request, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, s.forward, bytes.NewReader(body))
	if err != nil {
		return http.StatusInternalServerError, err
	}
	for _, h := range []string{"Content-Type", "Content-Encoding", "X-Scope-OrgID"} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	resp, err := s.fwd.Do(req)
	if err != nil {
		return http.StatusBadGateway, err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Errorf("loki: %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return 0, nil
}

// SetDelay makes every push wait d before it is answered, as a slow Loki
// would: the plugin pushes one batch at a time, so this bounds its rate.
func (s *Sink) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// NewSink starts a sink on a free port of 127.0.0.1.
func NewSink() (*Sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("sink: %w", err)
	}
	s := &Sink{ln: ln, streams: map[string]int64{}, changed: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /loki/api/v1/push", s.push)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// URL is the push URL to give the plugin as LOKI_URL.
func (s *Sink) URL() string { return "http://" + s.ln.Addr().String() + "/loki/api/v1/push" }

func (s *Sink) push(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	s.body, err = readAll(r.Body, s.body[:0])
	if err == nil {
		var n int
		if n, err = snappy.DecodedLen(s.body); err == nil {
			if cap(s.raw) < n {
				s.raw = make([]byte, n)
			}
			s.raw, err = snappy.Decode(s.raw[:n], s.body)
		}
	}
	if err == nil && s.forward != "" {
		if status, ferr := s.pass(r, s.body); ferr != nil {
			http.Error(w, "sink: "+ferr.Error(), status)
			return
		}
	}
	var entries, lineBytes int64
	if err == nil {
		entries, lineBytes, err = s.count(s.raw)
	}
	if err != nil {
		s.bad.Add(1)
		http.Error(w, "sink: "+err.Error(), http.StatusBadRequest)
		return
	}
	if s.delay > 0 {
		t := time.NewTimer(s.delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
	}
	s.entries.Add(entries)
	s.bytes.Add(lineBytes)
	s.requests.Add(1)
	close(s.changed)
	s.changed = make(chan struct{})
	w.WriteHeader(http.StatusNoContent)
}

// count walks a PushRequest in protobuf wire format and counts its entries
// and line bytes per stream without building the message: decoding it with
// PushRequest.Unmarshal allocates every line and made the sink slower than
// the plugin it measures. Every field is checked to be well-formed. Called
// with s.mu held.
func (s *Sink) count(p []byte) (entries, lineBytes int64, err error) {
	now := time.Now()
	err = walk(p, func(field int, v []byte) error {
		if field != 1 { // PushRequest.streams
			return nil
		}
		var labels []byte
		var n int64
		err := walk(v, func(field int, v []byte) error {
			switch field {
			case 1: // StreamAdapter.labels
				labels = v
			case 2: // StreamAdapter.entries
				n++
				var ts time.Time
				var line []byte
				err := walk(v, func(field int, v []byte) error {
					switch field {
					case 1: // EntryAdapter.timestamp
						var err error
						ts, err = entryTime(v)
						return err
					case 2: // EntryAdapter.line
						lineBytes += int64(len(v))
						line = v
					}
					return nil
				})
				if err == nil && s.track != nil {
					s.track.line(ts, line, now)
				}
				return err
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(labels) == 0 {
			return errors.New("a stream without labels")
		}
		if _, ok := s.streams[string(labels)]; ok {
			s.streams[string(labels)] += n
		} else {
			s.streams[string(labels)] = n
		}
		entries += n
		return nil
	})
	return entries, lineBytes, err
}

var errWire = errors.New("malformed protobuf")

// walk calls fn with each length-delimited field of message p (other wire
// types are checked and skipped).
func walk(p []byte, fn func(field int, v []byte) error) error {
	for len(p) > 0 {
		key, n := binary.Uvarint(p)
		if n <= 0 {
			return errWire
		}
		p = p[n:]
		field, wire := int(key>>3), key&7
		switch wire {
		case 0: // varint
			if _, n = binary.Uvarint(p); n <= 0 {
				return errWire
			}
			p = p[n:]
		case 1: // 64-bit
			if len(p) < 8 {
				return errWire
			}
			p = p[8:]
		case 5: // 32-bit
			if len(p) < 4 {
				return errWire
			}
			p = p[4:]
		case 2: // length-delimited
			l, n := binary.Uvarint(p)
			if n <= 0 || l > uint64(len(p)-n) {
				return errWire
			}
			v := p[n : n+int(l)]
			p = p[n+int(l):]
			if err := fn(field, v); err != nil {
				return err
			}
		default:
			return errWire
		}
	}
	return nil
}

// readAll is io.ReadAll into a reused buffer.
func readAll(r io.Reader, b []byte) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			if errors.Is(err, io.EOF) {
				return b, nil
			}
			return b, err
		}
	}
}

// Entries returns the entries received so far.
func (s *Sink) Entries() int64 { return s.entries.Load() }

// Bytes returns the line bytes received so far.
func (s *Sink) Bytes() int64 { return s.bytes.Load() }

// Requests returns the pushes accepted so far.
func (s *Sink) Requests() int64 { return s.requests.Load() }

// Rejected returns the pushes that could not be decoded.
func (s *Sink) Rejected() int64 { return s.bad.Load() }

// Streams returns how many distinct stream selectors have been received.
func (s *Sink) Streams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams)
}

// Reset forgets the counts, for a new phase of a run.
func (s *Sink) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entries.Store(0)
	s.bytes.Store(0)
	s.requests.Store(0)
	clear(s.streams)
}

// WaitEntries returns when the sink has counted at least n entries, or
// when done() reports true (the caller knows no more can come, e.g. the
// rest was dropped and counted), or with ctx's error. done is asked only
// every half second, so that it may be costly (a scrape of the plugin).
func (s *Sink) WaitEntries(ctx context.Context, n int64, done func() bool) error {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		changed := s.changed
		s.mu.Unlock()
		if s.entries.Load() >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sink has %d of %d entries: %w", s.entries.Load(), n, ctx.Err())
		case <-changed:
		case <-tick.C:
			if done != nil && done() {
				return nil
			}
		}
	}
}

// Close stops the sink.
func (s *Sink) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	s.wg.Wait()
	return err
}
