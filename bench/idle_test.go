package bench

import (
	"strings"
	"testing"
)

func TestMoreStacks(t *testing.T) {
	before := "goroutine profile: total 3\n2 @ 0x1 0x2\n#\t0x1\tmain.wait+0x1\tmain.go:1\n\n1 @ 0x3\n#\t0x3\tmain.serve+0x1\tmain.go:2\n\n"
	after := "goroutine profile: total 4\n2 @ 0x1 0x2\n#\t0x1\tmain.wait+0x1\tmain.go:1\n\n2 @ 0x3\n#\t0x3\tmain.serve+0x1\tmain.go:2\n\n"
	got := moreStacks(before, after)
	if !strings.Contains(got, "1 more (2, baseline 1)") || !strings.Contains(got, "main.serve") || strings.Contains(got, "main.wait") {
		t.Fatalf("moreStacks = %q", got)
	}
	if got := moreStacks(after, before); got != "" {
		t.Fatalf("fewer goroutines reported as more: %q", got)
	}
}
