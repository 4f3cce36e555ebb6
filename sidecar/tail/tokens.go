package tail

import (
	"errors"
	"sort"
	"sync"

	"github.com/logferry/logferry/sidecar/positions"
)

// Tokens: gen<<offsetBits | offset, see Line.Token.
const (
	offsetBits = 40
	offsetMask = 1<<offsetBits - 1
	maxGen     = 1<<(63-offsetBits) - 1
	// maxKeptGens bounds the identities kept for tokens not yet released.
	maxKeptGens = 1024
)

// maxTokenOffset is the largest offset a token of one generation holds; past
// it the same file continues in a new generation. A variable for tests.
var maxTokenOffset int64 = offsetMask

// ErrGenerationsExhausted is returned by Run after 2^23 files in one run,
// when tokens can no longer grow; restart from the last position.
var ErrGenerationsExhausted = errors.New("tail: token generations exhausted")

// tokenBook maps acknowledgement tokens to durable positions. A token is
// gen<<offsetBits | (offset-base): a generation stands for one file (its
// identity) from a base offset on, so that tokens grow over a Tailer's life
// however many files it reads, and a consumer needs to keep only the
// latest. Run's goroutine opens generations and updates their identity as
// a young file's fingerprint grows; position and release may be called from
// any goroutine. Its mutex is a leaf: nothing else is locked while it is
// held.
type tokenBook struct {
	next int64 // the next generation; Run's goroutine only

	mu   sync.Mutex
	gens []genRecord // ascending gen
}

// genRecord maps a generation of tokens to the file it was read from.
type genRecord struct {
	gen   int64
	ident positions.Identity
	base  int64
}

func newTokenBook() *tokenBook { return &tokenBook{next: 1} } // token 0 is never valid

// token is the token of offset off in src, in src's generation.
func (s *source) token(off int64) int64 { return s.gen<<offsetBits | (off - s.base) }

// open starts a generation of tokens for src from offset base.
func (b *tokenBook) open(src *source, base int64) error {
	if b.next > maxGen {
		return ErrGenerationsExhausted
	}
	src.gen, src.base = b.next, base
	b.next++
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.gens) == maxKeptGens {
		b.gens = append(b.gens[:0], b.gens[1:]...)
	}
	b.gens = append(b.gens, genRecord{gen: src.gen, ident: src.ident, base: base})
	return nil
}

// span returns the tokens of [start, end) in src, the file Run reads,
// with what they stand for recorded: past what a token holds, the same
// file goes on in a new generation; and the identity of a young file grows
// to cover what is delivered.
func (b *tokenBook) span(src *source, start, end int64) (from, to int64, err error) {
	if end-src.base > maxTokenOffset {
		if err := b.open(src, start); err != nil {
			return 0, 0, err
		}
	}
	if src.zr == nil && int64(src.ident.FingerprintLen) < min(end, positions.FingerprintSize) {
		if err := src.refreshFingerprint(); err != nil {
			return 0, 0, err
		}
		b.setIdent(src.gen, src.ident)
	}
	return src.token(start), src.token(end), nil
}

// setIdent updates a generation's identity (its fingerprint grew).
func (b *tokenBook) setIdent(gen int64, id positions.Identity) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := len(b.gens) - 1; i >= 0 && b.gens[i].gen >= gen; i-- {
		if b.gens[i].gen == gen {
			b.gens[i].ident = id
		}
	}
}

// position returns the durable position a token stands for; false when the
// token is unknown or was released.
func (b *tokenBook) position(token int64) (positions.Position, bool) {
	if token <= 0 {
		return positions.Position{}, false
	}
	gen, off := token>>offsetBits, token&offsetMask
	b.mu.Lock()
	defer b.mu.Unlock()
	i := b.search(gen)
	if i == len(b.gens) || b.gens[i].gen != gen {
		return positions.Position{}, false
	}
	r := b.gens[i]
	return positions.Position{File: r.ident, Offset: r.base + off}, true
}

// release forgets the generations before token's.
func (b *tokenBook) release(token int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	i := b.search(token >> offsetBits)
	b.gens = append(b.gens[:0], b.gens[i:]...)
}

// search returns the index of the first generation at or after gen; mu is
// held.
func (b *tokenBook) search(gen int64) int {
	return sort.Search(len(b.gens), func(i int) bool { return b.gens[i].gen >= gen })
}
