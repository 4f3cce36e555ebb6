// Command jsonfile-demo runs logferry's shared core end to end, for `make
// demo`: it writes a Docker json-file log (numbered lines from the test
// generator's format, long lines split into 16 KiB chunks as Docker splits
// them, non-ASCII text, stdout and stderr), reads it back through the
// json-file decoder and the partial-line joiner, labels it with the label
// builder, ships it through the Loki dispatcher, waits until Loki has
// acknowledged every line, and then prints what Loki returns for it.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/logferry/logferry/internal/loggen"
	"github.com/logferry/logferry/shared/dockerlog"
	"github.com/logferry/logferry/shared/labels"
	"github.com/logferry/logferry/shared/logopts"
	"github.com/logferry/logferry/shared/loki"
	"github.com/logferry/logferry/shared/metadata"
)

func main() {
	lokiURL := flag.String("loki", "", "Loki base URL, e.g. http://127.0.0.1:3100")
	dir := flag.String("dir", os.TempDir(), "where to write the json-file log")
	lines := flag.Uint64("lines", 20000, "lines to write")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := run(log, *lokiURL, *dir, *lines); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger, lokiURL, dir string, n uint64) error {
	if lokiURL == "" {
		return errors.New("-loki is required")
	}
	id := fmt.Sprintf("demo%d", time.Now().Unix())
	gen := loggen.Config{ID: id, Lines: n, Size: 200, StderrShare: 0.25, LongEvery: 1000, LongSize: loggen.DefaultLongSize, Unicode: true}
	containerID := fmt.Sprintf("%064x", time.Now().UnixNano())
	path := filepath.Join(dir, containerID+"-json.log")
	start := time.Now()
	if err := writeJSONFile(path, gen); err != nil {
		return err
	}
	st, _ := os.Stat(path)
	fmt.Printf("wrote %d lines (%d bytes) in Docker's json-file format to %s\n", n, st.Size(), path)

	// The same option parser the plugin's log-opts and the sidecar use.
	opts, err := logopts.Parse(logopts.Defaults(), map[string]string{
		"loki-url":             strings.TrimSuffix(lokiURL, "/") + "/loki/api/v1/push",
		"loki-batch-wait":      "200ms",
		"loki-external-labels": "job=logferry-demo",
	})
	if err != nil {
		return err
	}
	builder, err := labels.NewBuilder(opts.Labels, "demo-host")
	if err != nil {
		return err
	}
	set, err := builder.Build(metadata.Container{
		ID: containerID, Name: "/demo-" + id, ImageName: "loggen:demo", ImageID: "sha256:" + strings.Repeat("ab", 32),
		Labels: map[string]string{"com.docker.compose.project": "demo", "com.docker.compose.service": "loggen"},
	})
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	d, err := loki.New(opts.Loki, loki.NewMetrics(reg), log)
	if err != nil {
		return err
	}
	meta := make([]loki.LabelPairAdapter, 0, len(set.StructuredMetadata))
	for _, p := range set.StructuredMetadata {
		meta = append(meta, loki.LabelPairAdapter{Name: p.Name, Value: p.Value})
	}
	acks := &acker{done: make(chan struct{})}
	shipped, truncated, err := ship(path, d, set, meta, acks, opts.MaxLineSize)
	if err != nil {
		d.StopNow()
		return err
	}
	acks.want(shipped)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	select {
	case <-acks.done:
	case <-ctx.Done():
		return fmt.Errorf("Loki acknowledged %d of %d lines in 2 minutes", acks.acked(), shipped)
	}
	if err := d.Stop(ctx); err != nil {
		return err
	}
	fmt.Printf("shipped %d lines (%d cut at max-line-size) through the dispatcher; Loki acknowledged all of them in %v\n",
		shipped, truncated, time.Since(start).Round(time.Millisecond))
	if acks.failed() > 0 {
		return fmt.Errorf("%d lines were dropped, see the log above", acks.failed())
	}
	return report(ctx, lokiURL, id, gen, set)
}

// writeJSONFile writes gen's lines as dockerd's json-file driver does: one
// JSON object per 16 KiB chunk, only a line's last chunk ending in "\n".
// One difference: dockerd cuts at exactly 16 KiB, and when that falls inside
// a multi-byte character json-file writes each half as U+FFFD, damaging the
// line on disk for good; the demo cuts on a character boundary so that the
// check at the end can compare every byte.
func writeJSONFile(path string, gen loggen.Config) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true) // as dockerd does
	t := time.Now().Add(-time.Minute)
	for seq := uint64(1); seq <= gen.Lines; seq++ {
		stream, line := gen.Line(seq)
		ts := t.Add(time.Duration(seq) * time.Microsecond).UTC().Format(time.RFC3339Nano)
		for len(line) > 0 {
			cut := min(len(line), 16<<10)
			for cut < len(line) && cut > 0 && !utf8.RuneStart(line[cut]) {
				cut--
			}
			chunk := line[:cut]
			line = line[len(chunk):]
			if len(line) == 0 {
				chunk += "\n"
			}
			if err := enc.Encode(map[string]string{"log": chunk, "stream": stream, "time": ts}); err != nil {
				return err
			}
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// ship reads the file through the shared decoder and joiner and hands every
// line to the dispatcher with its line number as the acknowledgement offset.
func ship(path string, d *loki.Dispatcher, set labels.Set, meta []loki.LabelPairAdapter, a *acker, maxLine int) (int64, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	var dec dockerlog.JSONDecoder
	var jl dockerlog.JSONLine
	joiner := dockerlog.NewJoiner(maxLine)
	var shipped int64
	truncated := 0
	for {
		raw, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return 0, 0, fmt.Errorf("a json-file line longer than %d bytes", r.Size())
		}
		if len(raw) > 0 {
			if derr := dec.Decode(raw, &jl); derr != nil {
				return 0, 0, derr
			}
			ends := len(jl.Log) > 0 && jl.Log[len(jl.Log)-1] == '\n'
			chunk := jl.Log
			if ends {
				chunk = chunk[:len(chunk)-1]
			}
			if line, ok := joiner.Push(jl.Stream, jl.TimeNano, chunk, ends); ok {
				if line.Truncated {
					truncated++
				}
				if herr := d.Handle(loki.Entry{Stream: set.Stream(line.Stream), TimeNano: line.TimeNano,
					Line: string(line.Data), Metadata: meta, Acker: a, Offset: shipped + 1}); herr != nil {
					return 0, 0, herr
				}
				shipped++
			}
		}
		if err == io.EOF {
			return shipped, truncated, nil
		}
		if err != nil {
			return 0, 0, err
		}
	}
}

// report queries Loki for the run and checks every line arrived once.
func report(ctx context.Context, lokiURL, id string, gen loggen.Config, set labels.Set) error {
	streams := map[string]map[uint64]bool{}
	labelSets := map[string]map[string]string{}
	q := url.Values{}
	q.Set("query", fmt.Sprintf(`{job="logferry-demo", container_name="demo-%s"}`, id))
	q.Set("start", fmt.Sprint(time.Now().Add(-time.Hour).UnixNano()))
	q.Set("end", fmt.Sprint(time.Now().Add(time.Minute).UnixNano()))
	q.Set("limit", "5000")
	q.Set("direction", "forward")
	var samples []string
	metaSample := ""
	for {
		var resp struct {
			Data struct {
				Result []struct {
					Stream map[string]string `json:"stream"`
					Values [][]any           `json:"values"`
				} `json:"result"`
			} `json:"data"`
		}
		if err := getJSON(ctx, lokiURL+"/loki/api/v1/query_range?"+q.Encode(), &resp); err != nil {
			return err
		}
		last := int64(0)
		n := 0
		for _, s := range resp.Data.Result {
			key := fmt.Sprint(s.Stream)
			labelSets[key] = s.Stream
			if streams[key] == nil {
				streams[key] = map[uint64]bool{}
			}
			for _, v := range s.Values {
				n++
				var ts int64
				fmt.Sscan(v[0].(string), &ts)
				last = max(last, ts)
				line := v[1].(string)
				rec, err := loggen.Parse(line)
				if err != nil {
					return fmt.Errorf("Loki returned a damaged line: %w", err)
				}
				streams[key][rec.Seq] = true
				if len(v) > 2 && len(metaSample) == 0 {
					if m, ok := v[2].(map[string]any); ok {
						metaSample = fmt.Sprint(m["structuredMetadata"])
					}
				}
				if len(samples) < 3 && rec.Seq%997 == 1 {
					samples = append(samples, fmt.Sprintf("  %s %.90s...", s.Stream["source"], line))
				}
			}
		}
		if n < 5000 {
			break
		}
		q.Set("start", fmt.Sprint(last)) // entries at `last` come again: the set dedups
	}
	fmt.Println("Loki returns these streams for the run:")
	keys := make([]string, 0, len(labelSets))
	for k := range labelSets {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	total := 0
	for _, k := range keys {
		fmt.Printf("  %v: %d lines\n", labelSets[k], len(streams[k]))
		total += len(streams[k])
	}
	fmt.Println("structured metadata of each entry:", metaSample)
	fmt.Println("sample lines:")
	for _, s := range samples {
		fmt.Println(s)
	}
	if uint64(total) != gen.Lines {
		return fmt.Errorf("Loki has %d distinct lines of %d", total, gen.Lines)
	}
	fmt.Printf("every one of the %d lines is in Loki exactly once, long lines whole, labels %s\n", gen.Lines, set.Stream("stdout"))
	return nil
}

func getJSON(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	// Keep structured metadata apart from the stream's labels.
	req.Header.Set("X-Loki-Response-Encoding-Flags", "categorize-labels")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("query: %s: %s", resp.Status, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// acker counts acknowledgements until the last line is resolved. Ack runs
// on the dispatcher's goroutine, the rest on main's.
type acker struct {
	mu      sync.Mutex
	done    chan struct{}
	closed  bool
	last    int64
	target  int64
	dropped int64
}

func (a *acker) Ack(off int64, delivered bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.last = off
	if !delivered {
		a.dropped++
	}
	a.check()
}

func (a *acker) check() {
	if a.target > 0 && a.last >= a.target && !a.closed {
		a.closed = true
		close(a.done)
	}
}

func (a *acker) want(n int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.target = n
	a.check()
}

func (a *acker) acked() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

func (a *acker) failed() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.dropped
}
