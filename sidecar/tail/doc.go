// Package tail follows containers' json-file logs (<id>-json.log) through
// Docker's rotations, turning them into complete lines with acknowledgement
// tokens that map back to durable positions. It owns the host-wide Watcher
// that wakes every Tailer.
package tail

// The parts, a file each: the Watcher (watcher.go) and its keeper
// (keeper.go, fanotify) are host-wide; per container, the Tailer's loop
// (tailer.go) ties the chain of the log's files (chain.go), the pin set
// and its pinner goroutine (pins.go), the line reader (reader.go), the
// assembler (assembler.go) and the token book (tokens.go), over the log's
// files on disk (files.go, refuse.go, open_*.go).
//
// Lock order, where locks meet: pinSet.mu, then keeper.mu (keptLog's
// methods), then logFiles.mu (a refusal); and Watcher.keepMu, then
// keeper.mu. No lock is taken while one after it is held, and pinSet.mu
// and Watcher.keepMu are never held together. tokenBook.mu and Watcher.mu
// are leaves: nothing else is locked while either is held (the Watcher
// calls its hooks without w.mu).
