package panelchart

import (
	"bytes"
	"image/png"
	"math"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testDashboard() Dashboard {
	start := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	line := func(name string, f func(i int) float64) Series {
		s := Series{Name: name}
		for i := range 30 {
			s.Points = append(s.Points, Point{T: start.Add(time.Duration(i) * 2 * time.Second), V: f(i)})
		}
		return s
	}
	var many []Series
	for i := range 8 {
		many = append(many, line("series with a rather long legend name that must be cut to fit", func(j int) float64 { return float64(i * j) }))
	}
	return Dashboard{
		Title: "test", Subtitle: "drawn by panelchart_test.go",
		Start: start, End: start.Add(time.Minute),
		Marks: []time.Time{start.Add(30 * time.Second)},
		Panels: []Panel{
			{Title: "Row", Kind: Row, X: 0, Y: 0, W: 24, H: 1},
			{Title: "Bytes", Unit: "Bps", X: 0, Y: 1, W: 12, H: 8, Series: []Series{
				line("a", func(i int) float64 { return float64(i) * 1e5 }),
				line("gap", func(i int) float64 { return math.NaN() }),
			}},
			{Title: "Many", Unit: "short", X: 12, Y: 1, W: 12, H: 8, Series: many},
			{Title: "Empty", Unit: "reqps", X: 0, Y: 9, W: 8, H: 8},
			{Title: "Heat", Kind: Heatmap, Unit: "s", X: 8, Y: 9, W: 16, H: 8, Series: []Series{
				line("0.1", func(i int) float64 { return float64(i % 5) }),
				line("1", func(i int) float64 { return 0 }),
				line("+Inf", func(i int) float64 { return 1 }),
			}},
		},
	}
}

func TestWriteGrid(t *testing.T) {
	var buf bytes.Buffer
	if err := testDashboard().WriteGrid(&buf); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	// 24 columns of 50 pt and 17 rows of 23 pt under a 34 pt title, at 96 dpi.
	if b := img.Bounds(); b.Dx() != 1600 || b.Dy() != int(math.Round((34+17*23)*96/72.0)) {
		t.Fatalf("image %v", b)
	}
}

func TestWritePanel(t *testing.T) {
	d := testDashboard()
	for i := range d.Panels {
		var buf bytes.Buffer
		if err := d.WritePanel(&buf, i); err != nil {
			t.Fatalf("%s: %v", d.Panels[i].Title, err)
		}
		if _, err := png.Decode(&buf); err != nil {
			t.Fatalf("%s: %v", d.Panels[i].Title, err)
		}
	}
}

func TestFormatValue(t *testing.T) {
	tests := []struct {
		unit string
		v    float64
		want string
	}{
		{"bytes", 1536, "1.5 KiB"},
		{"bytes", 64 << 20, "64 MiB"},
		{"Bps", 100, "100 B/s"},
		{"short", 12_300, "12.3k"},
		{"short", 0.25, "0.25"},
		{"reqps", 8, "8 req/s"},
		{"s", 0.0042, "4.2 ms"},
		{"s", 2, "2 s"},
		{"short", math.NaN(), "-"},
	}
	for _, tt := range tests {
		if got := formatValue(tt.unit, tt.v); got != tt.want {
			t.Errorf("formatValue(%q, %v) = %q, want %q", tt.unit, tt.v, got, tt.want)
		}
	}
}
