// Package panelchart draws a Grafana dashboard's panels as PNG charts from
// series the caller has queried (Prometheus' query_range): each panel where
// Grafana puts it on its 24-column grid, all in one image, or one image per
// panel. It owns the drawing only; what to query and how to name the series
// is the caller's.
package panelchart

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/palette/moreland"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Kind is how a panel is drawn.
type Kind int

const (
	Graph   Kind = iota // a line per series
	Heatmap             // a row per series (a histogram bucket), a column per step
	Row                 // a row header: its title only
)

// Point is one sample of a series.
type Point struct {
	T time.Time
	V float64
}

// Series is one line of a graph, or one bucket of a heatmap (Name its upper
// bound, the series in ascending order).
type Series struct {
	Name   string
	Points []Point
}

// Panel is one panel of the dashboard with its data.
type Panel struct {
	Title      string
	Kind       Kind
	Unit       string // Grafana's: short, bytes, Bps, reqps, s
	X, Y, W, H int    // Grafana's gridPos: columns of 24, rows
	Series     []Series
}

// Dashboard is the panels and the time range they were queried over.
type Dashboard struct {
	Title      string
	Subtitle   string
	Start, End time.Time
	Panels     []Panel
	// Marks are drawn across every graph as dashed vertical lines, as
	// Grafana draws annotations.
	Marks []time.Time
}

// Sizes, in points (1/72 inch); images are drawn at dpi.
const (
	dpi                  = 96
	colWidth   vg.Length = 50 // one of Grafana's 24 columns
	rowHeight  vg.Length = 23 // one of Grafana's grid rows
	headHeight vg.Length = 34 // the dashboard's title above the grid
	pad                  = 3
	maxLegend            = 5 // legend rows; the rest are counted
	legendLine           = 8.5
)

var (
	grey      = color.Gray{Y: 200}
	darkGrey  = color.Gray{Y: 90}
	textBlack = color.Gray{Y: 20}
)

// textStyle is the plots' font at size, aligned left and bottom.
func textStyle(size vg.Length) text.Style {
	return text.Style{Color: textBlack, Font: font.From(plot.DefaultFont, size), Handler: plot.DefaultTextHandler}
}

// WriteGrid draws every panel where Grafana puts it, under the dashboard's
// title, as one PNG.
func (d Dashboard) WriteGrid(w io.Writer) error {
	rows := 0
	for _, p := range d.Panels {
		rows = max(rows, p.Y+p.H)
	}
	width := 24 * colWidth
	height := headHeight + vg.Length(rows)*rowHeight
	img := vgimg.NewWith(vgimg.UseWH(width, height), vgimg.UseDPI(dpi))
	dc := draw.New(img)
	title := textStyle(13)
	title.YAlign = text.YTop
	dc.FillText(title, vg.Point{X: pad * 2, Y: height - pad}, d.Title)
	sub := textStyle(8)
	sub.YAlign = text.YTop
	sub.Color = darkGrey
	dc.FillText(sub, vg.Point{X: pad * 2, Y: height - pad - 16}, d.Subtitle)
	for _, p := range d.Panels {
		r := vg.Rectangle{
			Min: vg.Point{X: vg.Length(p.X) * colWidth, Y: height - headHeight - vg.Length(p.Y+p.H)*rowHeight},
			Max: vg.Point{X: vg.Length(p.X+p.W) * colWidth, Y: height - headHeight - vg.Length(p.Y)*rowHeight},
		}
		if err := d.drawPanel(draw.Canvas{Canvas: dc.Canvas, Rectangle: r}, p); err != nil {
			return fmt.Errorf("panel %q: %w", p.Title, err)
		}
	}
	_, err := vgimg.PngCanvas{Canvas: img}.WriteTo(w)
	return err
}

// WritePanel draws panel i alone, at its size on the grid, as a PNG.
func (d Dashboard) WritePanel(w io.Writer, i int) error {
	p := d.Panels[i]
	img := vgimg.NewWith(vgimg.UseWH(vg.Length(p.W)*colWidth, vg.Length(p.H)*rowHeight), vgimg.UseDPI(dpi))
	if err := d.drawPanel(draw.New(img), p); err != nil {
		return fmt.Errorf("panel %q: %w", p.Title, err)
	}
	_, err := vgimg.PngCanvas{Canvas: img}.WriteTo(w)
	return err
}

func (d Dashboard) drawPanel(c draw.Canvas, p Panel) error {
	c = draw.Crop(c, pad, -pad, pad, -pad)
	if p.Kind == Row {
		st := textStyle(11)
		st.YAlign = text.YCenter
		c.FillText(st, vg.Point{X: c.Min.X + pad, Y: (c.Min.Y + c.Max.Y) / 2}, p.Title)
		c.StrokeLine2(draw.LineStyle{Color: grey, Width: 0.5}, c.Min.X, c.Min.Y, c.Max.X, c.Min.Y)
		return nil
	}
	c.StrokeLines(draw.LineStyle{Color: grey, Width: 0.5}, []vg.Point{
		c.Min, {X: c.Max.X, Y: c.Min.Y}, c.Max, {X: c.Min.X, Y: c.Max.Y}, c.Min})
	c = draw.Crop(c, pad, -pad, pad, -pad)

	pl := plot.New()
	pl.Title.Text = p.Title
	pl.Title.TextStyle.Font.Size = 9
	pl.Title.Padding = 2
	pl.X.Min, pl.X.Max = unixSeconds(d.Start), unixSeconds(d.End)
	pl.X.Tick.Marker = plot.TimeTicks{Format: "15:04:05", Time: plot.UnixTimeIn(time.UTC)}
	for _, a := range []*plot.Axis{&pl.X, &pl.Y} {
		a.Tick.Label.Font.Size = 6.5
		a.Tick.Length = 3
		a.Padding = 1
	}
	pl.Y.Min = 0
	switch {
	case !hasData(p.Series):
		pl.Y.Max = 1
		pl.Y.Tick.Marker = plot.ConstantTicks(nil)
		pl.Draw(c)
		st := textStyle(10)
		st.Color = darkGrey
		st.XAlign, st.YAlign = text.XCenter, text.YCenter
		c.FillText(st, c.Center(), "No data")
		return nil
	case p.Kind == Heatmap:
		return drawHeatmap(c, pl, p)
	}
	legendRows := min(len(p.Series), maxLegend)
	if len(p.Series) > maxLegend {
		legendRows++
	}
	legendH := vg.Length(legendRows)*legendLine + 4
	plotArea := draw.Crop(c, 0, 0, legendH, 0)
	pl.Y.Tick.Marker = unitTicks(p.Unit)
	ymax := 0.0
	for i, s := range p.Series {
		xys := make(plotter.XYs, 0, len(s.Points))
		for _, pt := range s.Points {
			if math.IsNaN(pt.V) || math.IsInf(pt.V, 0) {
				continue
			}
			xys = append(xys, plotter.XY{X: unixSeconds(pt.T), Y: pt.V})
			ymax = max(ymax, pt.V)
		}
		if len(xys) == 0 {
			continue
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return err
		}
		l.Color = seriesColor(i)
		l.Width = 1
		pl.Add(l)
	}
	if ymax == 0 {
		pl.Y.Max = 1
	}
	pl.Add(plotter.NewGrid())
	for _, m := range d.Marks {
		pl.Add(mark{unixSeconds(m)})
	}
	pl.Draw(plotArea)
	drawLegend(draw.Crop(c, 0, 0, 0, -(c.Size().Y-legendH)), p)
	return nil
}

// drawLegend writes Grafana's table legend under a graph: each series'
// colour and name, its last and its largest value.
func drawLegend(c draw.Canvas, p Panel) {
	st := textStyle(6.5)
	num := st
	num.XAlign = text.XRight
	y := c.Max.Y - 2 - legendLine
	valueCol := c.Max.X - 45
	for i, s := range p.Series {
		if i == maxLegend {
			more := st
			more.Color = darkGrey
			c.FillText(more, vg.Point{X: c.Min.X + 14, Y: y}, fmt.Sprintf("... and %d more series", len(p.Series)-maxLegend))
			break
		}
		c.FillPolygon(seriesColor(i), []vg.Point{{X: c.Min.X + 2, Y: y + 1}, {X: c.Min.X + 11, Y: y + 1},
			{X: c.Min.X + 11, Y: y + 4}, {X: c.Min.X + 2, Y: y + 4}})
		last, peak := math.NaN(), math.NaN()
		for _, pt := range s.Points {
			if !math.IsNaN(pt.V) {
				last = pt.V
				if math.IsNaN(peak) || pt.V > peak {
					peak = pt.V
				}
			}
		}
		name := s.Name
		if maxW := valueCol - 60 - c.Min.X - 14; st.Width(name) > maxW {
			for len(name) > 1 && st.Width(name+"...") > maxW {
				name = name[:len(name)-1]
			}
			name += "..."
		}
		c.FillText(st, vg.Point{X: c.Min.X + 14, Y: y}, name)
		c.FillText(num, vg.Point{X: valueCol, Y: y}, "last "+formatValue(p.Unit, last))
		c.FillText(num, vg.Point{X: c.Max.X - 2, Y: y}, "max "+formatValue(p.Unit, peak))
		y -= legendLine
	}
}

// drawHeatmap draws one row per bucket (series) and one column per step.
func drawHeatmap(c draw.Canvas, pl *plot.Plot, p Panel) error {
	g := newGrid(p.Series)
	if g.max <= g.min {
		g.max = g.min + 1
	}
	pal := moreland.SmoothBlueRed().Palette(64)
	h := plotter.NewHeatMap(g, pal)
	h.Min, h.Max = g.min, g.max
	h.NaN = color.Transparent
	pl.Add(h)
	pl.Y.Min, pl.Y.Max = -0.5, float64(len(p.Series))-0.5
	var ticks []plot.Tick
	step := max(1, len(p.Series)/6)
	for i, s := range p.Series {
		label := ""
		if i%step == 0 || i == len(p.Series)-1 {
			label = s.Name
			if v, err := strconv.ParseFloat(s.Name, 64); err == nil && !math.IsInf(v, 0) {
				label = formatValue(p.Unit, v)
			}
		}
		ticks = append(ticks, plot.Tick{Value: float64(i), Label: label})
	}
	pl.Y.Tick.Marker = plot.ConstantTicks(ticks)
	pl.Draw(c)
	return nil
}

// grid is a heatmap's cells: columns are the union of the series'
// timestamps, rows the series.
type grid struct {
	times    []float64
	z        [][]float64 // [row][column]
	min, max float64
}

func newGrid(series []Series) *grid {
	seen := map[int64]bool{}
	for _, s := range series {
		for _, pt := range s.Points {
			seen[pt.T.UnixMilli()] = true
		}
	}
	var ms []int64
	for t := range seen {
		ms = append(ms, t)
	}
	slices.Sort(ms)
	col := map[int64]int{}
	g := &grid{min: math.Inf(1), max: math.Inf(-1)}
	for i, t := range ms {
		col[t] = i
		g.times = append(g.times, float64(t)/1e3)
	}
	for _, s := range series {
		row := make([]float64, len(ms))
		for i := range row {
			row[i] = math.NaN()
		}
		for _, pt := range s.Points {
			row[col[pt.T.UnixMilli()]] = pt.V
			if !math.IsNaN(pt.V) {
				g.min, g.max = min(g.min, pt.V), max(g.max, pt.V)
			}
		}
		g.z = append(g.z, row)
	}
	if math.IsInf(g.min, 0) {
		g.min, g.max = 0, 1
	}
	return g
}

func (g *grid) Dims() (c, r int)      { return len(g.times), len(g.z) }
func (g *grid) Z(c, r int) float64    { return g.z[r][c] }
func (g *grid) X(c int) float64       { return g.times[c] }
func (g *grid) Y(r int) float64       { return float64(r) }
func (g *grid) Min() float64          { return g.min }
func (g *grid) Max() float64          { return g.max }
func unixSeconds(t time.Time) float64 { return float64(t.UnixMilli()) / 1e3 }

// mark is a dashed vertical line at x across the whole plot.
type mark struct{ x float64 }

func (m mark) Plot(c draw.Canvas, p *plot.Plot) {
	trX, _ := p.Transforms(&c)
	x := trX(m.x)
	c.StrokeLine2(draw.LineStyle{Color: darkGrey, Width: 0.7, Dashes: []vg.Length{3, 2}}, x, c.Min.Y, x, c.Max.Y)
}

func hasData(series []Series) bool {
	for _, s := range series {
		for _, pt := range s.Points {
			if !math.IsNaN(pt.V) {
				return true
			}
		}
	}
	return false
}

// seriesColor is Grafana's classic palette, in its order.
func seriesColor(i int) color.Color {
	palette := []color.RGBA{
		{0x73, 0xbf, 0x69, 0xff}, {0xf2, 0xcc, 0x0c, 0xff}, {0x8a, 0xb8, 0xff, 0xff}, {0xff, 0x78, 0x0a, 0xff},
		{0xf2, 0x49, 0x5c, 0xff}, {0x57, 0x94, 0xf2, 0xff}, {0xb8, 0x77, 0xd9, 0xff}, {0x70, 0x5d, 0xa0, 0xff},
		{0x37, 0x87, 0x2d, 0xff}, {0xfa, 0xde, 0x2a, 0xff},
	}
	return palette[i%len(palette)]
}

// unitTicks labels the default ticks in the panel's unit.
type unitTicks string

func (u unitTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = formatValue(string(u), ticks[i].Value)
		}
	}
	return ticks
}

// formatValue writes v in Grafana's unit: bytes in KiB/MiB, rates per
// second, seconds as ms below one, counts with k/M.
func formatValue(unit string, v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	switch unit {
	case "bytes":
		return iec(v)
	case "Bps":
		return iec(v) + "/s"
	case "reqps":
		return si(v) + " req/s"
	case "s":
		if v != 0 && math.Abs(v) < 1 {
			return trim(v*1e3) + " ms"
		}
		return trim(v) + " s"
	}
	return si(v)
}

func iec(v float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for math.Abs(v) >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return trim(v) + " " + units[i]
}

func si(v float64) string {
	units := []string{"", "k", "M", "G", "T"}
	i := 0
	for math.Abs(v) >= 1000 && i < len(units)-1 {
		v /= 1000
		i++
	}
	return trim(v) + units[i]
}

// trim writes v with at most three significant decimals, no trailing zeros.
func trim(v float64) string {
	s := fmt.Sprintf("%.3g", v)
	if strings.Contains(s, "e") {
		s = fmt.Sprintf("%.2f", v)
	}
	return s
}
