package soak

import (
	"math"
	"slices"
	"time"
)

// Point is one observation for a leak fit: Y at T minutes, with Alive
// containers alive, in segment Seg (one process incarnation: a restarted
// process starts a new segment with its own intercept).
type Point struct {
	Seg   int
	T     float64 // minutes since the start of the run
	Alive float64
	Y     float64
}

// Fit is the least-squares slope of Y on time, per minute, with containers
// alive as a second regressor and one intercept per segment.
type Fit struct {
	N        int     // observations used
	Segments int     // process incarnations
	Slope    float64 // per minute
	Lo, Hi   float64 // 95 % confidence interval of Slope
	PerAlive float64 // Y per container alive
	Rho      float64 // lag-1 autocorrelation of the residuals (the CI is widened for it)
	OK       bool    // enough observations for an interval
}

// IncludesZero reports whether the interval admits no trend. A fit with too
// few observations says nothing, so it does not fail.
func (f Fit) IncludesZero() bool { return !f.OK || (f.Lo <= 0 && f.Hi >= 0) }

// FitSlope fits Y = a_seg + b*T + c*Alive by ordinary least squares with a
// separate intercept per segment (within-segment demeaning). Samples taken
// every few seconds are autocorrelated, which makes the plain OLS interval
// too narrow: the standard error is widened by sqrt((1+rho)/(1-rho)) and the
// degrees of freedom shrunk by the same factor, rho the lag-1
// autocorrelation of the residuals within segments (AR(1) correction).
// When Alive does not vary the fit has time alone.
func FitSlope(points []Point) Fit {
	bySeg := map[int][]Point{}
	var order []int
	for _, p := range points {
		if _, ok := bySeg[p.Seg]; !ok {
			order = append(order, p.Seg)
		}
		bySeg[p.Seg] = append(bySeg[p.Seg], p)
	}
	type dm struct{ t, a, y float64 }
	var rows [][]dm // per segment, in time order
	n := 0
	for _, s := range order {
		ps := bySeg[s]
		if len(ps) < 2 {
			continue
		}
		slices.SortFunc(ps, func(a, b Point) int { return cmpFloat(a.T, b.T) })
		var mt, ma, my float64
		for _, p := range ps {
			mt += p.T
			ma += p.Alive
			my += p.Y
		}
		k := float64(len(ps))
		mt, ma, my = mt/k, ma/k, my/k
		seg := make([]dm, len(ps))
		for i, p := range ps {
			seg[i] = dm{p.T - mt, p.Alive - ma, p.Y - my}
		}
		rows = append(rows, seg)
		n += len(ps)
	}
	f := Fit{N: n, Segments: len(rows)}
	var s11, s12, s22, s1y, s2y float64
	for _, seg := range rows {
		for _, r := range seg {
			s11 += r.t * r.t
			s12 += r.t * r.a
			s22 += r.a * r.a
			s1y += r.t * r.y
			s2y += r.a * r.y
		}
	}
	if s11 == 0 {
		return f
	}
	k := 2
	det := s11*s22 - s12*s12
	var b, c float64
	if s22 == 0 || det <= 1e-9*s11*s22 {
		k = 1
		b = s1y / s11
	} else {
		b = (s22*s1y - s12*s2y) / det
		c = (s11*s2y - s12*s1y) / det
	}
	df := n - k - len(rows)
	if df < 2 {
		f.Slope, f.PerAlive = b, c
		return f
	}
	var sse, lag float64
	for _, seg := range rows {
		prev, havePrev := 0.0, false
		for _, r := range seg {
			e := r.y - b*r.t - c*r.a
			sse += e * e
			if havePrev {
				lag += e * prev
			}
			prev, havePrev = e, true
		}
	}
	rho := 0.0
	if sse > 0 {
		rho = math.Max(0, math.Min(0.95, lag/sse))
	}
	s2 := sse / float64(df)
	varB := s2 / s11
	if k == 2 {
		varB = s2 * s22 / det
	}
	inflate := (1 + rho) / (1 - rho)
	se := math.Sqrt(varB * inflate)
	dfEff := max(1, int(float64(df)/inflate))
	q := tQuantile975(dfEff)
	f.Slope, f.PerAlive, f.Rho = b, c, rho
	f.Lo, f.Hi = b-q*se, b+q*se
	f.OK = true
	return f
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// t975 is Student's t 0.975 quantile for 1..30 degrees of freedom.
var t975 = [...]float64{12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
	2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
	2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042}

// tQuantile975 is Student's t 0.975 quantile: the table up to 30 degrees
// of freedom, a Cornish-Fisher expansion above (error < 0.001).
func tQuantile975(df int) float64 {
	if df < 1 {
		return math.Inf(1)
	}
	if df <= len(t975) {
		return t975[df-1]
	}
	const z = 1.959963984540054
	v := float64(df)
	z3, z5 := z*z*z, z*z*z*z*z
	return z + (z3+z)/(4*v) + (5*z5+16*z3+3*z)/(96*v*v)
}

// Percentiles of durations.
type Percentiles struct {
	N                  int
	P50, P90, P99, Max time.Duration
}

// percentiles returns nearest-rank percentiles of ds (sorted in place).
func percentiles(ds []time.Duration) Percentiles {
	p := Percentiles{N: len(ds)}
	if len(ds) == 0 {
		return p
	}
	slices.Sort(ds)
	at := func(q float64) time.Duration {
		i := int(math.Ceil(q*float64(len(ds)))) - 1
		return ds[max(0, min(len(ds)-1, i))]
	}
	p.P50, p.P90, p.P99, p.Max = at(0.50), at(0.90), at(0.99), ds[len(ds)-1]
	return p
}

// quantileWithUnseen is the nearest-rank q-quantile of ds and unseen more
// values slower than any of ds; infinite reports that it falls among those.
// ds is sorted in place.
func quantileWithUnseen(ds []time.Duration, unseen int, q float64) (d time.Duration, infinite bool) {
	n := len(ds) + unseen
	if n == 0 {
		return 0, false
	}
	slices.Sort(ds)
	i := max(0, int(math.Ceil(q*float64(n)))-1)
	if i >= len(ds) {
		return 0, true
	}
	return ds[i], false
}
