package soak

import (
	"math"
	"slices"
	"time"
)

// Point is one observation for a leak fit: Y at T minutes, with Alive[k]
// containers of kind k alive (kinds that cost the process differently: the
// sidecar's file and Engine-stream containers), in segment Seg (one process
// incarnation: a restarted process starts a new segment with its own
// intercept).
type Point struct {
	Seg   int
	T     float64 // minutes since the start of the run
	Alive []float64
	Y     float64
}

// Fit is the least-squares slope of Y on time, per minute, with containers
// alive (per kind) as further regressors and one intercept per segment.
type Fit struct {
	N        int       // observations used
	Segments int       // process incarnations
	Slope    float64   // per minute
	Lo, Hi   float64   // 95 % confidence interval of Slope
	PerAlive []float64 // Y per container alive, per kind (0 for a kind left out)
	Rho      float64   // lag-1 autocorrelation of the residuals (the CI is widened for it)
	OK       bool      // enough observations for an interval
}

// IncludesZero reports whether the interval admits no trend. A fit with too
// few observations says nothing, so it does not fail.
func (f Fit) IncludesZero() bool { return !f.OK || (f.Lo <= 0 && f.Hi >= 0) }

// FitSlope fits Y = a_seg + b*T + sum_k c_k*Alive[k] by ordinary least
// squares with a separate intercept per segment (within-segment demeaning).
// Samples taken every few seconds are autocorrelated, which makes the plain
// OLS interval too narrow: the standard error is widened by
// sqrt((1+rho)/(1-rho)) and the degrees of freedom shrunk by the same
// factor, rho the lag-1 autocorrelation of the residuals within segments
// (AR(1) correction). A kind whose count does not vary within segments, or
// varies only with the others and time, is left out of the fit.
func FitSlope(points []Point) Fit {
	bySeg := map[int][]Point{}
	var order []int
	kinds := 0
	for _, p := range points {
		if _, ok := bySeg[p.Seg]; !ok {
			order = append(order, p.Seg)
		}
		bySeg[p.Seg] = append(bySeg[p.Seg], p)
		kinds = max(kinds, len(p.Alive))
	}
	// Demeaned rows per segment, in time order: x[0] is T, x[1:] the kinds.
	type row struct {
		x []float64
		y float64
	}
	var rows [][]row
	n := 0
	for _, s := range order {
		ps := bySeg[s]
		if len(ps) < 2 {
			continue
		}
		slices.SortFunc(ps, func(a, b Point) int { return cmpFloat(a.T, b.T) })
		mean := make([]float64, 1+kinds)
		my := 0.0
		xs := make([][]float64, len(ps))
		for i, p := range ps {
			x := make([]float64, 1+kinds)
			x[0] = p.T
			copy(x[1:], p.Alive)
			xs[i] = x
			for j, v := range x {
				mean[j] += v
			}
			my += p.Y
		}
		k := float64(len(ps))
		my /= k
		seg := make([]row, len(ps))
		for i, p := range ps {
			for j := range xs[i] {
				xs[i][j] -= mean[j] / k
			}
			seg[i] = row{xs[i], p.Y - my}
		}
		rows = append(rows, seg)
		n += len(ps)
	}
	f := Fit{N: n, Segments: len(rows), PerAlive: make([]float64, kinds)}
	// Normal equations, then forward selection of the columns: time first,
	// a kind only when it adds what time and the kinds before it do not.
	m := 1 + kinds
	xtx := make([][]float64, m)
	xty := make([]float64, m)
	for j := range xtx {
		xtx[j] = make([]float64, m)
	}
	for _, seg := range rows {
		for _, r := range seg {
			for a := range m {
				xty[a] += r.x[a] * r.y
				for b := range m {
					xtx[a][b] += r.x[a] * r.x[b]
				}
			}
		}
	}
	if xtx[0][0] == 0 {
		return f
	}
	cols := []int{0}
	for k := 1; k < m; k++ {
		if xtx[k][k] == 0 {
			continue
		}
		// The diagonal of the inverse times the column's sum of
		// squares is its variance inflation factor, 1/(1-R^2) on the
		// columns before it.
		try := append(slices.Clone(cols), k)
		if inv, ok := invert(sub(xtx, try)); ok && inv[len(try)-1][len(try)-1]*xtx[k][k] < 1e9 {
			cols = try
		}
	}
	inv, ok := invert(sub(xtx, cols))
	if !ok {
		return f
	}
	beta := make([]float64, m)
	for i, a := range cols {
		for j, b := range cols {
			beta[a] += inv[i][j] * xty[b]
		}
	}
	copy(f.PerAlive, beta[1:])
	b := beta[0]
	df := n - len(cols) - len(rows)
	if df < 2 {
		f.Slope = b
		return f
	}
	var sse, lag float64
	for _, seg := range rows {
		prev, havePrev := 0.0, false
		for _, r := range seg {
			e := r.y
			for _, a := range cols {
				e -= beta[a] * r.x[a]
			}
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
	varB := s2 * inv[0][0]
	inflate := (1 + rho) / (1 - rho)
	se := math.Sqrt(varB * inflate)
	dfEff := max(1, int(float64(df)/inflate))
	q := tQuantile975(dfEff)
	f.Slope, f.Rho = b, rho
	f.Lo, f.Hi = b-q*se, b+q*se
	f.OK = true
	return f
}

// sub is the square submatrix of a on the indices idx.
func sub(a [][]float64, idx []int) [][]float64 {
	out := make([][]float64, len(idx))
	for i, r := range idx {
		out[i] = make([]float64, len(idx))
		for j, c := range idx {
			out[i][j] = a[r][c]
		}
	}
	return out
}

// invert inverts a small symmetric matrix by Gauss-Jordan elimination with
// partial pivoting; ok is false when it is singular (a pivot below 1e-12 of
// the largest diagonal entry).
func invert(a [][]float64) ([][]float64, bool) {
	n := len(a)
	m := make([][]float64, n)
	scale := 0.0
	for i := range a {
		m[i] = make([]float64, 2*n)
		copy(m[i], a[i])
		m[i][n+i] = 1
		scale = max(scale, math.Abs(a[i][i]))
	}
	for c := range n {
		p := c
		for r := c + 1; r < n; r++ {
			if math.Abs(m[r][c]) > math.Abs(m[p][c]) {
				p = r
			}
		}
		if math.Abs(m[p][c]) <= 1e-12*scale {
			return nil, false
		}
		m[c], m[p] = m[p], m[c]
		d := m[c][c]
		for j := range m[c] {
			m[c][j] /= d
		}
		for r := range n {
			if r == c || m[r][c] == 0 {
				continue
			}
			x := m[r][c]
			for j := range m[r] {
				m[r][j] -= x * m[c][j]
			}
		}
	}
	out := make([][]float64, n)
	for i := range m {
		out[i] = m[i][n:]
	}
	return out, true
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
