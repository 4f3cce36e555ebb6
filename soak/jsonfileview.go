package soak

import (
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/logferry/logferry/internal/loggen"
)

// dockerChunk is where dockerd cuts a long line (its copier's buffer).
const dockerChunk = 16 << 10

// jsonFileView returns line as dockerd's json-file driver stores it: cut
// into 16 KiB chunks, one JSON object each, whose encoder writes every byte
// of invalid UTF-8 as U+FFFD. When a cut falls inside a multi-byte
// character both halves are lost on disk for good, so the sidecar, a reader
// of the file, ships U+FFFD there. (The same model as
// scripts/demo-check's jsonFileView.)
func jsonFileView(line string) string {
	var b strings.Builder
	for len(line) > 0 {
		chunk := line[:min(len(line), dockerChunk)]
		line = line[len(chunk):]
		for i := 0; i < len(chunk); {
			r, size := utf8.DecodeRuneInString(chunk[i:])
			if r == utf8.RuneError && size == 1 {
				b.WriteRune(utf8.RuneError)
			} else {
				b.WriteString(chunk[i : i+size])
			}
			i += size
		}
	}
	return b.String()
}

// parseStored reads a loggen line as Loki holds it. With stored (a
// json-file container read by the sidecar) a long non-ASCII line may
// differ from what the generator wrote exactly as jsonFileView changes it;
// split reports such a line.
func parseStored(line string, stored bool) (rec loggen.Record, split bool, err error) {
	rec, err = loggen.Parse(line)
	if err == nil || !stored {
		return rec, false, err
	}
	if (errors.Is(err, loggen.ErrLength) || errors.Is(err, loggen.ErrContent)) && rec.Unicode && rec.Len > dockerChunk &&
		line == jsonFileView(loggen.Format(rec.ID, rec.Seq, rec.Stream, rec.Len, rec.Unicode)) {
		return rec, true, nil
	}
	return rec, false, err
}
