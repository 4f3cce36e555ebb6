package soak

import (
	"errors"

	"github.com/logferry/logferry/internal/loggen"
)

// parseStored reads a loggen line as Loki holds it. With stored (a
// json-file container read by the sidecar) a long non-ASCII line may
// differ from what the generator wrote exactly as jsonFileView changes it;
// split reports such a line.
func parseStored(line string, stored bool) (rec loggen.Record, split bool, err error) {
	rec, err = loggen.Parse(line)
	if err == nil || !stored {
		return rec, false, err
	}
	if (errors.Is(err, loggen.ErrLength) || errors.Is(err, loggen.ErrContent)) && rec.Unicode && rec.Len > loggen.DockerChunk &&
		line == loggen.JSONFileView(loggen.Format(rec.ID, rec.Seq, rec.Stream, rec.Len, rec.Unicode)) {
		return rec, true, nil
	}
	return rec, false, err
}
