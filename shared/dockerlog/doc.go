// Package dockerlog owns the byte formats Docker writes container logs in:
// the plugin FIFO's length-prefixed LogEntry frames, json-file lines, and the
// Engine API's logs stream, plus the joiner that reassembles lines the daemon
// split into chunks. Decoders take bytes or an io.Reader; opening files and
// FIFOs is the caller's job.
//
// jsonfile.go is one thing at a little over 600 lines: the json-file line
// decoder, a hand-written JSON reader for exactly Docker's three fields
// (every string escape, invalid UTF-8 repaired) that does not allocate per
// line; splitting its scanner from its field handling would put one loop's
// state in two files.
package dockerlog
