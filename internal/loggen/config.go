package loggen

import (
	"errors"
	"fmt"
	"math"
)

// DefaultLongSize is the size of a long line: more than the 16 KiB at which
// Docker splits a line into partial messages, and not a multiple of it.
const DefaultLongSize = 40 << 10

// Config is what the generator writes; a test builds the same Config to know
// which line to expect on which stream. Lines are numbered from 1 to Lines.
type Config struct {
	ID          string  // run id, see ValidID
	Lines       uint64  // number of lines
	Size        int     // typical line size in bytes
	StderrShare float64 // share of lines on stderr, 0..1
	LongEvery   uint64  // every LongEvery-th line is LongSize bytes; 0: none
	LongSize    int
	Unicode     bool // pad with non-ASCII text, see Format
	// JSON wraps every line in a JSON object, as a service that logs JSON
	// writes it (see AppendJSON): Size is then the whole object's size.
	JSON bool
}

// Validate reports every invalid field, naming its flag.
func (c Config) Validate() error {
	var errs []error
	if !ValidID(c.ID) {
		errs = append(errs, fmt.Errorf("-id %q: want 1 to 64 characters of [A-Za-z0-9._-]", c.ID))
	}
	if c.Size < 0 {
		errs = append(errs, fmt.Errorf("-size %d: must not be negative", c.Size))
	}
	if math.IsNaN(c.StderrShare) || c.StderrShare < 0 || c.StderrShare > 1 {
		errs = append(errs, fmt.Errorf("-stderr %v: want a share between 0 and 1", c.StderrShare))
	}
	if c.LongEvery > 0 && c.LongSize <= 0 {
		errs = append(errs, fmt.Errorf("-long-size %d: must be positive with -long-every", c.LongSize))
	}
	return errors.Join(errs...)
}

// Stream returns the stream line seq is written to. Stderr lines are spread
// evenly: line seq goes to stderr when floor(seq*share) steps up.
func (c Config) Stream(seq uint64) string {
	if c.StderrShare <= 0 {
		return Stdout
	}
	if math.Floor(float64(seq)*c.StderrShare) > math.Floor(float64(seq-1)*c.StderrShare) {
		return Stderr
	}
	return Stdout
}

// LineSize returns the size line seq is padded to.
func (c Config) LineSize(seq uint64) int {
	if c.LongEvery > 0 && seq%c.LongEvery == 0 {
		return c.LongSize
	}
	return c.Size
}

// Line returns line seq and its stream.
func (c Config) Line(seq uint64) (stream, line string) {
	stream, b := c.AppendLine(nil, seq)
	return stream, string(b)
}

// AppendLine is Line appending to dst.
func (c Config) AppendLine(dst []byte, seq uint64) (stream string, line []byte) {
	stream = c.Stream(seq)
	if c.JSON {
		return stream, AppendJSON(dst, c.ID, seq, stream, c.LineSize(seq), c.Unicode)
	}
	return stream, Append(dst, c.ID, seq, stream, c.LineSize(seq), c.Unicode)
}

// TraceLines are what loggen's -trace-every writes after a line, to the
// same stream: the continuation lines of a Java stack trace, which a
// multiline joiner (the java preset) joins to the line before them.
var TraceLines = []string{
	"\tat com.example.shop.Payment.charge(Payment.java:42)",
	"\tat com.example.shop.Checkout.run(Checkout.java:7)",
	"Caused by: java.net.SocketTimeoutException: connect timed out",
	"\t... 12 more",
}
