package dockerlog

import (
	"strings"
	"unicode/utf8"
)

// replacementLen is how many bytes ValidUTF8 (and JSONDecoder) write for
// each invalid byte: U+FFFD takes three.
const replacementLen = len("\uFFFD")

// ValidUTF8 returns s with each invalid byte replaced by U+FFFD, as
// dockerd's json-file writer does, so that a line reaches Loki the same
// whichever way it was captured. It returns s itself when it is valid.
//
// A line can grow up to three times; a Joiner's lines are cut so that they
// stay within its maxLine after this repair, so callers repair them here
// and cut nothing further.
func ValidUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for len(s) > 0 {
		r, n := utf8.DecodeRuneInString(s)
		if r == utf8.RuneError && n == 1 {
			b.WriteString("\uFFFD")
		} else {
			b.WriteString(s[:n])
		}
		s = s[n:]
	}
	return b.String()
}
