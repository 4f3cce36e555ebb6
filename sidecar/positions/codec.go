package positions

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"strconv"
)

// ErrCorrupt is returned (wrapped, with the line and the reason) for a
// positions file that cannot be read back: torn, edited or not ours.
var ErrCorrupt = errors.New("corrupt positions file")

// The file is text, one container per line, so that an operator can read
// it; a trailer with the entry count and a CRC-32C of everything before it
// makes a torn or edited file an error instead of a silent partial read:
//
//	logferry-positions 1
//	<id> <dev> <inode> <fingerprint-len> <fingerprint-hex> <offset>
//	end <entries> <crc32c-hex>
//
// Bytes of an id outside '!'..'~', and '%', are written as %XX.
const header = "logferry-positions 1\n"

// maxIDLen bounds an id (a Docker container id is 64 hex digits).
const maxIDLen = 1024

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Encode returns the file content for m, entries sorted by id.
func Encode(m map[string]Position) []byte {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	b := make([]byte, 0, len(header)+len(m)*160+32)
	b = append(b, header...)
	for _, id := range ids {
		p := m[id]
		b = appendID(b, id)
		b = append(b, ' ')
		b = strconv.AppendUint(b, p.File.Dev, 10)
		b = append(b, ' ')
		b = strconv.AppendUint(b, p.File.Inode, 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(p.File.FingerprintLen), 10)
		b = append(b, ' ')
		b = hex.AppendEncode(b, p.File.Fingerprint[:])
		b = append(b, ' ')
		b = strconv.AppendInt(b, p.Offset, 10)
		b = append(b, '\n')
	}
	sum := crc32Of(b)
	b = fmt.Appendf(b, "end %d %08x\n", len(ids), sum)
	return b
}

// Parse reads what Encode wrote. Any deviation is an error wrapping
// ErrCorrupt; nothing is returned from a file that fails its checksum.
func Parse(b []byte) (map[string]Position, error) {
	if !bytes.HasPrefix(b, []byte(header)) {
		return nil, fmt.Errorf("%w: not a positions file (bad header)", ErrCorrupt)
	}
	if len(b) == 0 || b[len(b)-1] != '\n' {
		return nil, fmt.Errorf("%w: torn (no final newline)", ErrCorrupt)
	}
	// The trailer is the last line.
	body := b[:len(b)-1]
	cut := bytes.LastIndexByte(body, '\n') + 1
	trailer := body[cut:]
	body = b[:cut]
	if len(body) < len(header) {
		return nil, fmt.Errorf("%w: no trailer", ErrCorrupt)
	}
	f := bytes.Split(trailer, []byte{' '})
	if len(f) != 3 || string(f[0]) != "end" || len(f[2]) != 8 {
		return nil, fmt.Errorf("%w: torn (bad trailer %q)", ErrCorrupt, excerpt(trailer))
	}
	count, err := parseUint(f[1], 1<<31)
	if err != nil {
		return nil, fmt.Errorf("%w: trailer entry count: %w", ErrCorrupt, err)
	}
	var sum [4]byte
	if _, err := hex.Decode(sum[:], f[2]); err != nil || bytes.ContainsAny(f[2], "ABCDEF") {
		return nil, fmt.Errorf("%w: trailer checksum %q", ErrCorrupt, f[2])
	}
	if got := crc32Of(body); got != uint32(sum[0])<<24|uint32(sum[1])<<16|uint32(sum[2])<<8|uint32(sum[3]) {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}

	m := make(map[string]Position, min(count, 1<<16))
	lines := body[len(header):]
	for n := 2; len(lines) > 0; n++ {
		nl := bytes.IndexByte(lines, '\n') // present: body ends in '\n'
		line := lines[:nl]
		lines = lines[nl+1:]
		id, p, err := parseEntry(line)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %w", ErrCorrupt, n, err)
		}
		if _, dup := m[id]; dup {
			return nil, fmt.Errorf("%w: line %d: id %q twice", ErrCorrupt, n, id)
		}
		m[id] = p
	}
	if uint64(len(m)) != count {
		return nil, fmt.Errorf("%w: %d entries, trailer says %d", ErrCorrupt, len(m), count)
	}
	return m, nil
}

func parseEntry(line []byte) (string, Position, error) {
	f := bytes.Split(line, []byte{' '})
	if len(f) != 6 {
		return "", Position{}, fmt.Errorf("%d fields, want 6", len(f))
	}
	var p Position
	id, err := parseID(f[0])
	if err != nil {
		return "", p, err
	}
	if p.File.Dev, err = parseUint(f[1], 1<<64-1); err != nil {
		return "", p, fmt.Errorf("dev: %w", err)
	}
	if p.File.Inode, err = parseUint(f[2], 1<<64-1); err != nil {
		return "", p, fmt.Errorf("inode: %w", err)
	}
	fpLen, err := parseUint(f[3], FingerprintSize)
	if err != nil {
		return "", p, fmt.Errorf("fingerprint length: %w", err)
	}
	p.File.FingerprintLen = int(fpLen)
	if len(f[4]) != 2*len(p.File.Fingerprint) || bytes.ContainsAny(f[4], "ABCDEF") {
		return "", p, fmt.Errorf("fingerprint %q", excerpt(f[4]))
	}
	if _, err := hex.Decode(p.File.Fingerprint[:], f[4]); err != nil {
		return "", p, fmt.Errorf("fingerprint: %w", err)
	}
	if fpLen == 0 && p.File.Fingerprint != ([16]byte{}) {
		return "", p, errors.New("fingerprint of no bytes is not zero")
	}
	off, err := parseUint(f[5], 1<<63-1)
	if err != nil {
		return "", p, fmt.Errorf("offset: %w", err)
	}
	p.Offset = int64(off)
	return id, p, nil
}

// parseUint accepts canonical decimal only (no sign, no leading zeros), so
// that every valid file has exactly one spelling.
func parseUint(b []byte, limit uint64) (uint64, error) {
	if len(b) == 0 || len(b) > 20 || len(b) > 1 && b[0] == '0' {
		return 0, fmt.Errorf("bad number %q", excerpt(b))
	}
	v, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil || v > limit {
		return 0, fmt.Errorf("bad number %q", excerpt(b))
	}
	return v, nil
}

func idByteOK(c byte) bool { return c > ' ' && c < 0x7f && c != '%' }

// ValidID reports whether id can be stored: not empty, at most 1024 bytes.
func ValidID(id string) bool { return id != "" && len(id) <= maxIDLen }

func appendID(b []byte, id string) []byte {
	const digits = "0123456789ABCDEF"
	for i := 0; i < len(id); i++ {
		if c := id[i]; idByteOK(c) {
			b = append(b, c)
		} else {
			b = append(b, '%', digits[c>>4], digits[c&15])
		}
	}
	return b
}

func parseID(b []byte) (string, error) {
	if len(b) == 0 {
		return "", errors.New("empty id")
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c == '%':
			// Only the escapes appendID writes: upper-case hex, and only for
			// bytes that need one.
			if i+2 >= len(b) || !isUpperHex(b[i+1]) || !isUpperHex(b[i+2]) {
				return "", fmt.Errorf("bad escape in id %q", excerpt(b))
			}
			v := unhex(b[i+1])<<4 | unhex(b[i+2])
			if idByteOK(v) {
				return "", fmt.Errorf("needless escape in id %q", excerpt(b))
			}
			out = append(out, v)
			i += 2
		case idByteOK(c):
			out = append(out, c)
		default:
			return "", fmt.Errorf("bad byte %#x in id", c)
		}
	}
	if len(out) > maxIDLen {
		return "", fmt.Errorf("id longer than %d bytes", maxIDLen)
	}
	return string(out), nil
}

func isUpperHex(c byte) bool { return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' }

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'A' + 10
}

func excerpt(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

func crc32Of(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }
