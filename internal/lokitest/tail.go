package lokitest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/coder/websocket"
)

// TailPath is Loki's live tail, a websocket.
const TailPath = "/loki/api/v1/tail"

// tailReadLimit bounds one tail message: Loki sends what it gathered for
// the tailer in one message, up to a few hundred entries.
const tailReadLimit = 64 << 20

// TailMessage is one message of a live tail: entries as Loki's ingesters
// took them (whatever their timestamps), and how many entries Loki dropped
// because this tail was too slow.
type TailMessage struct {
	Streams []Stream
	Dropped int
}

type tailResponse struct {
	Streams []struct {
		Stream map[string]string   `json:"stream"`
		Values [][]json.RawMessage `json:"values"`
	} `json:"streams"`
	Dropped []struct {
		Labels    map[string]string `json:"labels"`
		Timestamp string            `json:"timestamp"`
	} `json:"dropped_entries"`
}

// Tail follows a log query live (GET /loki/api/v1/tail over a websocket)
// from start on: it calls connected (if not nil) once Loki accepted the
// tail, then fn with each message as it arrives, until ctx ends, Loki closes
// the connection or fn returns an error, and returns why. A live tail sends
// what the ingesters take, as they take it. Entries pushed with a timestamp before
// start can arrive too (a backlog sent after an outage), but Loki does not
// promise it, nor every entry under load: its ingester gives a tail a
// small buffer and drops what does not fit.
func (c *Client) Tail(ctx context.Context, query string, start time.Time, connected func(), fn func(TailMessage) error) error {
	u, err := url.Parse(c.baseURL + TailPath)
	if err != nil {
		return err
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	}
	q := url.Values{}
	q.Set("query", query)
	q.Set("start", strconv.FormatInt(start.UnixNano(), 10))
	q.Set("delay_for", "0")
	u.RawQuery = q.Encode()
	conn, resp, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{HTTPClient: c.hc})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return fmt.Errorf("lokitest: tail: %w", err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(tailReadLimit)
	if connected != nil {
		connected()
	}
	return readTail(ctx, conn, fn)
}

func readTail(ctx context.Context, conn *websocket.Conn, fn func(TailMessage) error) error {
	for {
		typ, data, err := conn.Read(ctx)
		if err != nil {
			return fmt.Errorf("lokitest: tail: %w", err)
		}
		if typ != websocket.MessageText {
			continue
		}
		m, err := decodeTail(data)
		if err != nil {
			return err
		}
		if err := fn(m); err != nil {
			return err
		}
	}
}

func decodeTail(data []byte) (TailMessage, error) {
	var resp tailResponse
	if err := json.Unmarshal(data, &resp); err != nil {
		return TailMessage{}, fmt.Errorf("lokitest: decoding tail message: %w", err)
	}
	m := TailMessage{Dropped: len(resp.Dropped), Streams: make([]Stream, 0, len(resp.Streams))}
	for _, r := range resp.Streams {
		st, err := decodeStream(r.Stream, r.Values)
		if err != nil {
			return TailMessage{}, fmt.Errorf("lokitest: tail: %w", err)
		}
		m.Streams = append(m.Streams, st)
	}
	return m, nil
}
