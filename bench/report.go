package bench

import (
	"fmt"
	"os"
	"slices"
	"strings"
)

// Verdict is how a RESULT line reports a goal.
func Verdict(ok bool) string {
	if ok {
		return "MET"
	}
	return "MISSED"
}

// Median returns the median of v (0 for none).
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// JoinFloats formats each of v with format, separated by spaces.
func JoinFloats(v []float64, format string) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf(format, x)
	}
	return strings.Join(parts, " ")
}

// LoadAvg returns the 1, 5 and 15 minute load averages ("?" when unknown).
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
