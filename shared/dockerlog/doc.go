// Package dockerlog owns the byte formats Docker writes container logs in:
// the plugin FIFO's length-prefixed LogEntry frames, json-file lines, and the
// Engine API's logs stream, plus the joiner that reassembles lines the daemon
// split into chunks. Decoders take bytes or an io.Reader; opening files and
// FIFOs is the caller's job.
package dockerlog
