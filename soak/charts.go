package soak

import (
	"fmt"
	"image/color"
	"path/filepath"
	"slices"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// chart is one PNG of the report.
type chart struct {
	File, Title string
}

var procColor = map[string]int{procPlugin: 0, procSidecar: 1, procDockerd: 2, procLoki: 3}

// writeCharts draws the per-process series over time, the latency
// distribution and latency over time, and returns what it drew.
func writeCharts(dir string, r *Result) ([]chart, error) {
	var out []chart
	series := []struct {
		file, title, unit string
		value             func(Sample) float64
	}{
		{"goroutines.png", "Goroutines", "goroutines", func(s Sample) float64 { return s.Goroutines }},
		{"fds.png", "Open file descriptors", "FDs", func(s Sample) float64 { return s.FDs }},
		{"rss.png", "Resident set (VmRSS)", "MiB", func(s Sample) float64 { return mib(s.RSS) }},
		{"heap.png", "Go heap in use", "MiB", func(s Sample) float64 { return mib(s.Heap) }},
		{"cpu.png", "CPU, % of one core", "%", func(s Sample) float64 { return s.CPU }},
		{"streams.png", "Streams (plugin) / containers tracked (sidecar)", "count", func(s Sample) float64 { return s.Streams }},
		{"alive.png", "Soak containers alive", "containers", func(s Sample) float64 { return s.Alive }},
		{"spool.png", "Spool bytes on disk", "MiB", func(s Sample) float64 { return mib(s.Spool) }},
	}
	for _, sr := range series {
		p := plot.New()
		p.Title.Text = sr.title
		p.X.Label.Text = "minutes since start (grey: disturbances)"
		p.Y.Label.Text = sr.unit
		ymax := 0.0
		for _, proc := range procs {
			var xys plotter.XYs
			for _, s := range r.Samples {
				if s.Proc != proc {
					continue
				}
				if v := sr.value(s); v >= 0 {
					xys = append(xys, plotter.XY{X: s.At.Sub(r.Start).Minutes(), Y: v})
					ymax = max(ymax, v)
				}
			}
			if len(xys) == 0 {
				continue
			}
			l, err := plotter.NewLine(xys)
			if err != nil {
				return out, err
			}
			l.Color = plotutil.Color(procColor[proc])
			p.Add(l)
			p.Legend.Add(proc, l)
		}
		if err := addWindows(p, r, ymax); err != nil {
			return out, err
		}
		p.Legend.Top = true
		if err := p.Save(10*vg.Inch, 4*vg.Inch, filepath.Join(dir, sr.file)); err != nil {
			return out, err
		}
		out = append(out, chart{sr.file, sr.title})
	}

	// What each binary's resident memory is made of.
	for _, proc := range []string{procPlugin, procSidecar} {
		file := "memory-" + proc + ".png"
		title := "Memory of the " + proc + ": RSS and its parts"
		if err := memoryChart(filepath.Join(dir, file), title, proc, r); err != nil {
			return out, err
		}
		out = append(out, chart{file, title})
	}

	// Latency CDF per capture style, outside disturbances.
	p := plot.New()
	p.Title.Text = "write -> queryable, outside disturbances (cumulative share of sampled lines)"
	p.X.Label.Text = "seconds"
	p.Y.Label.Text = "share"
	for i, style := range styles {
		var ds []time.Duration
		for _, l := range r.Latencies {
			if l.Style == style && !inWindows(r.Windows, l.Write, windowBefore, latencyAfter) {
				ds = append(ds, l.Value())
			}
		}
		if len(ds) == 0 {
			continue
		}
		slices.Sort(ds)
		xys := make(plotter.XYs, len(ds))
		for j, d := range ds {
			xys[j] = plotter.XY{X: d.Seconds(), Y: float64(j+1) / float64(len(ds))}
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return out, err
		}
		l.Color = plotutil.Color(i)
		p.Add(l)
		p.Legend.Add(fmt.Sprintf("%s (n=%d)", style, len(ds)), l)
	}
	p.Legend.Left, p.Legend.Top = false, false
	if err := p.Save(8*vg.Inch, 4*vg.Inch, filepath.Join(dir, "latency-cdf.png")); err != nil {
		return out, err
	}
	out = append(out, chart{"latency-cdf.png", "Latency distribution"})

	// Latency over time: disturbances and outage recoveries show as spikes.
	p = plot.New()
	p.Title.Text = "write -> queryable of each sampled line, by write time (grey: disturbances)"
	p.X.Label.Text = "minutes since start"
	p.Y.Label.Text = "seconds"
	ymax := 0.0
	for i, style := range styles {
		var xys plotter.XYs
		for _, l := range r.Latencies {
			if l.Style == style {
				xys = append(xys, plotter.XY{X: l.Write.Sub(r.Start).Minutes(), Y: l.Value().Seconds()})
				ymax = max(ymax, l.Value().Seconds())
			}
		}
		if len(xys) == 0 {
			continue
		}
		sc, err := plotter.NewScatter(xys)
		if err != nil {
			return out, err
		}
		sc.GlyphStyle.Color = plotutil.Color(i)
		sc.GlyphStyle.Radius = vg.Points(1)
		p.Add(sc)
		p.Legend.Add(style, sc)
	}
	if err := addWindows(p, r, ymax); err != nil {
		return out, err
	}
	p.Legend.Top = true
	if err := p.Save(10*vg.Inch, 4*vg.Inch, filepath.Join(dir, "latency-time.png")); err != nil {
		return out, err
	}
	out = append(out, chart{"latency-time.png", "Latency over time and outage recoveries"})
	return out, nil
}

// memoryChart draws proc's VmRSS beside its parts: the anonymous pages
// (the process's own memory) and the mapped files' (the binary's text among
// them), and of the Go runtime's, the heap in use, the free heap it keeps,
// the goroutine stacks, the heap goal (a goal that rises says the heap
// live after a GC grew; a flat one with RSS rising, that the runtime keeps
// free memory) and the runtime's metadata (which follows the largest heap
// the process has had).
func memoryChart(path, title, proc string, r *Result) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "minutes since start (grey: disturbances)"
	p.Y.Label.Text = "MiB"
	parts := []struct {
		name  string
		value func(Sample) float64
	}{
		{"VmRSS", func(s Sample) float64 { return s.RSS }},
		{"RssAnon", func(s Sample) float64 { return s.RSSAnon }},
		{"RssFile", func(s Sample) float64 { return s.RSSFile }},
		{"Go heap in use", func(s Sample) float64 { return s.Heap }},
		{"Go heap free, kept", func(s Sample) float64 { return s.HeapKept }},
		{"Go stacks", func(s Sample) float64 { return s.Stacks }},
		{"Go heap goal (next GC)", func(s Sample) float64 { return s.HeapGoal }},
		{"Go runtime metadata", func(s Sample) float64 { return s.Metadata }},
		{"Go holds (heap in use + kept + stacks + metadata)", goHeld},
	}
	ymax := 0.0
	for i, part := range parts {
		var xys plotter.XYs
		for _, s := range r.Samples {
			if v := part.value(s); s.Proc == proc && v >= 0 {
				xys = append(xys, plotter.XY{X: s.At.Sub(r.Start).Minutes(), Y: mib(v)})
				ymax = max(ymax, mib(v))
			}
		}
		if len(xys) == 0 {
			continue
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return err
		}
		l.Color = plotutil.Color(i)
		// Past the palette's colours, the line is dashed: not VmRSS's red.
		l.Dashes = plotutil.Dashes(i / len(plotutil.DefaultColors))
		p.Add(l)
		p.Legend.Add(part.name, l)
	}
	if err := addWindows(p, r, ymax); err != nil {
		return err
	}
	p.Legend.Top = true
	return p.Save(10*vg.Inch, 4*vg.Inch, path)
}

// addWindows draws each disturbance as a grey band edge at its start and
// end.
func addWindows(p *plot.Plot, r *Result, ymax float64) error {
	grey := color.Gray{Y: 160}
	for _, w := range r.Windows {
		end := w.End
		if end.IsZero() {
			end = w.Start
		}
		x0, x1 := w.Start.Sub(r.Start).Minutes(), end.Sub(r.Start).Minutes()
		poly, err := plotter.NewPolygon(plotter.XYs{{X: x0, Y: 0}, {X: x1, Y: 0}, {X: x1, Y: ymax}, {X: x0, Y: ymax}})
		if err != nil {
			return err
		}
		poly.Color = color.Gray{Y: 225}
		poly.LineStyle.Color = grey
		p.Add(poly)
	}
	return nil
}

func mib(b float64) float64 {
	if b < 0 {
		return -1
	}
	return b / (1 << 20)
}
