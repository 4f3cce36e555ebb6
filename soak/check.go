package soak

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Delivery is what Loki holds of one container, by loggen sequence number.
type Delivery struct {
	Written    uint64 // lines the container wrote (its -n; it exited 0)
	Delivered  uint64 // distinct lines found
	Duplicated uint64 // extra copies
	Damaged    uint64 // entries that are not one of its lines, whole
	Stored     uint64 // long non-ASCII lines in json-file's stored form (U+FFFD at a 16 KiB cut)
	FirstGap   string // e.g. "1201-1300" when lines are missing
	// Sampled are the lines the prober follows (sequence number a multiple
	// of 100) found, with their timestamps.
	Sampled []SampledLine
}

// SampledLine is a sampled line as the delivery check found it.
type SampledLine struct {
	Seq   uint64
	Write time.Time
}

// Lost is written minus delivered.
func (d Delivery) Lost() uint64 { return d.Written - d.Delivered }

// checkContainer reads back every entry of c from Loki and counts its
// lines. TTY lines end in the \r the terminal added, which json-file and
// the plugin keep; it is removed before the line is checked. Lines the
// sidecar read from json-file are compared with json-file's stored form.
func checkContainer(ctx context.Context, e *env, c *container, from, to time.Time) (Delivery, error) {
	d := Delivery{Written: c.gen.Lines}
	streams, err := e.loki.QueryAll(ctx, fmt.Sprintf(`{container_name=%q}`, c.name), from, to)
	if err != nil {
		return d, err
	}
	seen := make([]uint8, c.gen.Lines+1)
	for _, s := range streams {
		for _, en := range s.Entries {
			line := en.Line
			if c.tty {
				line = strings.TrimSuffix(line, "\r")
			}
			rec, split, err := parseStored(line, c.style == styleFile)
			if split {
				d.Stored++
			}
			if err != nil || rec.ID != c.gen.ID || rec.Seq < 1 || rec.Seq > c.gen.Lines ||
				(!c.tty && s.Labels["source"] != rec.Stream) {
				d.Damaged++
				continue
			}
			if seen[rec.Seq] == 0 && rec.Seq%100 == 0 {
				d.Sampled = append(d.Sampled, SampledLine{Seq: rec.Seq, Write: time.Unix(0, en.Timestamp)})
			}
			if seen[rec.Seq] < 255 {
				seen[rec.Seq]++
			}
		}
	}
	for seq := uint64(1); seq <= c.gen.Lines; seq++ {
		switch n := seen[seq]; {
		case n == 0:
			if d.FirstGap == "" {
				end := seq
				for end < c.gen.Lines && seen[end+1] == 0 {
					end++
				}
				d.FirstGap = fmt.Sprintf("%d-%d", seq, end)
			}
		default:
			d.Delivered++
			d.Duplicated += uint64(n - 1)
		}
	}
	return d, nil
}

// checkAll checks every container that ran, four at a time. Containers
// with missing lines are checked again every 10 s until settle passes, for
// lines still on their way.
func checkAll(ctx context.Context, e *env, cs []*container, from time.Time, settle time.Duration) (map[*container]Delivery, error) {
	out := map[*container]Delivery{}
	var mu sync.Mutex
	todo := cs
	deadline := time.Now().Add(settle)
	for {
		var (
			wg   sync.WaitGroup
			errs []error
			next []*container
			sem  = make(chan struct{}, 4)
		)
		for _, c := range todo {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
				defer cancel()
				d, err := checkContainer(cctx, e, c, from, time.Now().Add(time.Minute))
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", c.name, err))
					next = append(next, c)
					return
				}
				out[c] = d
				if d.Lost() > 0 {
					next = append(next, c)
				}
			}()
		}
		wg.Wait()
		if len(next) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return out, errors.Join(errs...)
		}
		e.logf("delivery check: %d containers still miss lines; checking again in 10 s", len(next))
		if !sleepCtx(ctx, 10*time.Second) {
			return out, ctx.Err()
		}
		todo = next
	}
}

// waitIdle waits until the plugin has no stream left (a stream ends once
// Loki has resolved its last line) and the sidecar's queue and spool are
// empty, or limit passes.
func waitIdle(ctx context.Context, e *env, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		pb, err1 := scrape(ctx, e.pluginMetrics)
		sb, err2 := scrape(ctx, e.sc.metrics)
		pm, sm := sumFamilies(pb, metricNames), sumFamilies(sb, metricNames)
		if err1 == nil && err2 == nil &&
			pm["logferry_plugin_streams_active"]+pm["logferry_plugin_streams_draining"] == 0 &&
			pm["logferry_loki_queue_bytes"] == 0 && sm["logferry_loki_queue_bytes"] == 0 &&
			sm["logferry_spool_unacked_bytes"] == 0 && pm["logferry_spool_unacked_bytes"] == 0 {
			return true
		}
		if !sleepCtx(ctx, time.Second) {
			return false
		}
	}
	return false
}
