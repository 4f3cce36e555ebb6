package pipeline

import (
	"regexp"
	"regexp/syntax"
	"strings"
	"unicode/utf8"
)

// lineRegexp is a regexp that finds its leftmost match faster when every
// match must begin with one of a few literal strings, as in the Loki
// driver's '(level|lvl|severity)=(?P<level>\w+)'. Go's regexp scans an
// unanchored pattern with captures byte by byte (about 80 MB/s here); the
// literals are found with strings.Index instead and the pattern is tried
// anchored at each, which gives the same match: the leftmost position
// where an anchored match exists, and there the same leftmost-first
// choice. A few anchored tries at most, then the plain search takes the
// rest of the line, so the cost stays linear in the line.
type lineRegexp struct {
	re *regexp.Regexp
	// anchored is ^(?:re), nil when there is no prefilter.
	anchored *regexp.Regexp
	prefixes []string
}

const (
	// maxPrefixes bounds the literal set; maxAnchoredTries the anchored
	// attempts before the plain search.
	maxPrefixes      = 16
	maxAnchoredTries = 4
)

func newLineRegexp(re *regexp.Regexp) *lineRegexp {
	lr := &lineRegexp{re: re}
	expr := re.String()
	tree, err := syntax.Parse(expr, syntax.Perl)
	if err != nil || looksBack(tree) {
		return lr
	}
	prefixes, _ := literalPrefixes(tree.Simplify())
	if len(prefixes) == 0 || len(prefixes) > maxPrefixes {
		return lr
	}
	for _, p := range prefixes {
		if p == "" {
			return lr
		}
	}
	anchored, err := regexp.Compile(`^(?:` + expr + `)`)
	if err != nil || anchored.NumSubexp() != re.NumSubexp() {
		return lr
	}
	lr.anchored, lr.prefixes = anchored, prefixes
	return lr
}

// looksBack reports whether re has an assertion about the text before a
// position (^, \A, \b, \B), which a match tried on a suffix of the line
// would get wrong.
func looksBack(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpBeginLine, syntax.OpBeginText, syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return true
	}
	for _, s := range re.Sub {
		if looksBack(s) {
			return true
		}
	}
	return false
}

// literalPrefixes returns strings one of which begins every match of re
// (nil: unknown), and whether re matches exactly those strings.
func literalPrefixes(re *syntax.Regexp) ([]string, bool) {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 {
			return nil, false
		}
		return []string{string(re.Rune)}, true
	case syntax.OpEmptyMatch:
		return []string{""}, true
	case syntax.OpCapture:
		return literalPrefixes(re.Sub[0])
	case syntax.OpPlus:
		p, _ := literalPrefixes(re.Sub[0])
		return p, false
	case syntax.OpRepeat:
		if re.Min < 1 {
			return nil, false
		}
		p, _ := literalPrefixes(re.Sub[0])
		return p, false
	case syntax.OpCharClass:
		var out []string
		for i := 0; i+1 < len(re.Rune); i += 2 {
			for r := re.Rune[i]; r <= re.Rune[i+1]; r++ {
				if len(out) >= maxPrefixes {
					return nil, false
				}
				out = append(out, string(r))
			}
		}
		return out, true
	case syntax.OpAlternate:
		var out []string
		exact := true
		for _, s := range re.Sub {
			p, e := literalPrefixes(s)
			if p == nil {
				return nil, false
			}
			out = append(out, p...)
			exact = exact && e
			if len(out) > maxPrefixes {
				return nil, false
			}
		}
		return out, exact
	case syntax.OpConcat:
		acc := []string{""}
		for _, s := range re.Sub {
			p, e := literalPrefixes(s)
			if p == nil || len(acc)*len(p) > maxPrefixes {
				return nonEmpty(acc), false
			}
			// Each prefix is one more scan of the line: a literal
			// already found is not split by a class of characters that
			// may follow it (seq= stays one prefix, not seq=0 ...
			// seq=9); alternatives of words still extend it.
			if len(p) > 1 && nonEmpty(acc) != nil && singleChars(p) {
				return acc, false
			}
			next := make([]string, 0, len(acc)*len(p))
			for _, a := range acc {
				for _, b := range p {
					next = append(next, a+b)
				}
			}
			acc = next
			if !e {
				return nonEmpty(acc), false
			}
		}
		return acc, true
	}
	return nil, false
}

// singleChars reports whether every one of ps is one character (a class).
func singleChars(ps []string) bool {
	for _, p := range ps {
		if utf8.RuneCountInString(p) != 1 {
			return false
		}
	}
	return true
}

// nonEmpty returns ps, or nil when one of them is empty (no prefilter).
func nonEmpty(ps []string) []string {
	for _, p := range ps {
		if p == "" {
			return nil
		}
	}
	return ps
}

// next returns the first position at or after from where a prefix
// begins, or -1.
func (lr *lineRegexp) next(s string, from int) int {
	best := -1
	for _, p := range lr.prefixes {
		limit := len(s)
		if best >= 0 {
			limit = min(len(s), best+len(p))
		}
		if i := strings.Index(s[from:limit], p); i >= 0 && (best < 0 || from+i < best) {
			best = from + i
		}
	}
	return best
}

// FindStringSubmatchIndex is regexp's.
func (lr *lineRegexp) FindStringSubmatchIndex(s string) []int {
	if lr.anchored == nil {
		return lr.re.FindStringSubmatchIndex(s)
	}
	from := 0
	for range maxAnchoredTries {
		at := lr.next(s, from)
		if at < 0 {
			return nil
		}
		if m := lr.anchored.FindStringSubmatchIndex(s[at:]); m != nil {
			return shift(m, at)
		}
		from = at + 1
	}
	if m := lr.re.FindStringSubmatchIndex(s[from:]); m != nil {
		return shift(m, from)
	}
	return nil
}

func shift(m []int, by int) []int {
	for i := range m {
		if m[i] >= 0 {
			m[i] += by
		}
	}
	return m
}

// MatchString is regexp's.
func (lr *lineRegexp) MatchString(s string) bool {
	if lr.anchored == nil {
		return lr.re.MatchString(s)
	}
	at := lr.next(s, 0)
	return at >= 0 && lr.re.MatchString(s[at:])
}
