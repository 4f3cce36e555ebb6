package pipeline

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

// TestExtractedIndexed: past extractedIndexed names the store indexes them;
// every name set before and after is found with its last value, and reset
// empties it for the next line.
func TestExtractedIndexed(t *testing.T) {
	var x extracted
	for round := range 2 {
		const n = 3 * extractedIndexed
		for i := range n {
			x.set(fmt.Sprint("k", i), stringValue(fmt.Sprint("v", i)))
		}
		x.set("k3", anyValue(3.5))                  // overwrite, linear part
		x.set(fmt.Sprint("k", n-1), anyValue(true)) // overwrite, indexed part
		if len(x.kv) != n {
			t.Fatalf("round %d: %d values, want %d", round, len(x.kv), n)
		}
		for i := range n {
			v, ok := x.lookup(fmt.Sprint("k", i))
			if !ok {
				t.Fatalf("round %d: k%d missing", round, i)
			}
			want := any(fmt.Sprint("v", i))
			switch i {
			case 3:
				want = 3.5
			case n - 1:
				want = true
			}
			if v.any() != want {
				t.Errorf("round %d: k%d = %#v, want %#v", round, i, v.any(), want)
			}
		}
		if _, ok := x.lookup("absent"); ok {
			t.Errorf("round %d: absent found", round)
		}
		x.reset()
		if _, ok := x.lookup("k0"); ok || len(x.kv) != 0 {
			t.Fatalf("round %d: reset kept values", round)
		}
	}
}

func TestValueStr(t *testing.T) {
	for _, c := range []struct {
		v    value
		want string
	}{
		{stringValue("x"), "x"},
		{anyValue(12.0), "12"},
		{anyValue(0.25), "0.25"},
		{anyValue(true), "true"},
		{anyValue(false), "false"},
		{anyValue(7), "7"},
	} {
		if got, ok := c.v.str(); !ok || got != c.want {
			t.Errorf("%#v.str() = %q, %v; want %q", c.v, got, ok, c.want)
		}
		if s, ok := stringOf(c.v.any()); !ok || s != c.want {
			t.Errorf("stringOf(%#v.any()) = %q; want %q", c.v, s, c.want)
		}
	}
}

// jsonSpecial8 is scanJSONString's test of a word, on a string of 8 bytes.
func jsonSpecial8(b string) bool {
	var x uint64
	for i := range 8 {
		x |= uint64(b[i]) << (8 * i)
	}
	return jsonSpecialWord(x)
}

// TestJSONSpecial8 checks the word-at-a-time test against jsonPlain: every
// byte value at every position among plain bytes of every kind, and random
// words.
func TestJSONSpecial8(t *testing.T) {
	want := func(b []byte) bool {
		for _, c := range b {
			if !jsonPlain[c] {
				return true
			}
		}
		return false
	}
	fills := []byte{'a', 0x20, 0x21, 0x23, 0x5b, 0x5d, 0x7f, 0x80, 0xff}
	for _, fill := range fills {
		for pos := range 8 {
			for c := range 256 {
				b := []byte{fill, fill, fill, fill, fill, fill, fill, fill}
				b[pos] = byte(c)
				if got := jsonSpecial8(string(b)); got != want(b) {
					t.Fatalf("% x: got %v, want %v", b, got, want(b))
				}
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 1_000_000 {
		var b [8]byte
		for i := range b {
			b[i] = byte(r.Uint32())
			if r.IntN(4) > 0 { // mostly plain
				b[i] = 0x20 + byte(r.IntN(0x5b))
				if b[i] == '"' {
					b[i] = 'x'
				}
			}
		}
		if got := jsonSpecial8(string(b[:])); got != want(b[:]) {
			t.Fatalf("% x: got %v, want %v", b, got, want(b[:]))
		}
	}
}

// TestSmallIntText: a JSON integer keeps its text only where formatting its
// float64 gives the same text.
func TestSmallIntText(t *testing.T) {
	for _, raw := range []string{"0", "-0", "7", "-42", "123456789012345", "-999999999999999", "1234567890123456", "1e3", "1.50", "12345678901234567890"} {
		v, ok := jsonSpanValue(raw)
		if !ok {
			t.Fatalf("%s: not a value", raw)
		}
		f, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			t.Fatal(err)
		}
		if v.f != f || math.Signbit(v.f) != math.Signbit(f) {
			t.Errorf("%s: f = %v, want %v", raw, v.f, f)
		}
		if got, _ := v.str(); got != strconv.FormatFloat(f, 'f', -1, 64) {
			t.Errorf("%s: str() = %q, want %q", raw, got, strconv.FormatFloat(f, 'f', -1, 64))
		}
	}
}
