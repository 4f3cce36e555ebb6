// Command demo-check prints what Loki holds for the container of `make demo`
// and checks it. Each -run MODE=ID names one run of the log generator in
// that container, captured one way (MODE: sidecar, plugin): every line the
// run wrote must be in Loki exactly once, whole, on the stream it was
// written to. Given two or more runs it then compares their label sets,
// which the migration path promises are identical, and fails if they are
// not.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/logferry/logferry/internal/loggen"
	"github.com/logferry/logferry/internal/lokitest"
)

// run is one generator run, captured by one mode.
type run struct {
	mode, id string
	lines    uint64
	streams  map[string]*runStream // by label string
	seen     map[uint64]int        // sequence number -> times in Loki
	metaKeys map[string]bool       // structured metadata keys on its entries
	// splitRunes counts lines that arrived as dockerd's json-file driver
	// stored them, not as the container wrote them: see jsonFileView.
	splitRunes int
}

// parse reads a generator line. split is true for a line that differs
// from what the generator wrote only as jsonFileView changes it.
func parse(line string) (rec loggen.Record, split bool, err error) {
	rec, err = loggen.Parse(line)
	if err == nil {
		return rec, false, nil
	}
	if (errors.Is(err, loggen.ErrLength) || errors.Is(err, loggen.ErrContent)) && rec.Unicode && rec.Len > loggen.DockerChunk &&
		line == loggen.JSONFileView(loggen.Format(rec.ID, rec.Seq, rec.Stream, rec.Len, rec.Unicode)) {
		return rec, true, nil
	}
	return rec, false, err
}

type runStream struct {
	labels string
	lines  int
	first  lokitest.Entry
}

type runFlags []*run

func (r *runFlags) String() string { return "" }

func (r *runFlags) Set(v string) error {
	mode, id, ok := strings.Cut(v, "=")
	if !ok || mode == "" || !loggen.ValidID(id) {
		return fmt.Errorf("want MODE=ID with a generator run id, got %q", v)
	}
	*r = append(*r, &run{mode: mode, id: id})
	return nil
}

func main() {
	var runs runFlags
	lokiURL := flag.String("loki", "", "Loki base URL")
	container := flag.String("container", "", "the container's name (its container_name label)")
	lines := flag.Uint64("lines", 0, "lines each run wrote")
	flag.Var(&runs, "run", "MODE=ID: a capture mode and the generator run id it captured (repeatable)")
	details := flag.Bool("details", false, "print each stream's first line and structured metadata")
	timeout := flag.Duration("timeout", 2*time.Minute, "how long to wait for the lines")
	settle := flag.Duration("settle", 2*time.Second, "after every line arrived, query again this much later to catch late duplicates")
	flag.Parse()
	err := check(*lokiURL, *container, runs, *lines, *details, *timeout, *settle)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo-check: FAILED:", err)
		os.Exit(1)
	}
}

func check(lokiURL, container string, runs []*run, lines uint64, details bool, timeout, settle time.Duration) error {
	switch {
	case lokiURL == "":
		return errors.New("-loki is required")
	case container == "":
		return errors.New("-container is required")
	case len(runs) == 0:
		return errors.New("give at least one -run MODE=ID")
	case lines == 0:
		return errors.New("-lines must be positive")
	}
	for _, r := range runs {
		r.lines = lines
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c := lokitest.NewClient(lokiURL)
	query := fmt.Sprintf("{container_name=%q}", container)
	start := time.Now().Add(-time.Hour)

	// Wait until every run's lines are there (delivery takes a batch wait
	// or two), then once more a little later: a duplicate that arrives
	// after the count was reached must still be seen.
	var streams []lokitest.Stream
	for {
		got, err := c.QueryAll(ctx, query, start, time.Now().Add(time.Minute))
		if err == nil {
			streams = got
			if complete(streams, runs) {
				break
			}
		} else if ctx.Err() == nil {
			return fmt.Errorf("querying Loki for %s: %w", query, err)
		}
		select {
		case <-ctx.Done():
			if _, err := tally(streams, runs); err != nil {
				return fmt.Errorf("after %v Loki has for %s: %s; %w", timeout, query, counts(runs), err)
			}
			return fmt.Errorf("after %v Loki has for %s: %s", timeout, query, counts(runs))
		case <-time.After(500 * time.Millisecond):
		}
	}
	if settle > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("no time left to query %s again: %w", query, ctx.Err())
		case <-time.After(settle):
		}
		var err error
		if streams, err = c.QueryAll(ctx, query, start, time.Now().Add(time.Minute)); err != nil {
			return fmt.Errorf("querying Loki for %s: %w", query, err)
		}
	}
	other, err := tally(streams, runs)
	if err != nil {
		return err
	}

	fmt.Printf("Loki returns for %s:\n", query)
	var failed []error
	for _, r := range runs {
		printRun(r, details)
		if err := r.verify(); err != nil {
			failed = append(failed, fmt.Errorf("%s: %w", r.mode, err))
		}
	}
	if other > 0 {
		fmt.Printf("  (and %d lines of earlier runs of this container, not checked here)\n", other)
	}
	if len(failed) > 0 {
		return errors.Join(failed...)
	}
	if len(runs) > 1 {
		return compare(runs)
	}
	return nil
}

// complete reports whether each run has at least its lines in streams.
func complete(streams []lokitest.Stream, runs []*run) bool {
	n := map[string]uint64{}
	for _, s := range streams {
		for _, e := range s.Entries {
			if rec, _, err := parse(e.Line); err == nil {
				n[rec.ID]++
			}
		}
	}
	for _, r := range runs {
		if n[r.id] < r.lines {
			return false
		}
	}
	return true
}

// tally sorts the entries of streams into runs and checks each line is
// whole and on the stream it was written to. It returns how many lines
// belong to none of the runs.
func tally(streams []lokitest.Stream, runs []*run) (other int, err error) {
	byID := map[string]*run{}
	for _, r := range runs {
		r.streams, r.seen, r.metaKeys, r.splitRunes = map[string]*runStream{}, map[uint64]int{}, map[string]bool{}, 0
		byID[r.id] = r
	}
	for _, s := range streams {
		key := lokitest.LabelString(s.Labels)
		for _, e := range s.Entries {
			rec, split, err := parse(e.Line)
			if err != nil {
				return other, fmt.Errorf("a damaged line on %s: %w", key, err)
			}
			r, ok := byID[rec.ID]
			if !ok {
				other++
				continue
			}
			if rec.Stream != s.Labels["source"] {
				return other, fmt.Errorf("%s: line %d was written to %s but is on %s", r.mode, rec.Seq, rec.Stream, key)
			}
			rs, ok := r.streams[key]
			if !ok {
				rs = &runStream{labels: key, first: e}
				r.streams[key] = rs
			}
			rs.lines++
			r.seen[rec.Seq]++
			if split {
				r.splitRunes++
			}
			for k := range e.StructuredMetadata {
				r.metaKeys[k] = true
			}
		}
	}
	return other, nil
}

func counts(runs []*run) string {
	var parts []string
	for _, r := range runs {
		n := 0
		for _, s := range r.streams {
			n += s.lines
		}
		parts = append(parts, fmt.Sprintf("%s %d of %d lines", r.mode, n, r.lines))
	}
	return strings.Join(parts, ", ")
}

func (r *run) total() int {
	n := 0
	for _, s := range r.streams {
		n += s.lines
	}
	return n
}

// labelSets returns the run's streams' label strings, sorted.
func (r *run) labelSets() []string {
	return slices.Sorted(maps.Keys(r.streams))
}

// verify checks every line 1..lines is in Loki exactly once.
func (r *run) verify() error {
	var missing, repeated int
	firstBad := uint64(0)
	for seq := uint64(1); seq <= r.lines; seq++ {
		switch n := r.seen[seq]; {
		case n == 0:
			missing++
		case n > 1:
			repeated++
		default:
			continue
		}
		if firstBad == 0 {
			firstBad = seq
		}
	}
	extra := 0
	for seq := range r.seen {
		if seq == 0 || seq > r.lines {
			extra++
		}
	}
	if missing > 0 || repeated > 0 || extra > 0 {
		return fmt.Errorf("run %s wrote %d lines; Loki has %d: %d missing, %d more than once, %d out of range (first wrong: line %d)",
			r.id, r.lines, r.total(), missing, repeated, extra, firstBad)
	}
	return nil
}

func printRun(r *run, details bool) {
	fmt.Printf("  %s (generator run %s): %d lines in Loki, the container wrote %d\n", r.mode, r.id, r.total(), r.lines)
	for _, key := range r.labelSets() {
		s := r.streams[key]
		fmt.Printf("    %s: %d lines\n", key, s.lines)
		if details {
			fmt.Printf("      first line: %.100s...\n", s.first.Line)
			fmt.Printf("      structured metadata: %v\n", s.first.StructuredMetadata)
		}
	}
	if r.verify() != nil {
		return
	}
	if r.splitRunes == 0 {
		fmt.Printf("    every one of the %d lines is in Loki exactly once and whole (long lines included)\n", r.lines)
		return
	}
	fmt.Printf("    every one of the %d lines is in Loki exactly once; all are whole but %d long lines, which carry U+FFFD\n"+
		"    where dockerd cut a multi-byte character at a 16 KiB chunk boundary: the json-file driver stores those\n"+
		"    bytes as U+FFFD, so no reader of the file can get them back (the plugin receives them raw)\n", r.lines, r.splitRunes)
}

// compare prints whether every run has the same label sets as the first,
// and fails if one has not. Structured metadata keys are compared too, but
// only reported: the promise is about labels.
func compare(runs []*run) error {
	names := make([]string, len(runs))
	for i, r := range runs {
		names[i] = r.mode
	}
	want := runs[0].labelSets()
	var differ []string
	for _, r := range runs[1:] {
		if !slices.Equal(r.labelSets(), want) {
			differ = append(differ, r.mode)
		}
	}
	wantMeta := slices.Sorted(maps.Keys(runs[0].metaKeys))
	for _, r := range runs[1:] {
		if got := slices.Sorted(maps.Keys(r.metaKeys)); !slices.Equal(got, wantMeta) {
			fmt.Printf("note: structured metadata keys differ: %s has %v, %s has %v\n", runs[0].mode, wantMeta, r.mode, got)
		}
	}
	if len(differ) > 0 {
		fmt.Printf("RESULT: the label sets DIFFER between %s\n", strings.Join(names, " and "))
		for _, r := range runs {
			fmt.Printf("  %s:\n", r.mode)
			for _, l := range r.labelSets() {
				fmt.Printf("    %s\n", l)
			}
		}
		return fmt.Errorf("%s produced other label sets than %s", strings.Join(differ, ", "), runs[0].mode)
	}
	fmt.Printf("RESULT: the label sets are IDENTICAL: %s give the same %d streams\n", strings.Join(names, " and "), len(want))
	for _, l := range want {
		fmt.Printf("  %s\n", l)
	}
	fmt.Printf("  (structured metadata, not labels: %s)\n", strings.Join(wantMeta, ", "))
	return nil
}
