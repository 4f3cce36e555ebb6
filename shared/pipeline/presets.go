package pipeline

import (
	"fmt"
	"strings"
)

// Multiline presets: logferry's multiline=java|python|go|nodejs option.
// Each is a small state machine per source rather than one firstline
// regex, because where a trace ends depends on what came before (Python's
// exception line is not indented, Go's function lines are not either).
const (
	PresetJava   = "java"
	PresetPython = "python"
	PresetGo     = "go"
	PresetNodeJS = "nodejs"
)

// presetMaxLines is the presets' max_lines: stack traces of Java
// frameworks run to hundreds of frames; MaxBytes bounds them anyway.
const presetMaxLines = 1000

// MultilinePresets returns the presets' names, sorted.
func MultilinePresets() []string {
	return []string{PresetGo, PresetJava, PresetNodeJS, PresetPython}
}

// MultilinePreset returns the configuration of a preset, with MaxWait
// DefaultMaxWait, MaxLines 1000 and MaxBytes DefaultMaxEntryBytes (the
// caller may change them before first use):
//
//   - java: an entry begins at a line that does not start with white
//     space, "at ", "Caused by:", "Suppressed:" or "...": frames
//     ("\tat ..."), "Caused by: ..." and "... 12 more" join the line
//     before them.
//   - python: "Traceback (most recent call last):" begins an entry; its
//     indented lines ("  File ...", code) and the exception line that ends
//     it ("ValueError: bad") join it, and so do a chained exception's
//     blank line, "During handling of the above exception..." or "The
//     above exception was the direct cause..." and its traceback. Other
//     lines begin an entry unless indented.
//   - go: "panic: ", "fatal error: " and "SIGxxx: " lines begin a trace in
//     which blank lines, "goroutine N [...]:" headers, function lines
//     ("main.main()"), indented file lines, "created by ...", "[signal
//     ...", "exit status N" and register dumps join; a "goroutine N [...]:"
//     line after any other line joins it (net/http's "http: panic serving
//     ..." log line). Other lines begin entries unless indented.
//   - nodejs: an entry begins at a line that does not start with white
//     space: "    at ..." frames join, and so does a closing "}" of an
//     error's printed properties. An uncaught exception's report (a
//     "file.js:10" line, the source line, the caret, a blank line, the
//     error, its frames, "Node.js v20.1.0") is one entry.
func MultilinePreset(name string) (*MultilineConfig, error) {
	var f func() splitter
	switch name {
	case PresetJava:
		f = func() splitter { return javaSplitter{} }
	case PresetPython:
		f = func() splitter { return &pythonSplitter{} }
	case PresetGo:
		f = func() splitter { return &goSplitter{} }
	case PresetNodeJS:
		f = func() splitter { return &nodeSplitter{} }
	default:
		return nil, fmt.Errorf("%w: multiline: unknown preset %q (want one of %s)", ErrInvalid, name, strings.Join(MultilinePresets(), ", "))
	}
	return &MultilineConfig{MaxWait: DefaultMaxWait, MaxLines: presetMaxLines, MaxBytes: DefaultMaxEntryBytes, name: name, preset: f}, nil
}

func indented(line string) bool {
	return line != "" && (line[0] == ' ' || line[0] == '\t')
}

func blank(line string) bool { return strings.TrimSpace(line) == "" }

// javaSplitter needs no state.
type javaSplitter struct{}

func (javaSplitter) starts(line string, _ bool) bool {
	if indented(line) {
		return false
	}
	for _, p := range [...]string{"at ", "Caused by:", "Suppressed:", "..."} {
		if strings.HasPrefix(line, p) {
			return false
		}
	}
	return true
}

// pythonSplitter follows a traceback: its frames, its exception line and
// chained tracebacks.
type pythonSplitter struct{ state pyState }

type pyState uint8

const (
	pyNormal pyState = iota
	pyFrames         // in a traceback's frames
	pyEnded          // after the exception line: a chain may follow
	pyChain          // after a chain's "During handling..." line
)

const pyTraceback = "Traceback (most recent call last):"

func (s *pythonSplitter) starts(line string, pending bool) bool {
	switch s.state {
	case pyFrames:
		if indented(line) || blank(line) {
			return false
		}
		if isPyExceptionLine(line) {
			s.state = pyEnded
			return false
		}
	case pyEnded, pyChain:
		switch {
		case blank(line) || indented(line):
			return false
		case strings.HasPrefix(line, "During handling of the above exception") ||
			strings.HasPrefix(line, "The above exception was the direct cause"):
			s.state = pyChain
			return false
		case strings.HasPrefix(line, pyTraceback) && s.state == pyChain:
			s.state = pyFrames
			return false
		}
	}
	if strings.HasPrefix(line, pyTraceback) {
		s.state = pyFrames
		return true
	}
	s.state = pyNormal
	return !indented(line) || !pending
}

// isPyExceptionLine reports whether line looks like the last line of a
// traceback: a (dotted) class name, then ":" or nothing
// ("ValueError: bad", "requests.exceptions.ConnectionError: ...",
// "KeyboardInterrupt").
func isPyExceptionLine(line string) bool {
	name, _, _ := strings.Cut(line, ":")
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c == '_' || c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// goSplitter follows a panic or goroutine dump.
type goSplitter struct{ inTrace bool }

func (s *goSplitter) starts(line string, pending bool) bool {
	if isGoTraceHead(line) {
		s.inTrace = true
		return true
	}
	if isGoroutineHeader(line) {
		s.inTrace = true
		return !pending
	}
	if indented(line) {
		return !pending
	}
	if s.inTrace && isGoTraceLine(line) {
		return false
	}
	s.inTrace = false
	return true
}

func isGoTraceHead(line string) bool {
	if strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ") {
		return true
	}
	// SIGQUIT: quit, SIGSEGV: segmentation violation...
	if strings.HasPrefix(line, "SIG") {
		name, _, ok := strings.Cut(line, ": ")
		return ok && len(name) > 3 && strings.Trim(name[3:], "ABCDEFGHIJKLMNOPQRSTUVWXYZ") == ""
	}
	return false
}

// isGoroutineHeader: "goroutine 1 [running]:".
func isGoroutineHeader(line string) bool {
	rest, ok := strings.CutPrefix(line, "goroutine ")
	if !ok {
		return false
	}
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	return i > 0 && strings.HasPrefix(rest[i:], " [") && strings.HasSuffix(rest, ":")
}

func isGoTraceLine(line string) bool {
	switch {
	case blank(line),
		strings.HasPrefix(line, "created by "),
		strings.HasPrefix(line, "[signal "),
		strings.HasPrefix(line, "exit status "),
		strings.HasPrefix(line, "PC="),
		strings.HasPrefix(line, "...additional frames elided..."),
		strings.HasPrefix(line, "goroutine running on other thread"),
		strings.HasPrefix(line, "panic: "), // a panic while panicking
		strings.HasPrefix(line, "[recovered]"):
		return true
	}
	// Register dumps: "rax    0x0", "r8     0xc000", "rip    0x46a5a1".
	if name, val, ok := strings.Cut(line, " "); ok && len(name) <= 6 && strings.HasPrefix(strings.TrimLeft(val, " "), "0x") {
		return true
	}
	// Function lines: "main.main()", "main.(*T).m(0xc000010000, ...)",
	// "panic({0x45e100?, 0xc000012018?})".
	open := strings.IndexByte(line, '(')
	return open > 0 && strings.HasSuffix(line, ")") && !strings.ContainsAny(line[:open], " \t")
}

// nodeSplitter follows an uncaught exception's report.
type nodeSplitter struct{ state nodeState }

type nodeState uint8

const (
	nodeNormal nodeState = iota
	nodeHeader           // after "file.js:10": source line, caret, blank, then the error
	nodeError            // after the error line of a report: frames, blank, "Node.js v..."
)

func (s *nodeSplitter) starts(line string, pending bool) bool {
	switch s.state {
	case nodeHeader:
		if !indented(line) && !blank(line) {
			s.state = nodeError
		}
		return false
	case nodeError:
		if indented(line) || blank(line) || line == "}" {
			return false
		}
		if strings.HasPrefix(line, "Node.js v") {
			s.state = nodeNormal
			return false
		}
	}
	s.state = nodeNormal
	if indented(line) || line == "}" {
		return !pending
	}
	if isNodeLocation(line) {
		s.state = nodeHeader
	}
	return true
}

// isNodeLocation: the first line of an uncaught exception's report,
// "/app/index.js:10" or "file:///app/index.mjs:3" or "node:internal/x:12".
func isNodeLocation(line string) bool {
	i := strings.LastIndexByte(line, ':')
	if i <= 0 || i == len(line)-1 || strings.ContainsAny(line, " \t") {
		return false
	}
	for _, c := range line[i+1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return strings.ContainsAny(line[:i], "/\\") || strings.HasPrefix(line, "node:")
}
