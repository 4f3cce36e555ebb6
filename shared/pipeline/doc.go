// Package pipeline owns the processing step between a joined log line and
// the entry handed to the Loki dispatcher: the Promtail pipeline stages of
// the Loki Docker driver's loki-pipeline-stages option (Parse, Pipeline,
// Entry) and the multiline joiner with logferry's stack-trace presets
// (Multiline). Both capture styles call it, so a stage behaves the same
// whichever style captured the line.
//
// # Configuration
//
// Parse reads the driver's format: a YAML list of one-key maps, one per
// stage, or a map with the single key pipeline_stages holding that list
// (the form of the driver's loki-pipeline-stage-file). Every error wraps
// ErrInvalid, is a *StageError naming the option, the stage's position
// ("stage 3 (match) > stage 1 (regex)") and the field, and wraps ErrLimit
// when a bound of ours was passed. What Parse accepts is bounded (see
// MaxConfigBytes and the other Max constants): the sidecar lets image
// authors give this option through container labels.
//
// # Per-entry processing
//
// A parsed *Pipeline is a program plus the state of one container's
// stream (the timestamp stage's last time, the limit stage's buckets).
// Parse once, then call Instance for each container; Process is not safe
// for concurrent use, and one goroutine (the container's reader) owns an
// instance. Process on a nil *Pipeline returns at once.
//
// # Multiline
//
// Joining lines is stateful and changes which input lines an entry holds,
// so it is a type of its own, run before Process: see Multiline for the
// contract with the caller, in particular how acknowledgements follow
// entries (Joined.Ack).
package pipeline
