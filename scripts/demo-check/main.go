// Command demo-check prints what Loki holds for one container of `make demo`
// and checks that every line the log generator wrote is there exactly once,
// whole, on the stream it was written to.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/logferry/logferry/internal/loggen"
	"github.com/logferry/logferry/internal/lokitest"
)

func main() {
	lokiURL := flag.String("loki", "", "Loki base URL")
	query := flag.String("query", "", "LogQL stream selector")
	lines := flag.Uint64("lines", 0, "lines the generator wrote")
	id := flag.String("id", "", "the generator's run id")
	flag.Parse()
	if err := run(*lokiURL, *query, *id, *lines); err != nil {
		fmt.Fprintln(os.Stderr, "demo-check:", err)
		os.Exit(1)
	}
}

func run(lokiURL, query, id string, lines uint64) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := lokitest.NewClient(lokiURL)
	var streams []lokitest.Stream
	// The plugin delivers within its batch wait; give it a few seconds.
	for {
		var err error
		streams, err = c.QueryAll(ctx, query, time.Now().Add(-time.Hour), time.Now().Add(time.Minute))
		if err != nil {
			return err
		}
		if uint64(lokitest.Count(streams)) >= lines {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("Loki has %d of %d lines after 2 minutes", lokitest.Count(streams), lines)
		case <-time.After(500 * time.Millisecond):
		}
	}
	sort.Slice(streams, func(i, j int) bool {
		return lokitest.LabelString(streams[i].Labels) < lokitest.LabelString(streams[j].Labels)
	})
	seen := map[uint64]int{}
	fmt.Printf("Loki returns for %s:\n", query)
	for _, s := range streams {
		fmt.Printf("  %s: %d lines\n", lokitest.LabelString(s.Labels), len(s.Entries))
		for i, e := range s.Entries {
			rec, err := loggen.Parse(e.Line)
			if err != nil {
				return fmt.Errorf("a damaged line: %w", err)
			}
			if rec.ID != id || rec.Stream != s.Labels["source"] {
				return fmt.Errorf("line %d of run %s is on %s", rec.Seq, rec.ID, s.Labels["source"])
			}
			seen[rec.Seq]++
			if i == 0 {
				fmt.Printf("    first line: %.100s...\n", e.Line)
				fmt.Printf("    structured metadata: %v\n", e.StructuredMetadata)
			}
		}
	}
	for seq := uint64(1); seq <= lines; seq++ {
		if seen[seq] != 1 {
			return fmt.Errorf("line %d is in Loki %d times", seq, seen[seq])
		}
	}
	fmt.Printf("every one of the %d lines is in Loki exactly once and whole (long lines included)\n", lines)
	return nil
}
