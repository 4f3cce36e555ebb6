// Command loggen writes numbered, self-describing log lines to stdout and
// stderr for logferry's end-to-end tests and benchmarks. It runs as the only
// program of a FROM scratch test image, so it uses the standard library only
// and builds with CGO_ENABLED=0.
//
// Each line is written with one write call, so lines never interleave within
// a stream. The line format is internal/loggen's; a test rebuilds the same
// loggen.Config from the flags to know every line it should receive.
//
// loggen writes nothing of its own to stdout or stderr unless it fails (exit
// status 2 for bad flags, 1 for a failed write). As PID 1 in a container it
// would ignore SIGTERM by default, so it handles SIGTERM and SIGINT: it stops
// writing and exits 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/logferry/logferry/internal/loggen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	cfg        loggen.Config
	rate       float64
	sleepAfter time.Duration
	// invalidUTF8: after the numbered lines, one stdout line of this many
	// 0xFF bytes (no valid UTF-8 at all), for tests of the line cap.
	invalidUTF8 int
	// say: lines written to stdout before the numbered ones, separated
	// by '|', for tests of what stages do with a line's text.
	say string
	// traceEvery: after every traceEvery-th numbered line, write a Java
	// stack trace's continuation lines (TraceLines) to the same stream.
	traceEvery uint64
}

func parseFlags(args []string, errOut io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("loggen", flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.Uint64Var(&o.cfg.Lines, "n", 1000, "number of lines to write")
	fs.IntVar(&o.cfg.Size, "size", 100, "typical line size in bytes (a line is never shorter than its header)")
	fs.Float64Var(&o.rate, "rate", 0, "lines per second; 0 writes as fast as possible")
	fs.Float64Var(&o.cfg.StderrShare, "stderr", 0, "share of lines written to stderr, 0..1")
	fs.Uint64Var(&o.cfg.LongEvery, "long-every", 0, "make every K-th line a long line of -long-size bytes; 0: none")
	fs.IntVar(&o.cfg.LongSize, "long-size", loggen.DefaultLongSize, "size of a long line in bytes (Docker splits lines over 16 KiB)")
	fs.BoolVar(&o.cfg.Unicode, "unicode", false, "pad with non-ASCII text (accents, CJK, emoji) and characters JSON escapes")
	fs.StringVar(&o.cfg.ID, "id", "loggen", "run id written in every line, [A-Za-z0-9._-]")
	fs.Uint64Var(&o.traceEvery, "trace-every", 0, "after every K-th line, write a Java stack trace's continuation lines to the same stream; 0: none")
	fs.StringVar(&o.say, "say", "", "before the numbered lines, write these lines to stdout, separated by |")
	fs.IntVar(&o.invalidUTF8, "invalid-utf8", 0, "after the lines, write one stdout line of this many 0xFF bytes (invalid UTF-8)")
	fs.DurationVar(&o.sleepAfter, "sleep-after", 0, "stay alive this long after the last line (until SIGTERM)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	var errs []error
	if err := o.cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if o.rate < 0 || o.rate != o.rate {
		errs = append(errs, fmt.Errorf("-rate %v: must not be negative", o.rate))
	}
	if o.invalidUTF8 < 0 || o.invalidUTF8 > 64<<20 {
		errs = append(errs, fmt.Errorf("-invalid-utf8 %d: want 0 to 64 MiB", o.invalidUTF8))
	}
	if o.sleepAfter < 0 {
		errs = append(errs, fmt.Errorf("-sleep-after %v: must not be negative", o.sleepAfter))
	}
	return o, errors.Join(errs...)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "loggen: %v\n", err)
		}
		return 2
	}
	if err := generate(ctx, o, stdout, stderr); err != nil {
		if errors.Is(err, context.Canceled) {
			return 0
		}
		fmt.Fprintf(stderr, "loggen: %v\n", err)
		return 1
	}
	if o.sleepAfter > 0 {
		wait(ctx, o.sleepAfter)
	}
	return 0
}

// generate writes lines 1..Lines, paced to o.rate lines per second if it is
// positive. Pacing follows a schedule from the start time, so a slow write
// is caught up and the average rate holds.
func generate(ctx context.Context, o options, stdout, stderr io.Writer) error {
	var interval time.Duration
	if o.rate > 0 {
		interval = time.Duration(float64(time.Second) / o.rate)
	}
	if o.say != "" {
		for _, l := range strings.Split(o.say, "|") {
			if _, err := io.WriteString(stdout, l+"\n"); err != nil {
				return fmt.Errorf("writing -say: %w", err)
			}
		}
	}
	start := time.Now()
	buf := make([]byte, 0, max(o.cfg.Size, o.cfg.LongSize)+128)
	for seq := uint64(1); seq <= o.cfg.Lines; seq++ {
		if interval > 0 {
			if !wait(ctx, time.Until(start.Add(time.Duration(seq-1)*interval))) {
				return ctx.Err()
			}
		} else if ctx.Err() != nil {
			return ctx.Err()
		}
		stream, line := o.cfg.AppendLine(buf[:0], seq)
		line = append(line, '\n')
		w := stdout
		if stream == loggen.Stderr {
			w = stderr
		}
		if _, err := w.Write(line); err != nil {
			return fmt.Errorf("writing line %d to %s: %w", seq, stream, err)
		}
		if o.traceEvery > 0 && seq%o.traceEvery == 0 {
			for _, l := range loggen.TraceLines {
				if _, err := io.WriteString(w, l+"\n"); err != nil {
					return fmt.Errorf("writing line %d's trace to %s: %w", seq, stream, err)
				}
			}
		}
		buf = line
	}
	if o.invalidUTF8 > 0 {
		bad := make([]byte, o.invalidUTF8+1)
		for i := range o.invalidUTF8 {
			bad[i] = 0xff
		}
		bad[o.invalidUTF8] = '\n'
		if _, err := stdout.Write(bad); err != nil {
			return fmt.Errorf("writing the invalid UTF-8 line: %w", err)
		}
	}
	return nil
}

// wait returns true after d, or false as soon as ctx is done.
func wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
