package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/logferry/logferry/shared/dockerlog"
)

// daemonChunk is where dockerd's copier cuts a long line: every 16 KiB
// piece is a partial message of its own, sharing the first piece's time.
const daemonChunk = 16 << 10

// daemonChunks calls fn with each piece of line as dockerd cuts it: ordinal
// from 1, last on the final piece. A line of at most 16 KiB is one piece
// with ordinal 0 (not partial).
func daemonChunks(line []byte, fn func(chunk []byte, ordinal int, last bool) error) (pieces int, err error) {
	if len(line) <= daemonChunk {
		return 1, fn(line, 0, true)
	}
	for off, ord := 0, 1; off < len(line); off, ord = off+daemonChunk, ord+1 {
		end := min(off+daemonChunk, len(line))
		pieces++
		if err := fn(line[off:end], ord, end == len(line)); err != nil {
			return pieces, err
		}
	}
	return pieces, nil
}

// fifoWriter writes a container's lines into its plugin FIFO as dockerd's
// plugin adapter does: one frame per write(2), a long line as partial
// frames with a shared id.
type fifoWriter struct {
	f        *os.File
	name     string
	buf      []byte
	partials int // long lines so far, for their ids
}

var _ logWriter = (*fifoWriter)(nil)

func (w *fifoWriter) writeLine(stream string, line []byte) (int, error) {
	fr := dockerlog.Frame{Source: stream, TimeNano: time.Now().UnixNano()}
	if len(line) > daemonChunk {
		w.partials++
		fr.Partial, fr.HasPartialMetadata = true, true
		fr.PartialID = ContainerID(w.name + "/" + strconv.Itoa(w.partials))
	}
	return daemonChunks(line, func(chunk []byte, ordinal int, last bool) error {
		fr.Line, fr.PartialOrdinal = chunk, int32(ordinal)
		fr.PartialLast = fr.Partial && last
		w.buf = dockerlog.AppendFrame(w.buf[:0], &fr)
		_, err := w.f.Write(w.buf)
		return err
	})
}

func (w *fifoWriter) Close() error { return w.f.Close() }

// jsonFileWriter appends a container's lines to its <id>-json.log as
// dockerd's json-file driver does: one entry per write(2), a long line as
// 16 KiB entries of which only the last ends with a newline.
type jsonFileWriter struct {
	f    *os.File
	path string
	buf  []byte
}

var _ logWriter = (*jsonFileWriter)(nil)

func (w *jsonFileWriter) writeLine(stream string, line []byte) (int, error) {
	now := time.Now().UTC()
	return daemonChunks(line, func(chunk []byte, _ int, last bool) error {
		b := append(w.buf[:0], `{"log":`...)
		b = appendJSONString(b, chunk, last)
		b = append(b, `,"stream":"`...)
		b = append(b, stream...)
		b = append(b, `","time":"`...)
		b = now.AppendFormat(b, time.RFC3339Nano)
		b = append(b, "\"}\n"...)
		w.buf = b
		_, err := w.f.Write(b)
		return err
	})
}

func (w *jsonFileWriter) Close() error { return w.f.Close() }

// appendJSONString appends s as a JSON string, with a newline at its end
// when newline, escaping as the daemon's encoder does (<, > and & too).
func appendJSONString(dst, s []byte, newline bool) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && n == 1 {
				dst = append(dst, `\ufffd`...)
			} else {
				dst = append(dst, s[i:i+n]...)
			}
			i += n
			continue
		}
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c < 0x20 || c == '<' || c == '>' || c == '&':
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			dst = append(dst, c)
		}
		i++
	}
	if newline {
		dst = append(dst, '\\', 'n')
	}
	return append(dst, '"')
}

// openJSONFileLog creates container id's empty json-file log under
// containersDir, as the daemon does when the container is created.
func openJSONFileLog(containersDir, id string) (*jsonFileWriter, error) {
	dir := filepath.Join(containersDir, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, id+"-json.log")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_TRUNC, 0o640)
	if err != nil {
		return nil, fmt.Errorf("json-file log: %w", err)
	}
	return &jsonFileWriter{f: f, path: path}, nil
}
