package metricnames

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/promql/parser"
)

// ErrNoQuery: a dashboard panel without a query, or a query without an
// expression.
var ErrNoQuery = errors.New("no query")

// Dashboard is the part of a Grafana dashboard's JSON model that holds
// PromQL: its panels (rows flattened, in file order) and its label_values
// variables.
type Dashboard struct {
	Panels    []Panel
	Variables []Variable
}

// Panel is one panel of a dashboard; a row is a Panel of Type "row".
type Panel struct {
	Title, Type, Unit string
	GridPos           GridPos
	Targets           []Target
}

// GridPos is where Grafana draws a panel: x and w in 24 columns, y and h in
// rows of 30 pixels.
type GridPos struct{ X, Y, W, H int }

// Target is one query of a panel, its expression as the dashboard has it
// (Grafana's variables not replaced).
type Target struct {
	RefID, Expr, Legend string
	Heatmap             bool // format "heatmap": a histogram's buckets
}

// Variable is a label_values(selector, label) query variable.
type Variable struct {
	Name, Selector, Label string
}

// Query is one PromQL expression of a dashboard and where it is.
type Query struct {
	Where  string // panel title and refId, or the variable's name
	Panel  string // the panel's title; "" for a variable's
	Expr   string // with Grafana's variables not replaced
	Legend string // legendFormat; {{label}} for a variable's
}

// dashboardModel is the JSON the reader takes apart.
type dashboardModel struct {
	Panels     []panelModel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panelModel struct {
	Title       string       `json:"title"`
	Type        string       `json:"type"`
	Panels      []panelModel `json:"panels"` // a collapsed row's
	GridPos     GridPos      `json:"gridPos"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Targets []struct {
		RefID        string `json:"refId"`
		Expr         string `json:"expr"`
		LegendFormat string `json:"legendFormat"`
		Format       string `json:"format"`
	} `json:"targets"`
}

var (
	labelValuesRE = regexp.MustCompile(`^\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$`)
	grafanaVarRE  = regexp.MustCompile(`\$\{?([a-zA-Z_][a-zA-Z0-9_]*)(?::[a-zA-Z]+)?\}?`)
)

// ReadDashboard reads a Grafana dashboard's JSON model. A panel without a
// query, a query without an expression and a query variable that is not
// label_values(selector, label) are errors (ErrNoQuery for the first two);
// the rest of the dashboard is still returned with them.
func ReadDashboard(data []byte) (Dashboard, error) {
	var m dashboardModel
	if err := json.Unmarshal(data, &m); err != nil {
		return Dashboard{}, err
	}
	var d Dashboard
	var errs []error
	var walk func([]panelModel)
	walk = func(ps []panelModel) {
		for _, p := range ps {
			panel := Panel{Title: p.Title, Type: p.Type, Unit: p.FieldConfig.Defaults.Unit, GridPos: p.GridPos}
			if p.Type != "row" && len(p.Targets) == 0 {
				errs = append(errs, fmt.Errorf("panel %q: %w", p.Title, ErrNoQuery))
			}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					errs = append(errs, fmt.Errorf("panel %q, query %s: %w", p.Title, tg.RefID, ErrNoQuery))
					continue
				}
				panel.Targets = append(panel.Targets, Target{RefID: tg.RefID, Expr: tg.Expr, Legend: tg.LegendFormat,
					Heatmap: tg.Format == "heatmap"})
			}
			d.Panels = append(d.Panels, panel)
			walk(p.Panels)
		}
	}
	walk(m.Panels)
	for _, v := range m.Templating.List {
		q, ok := v.Query.(string)
		if v.Type != "query" || !ok {
			continue
		}
		lv := labelValuesRE.FindStringSubmatch(q)
		if lv == nil {
			errs = append(errs, fmt.Errorf("variable %s: %q is not label_values(selector, label)", v.Name, q))
			continue
		}
		d.Variables = append(d.Variables, Variable{Name: v.Name, Selector: lv[1], Label: lv[2]})
	}
	return d, errors.Join(errs...)
}

// Queries returns every PromQL expression of the dashboard: each panel
// target's, and each variable's selector (with the label it asks for as
// the legend).
func (d Dashboard) Queries() []Query {
	var qs []Query
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			qs = append(qs, Query{Where: fmt.Sprintf("panel %q, query %s", p.Title, tg.RefID), Panel: p.Title,
				Expr: tg.Expr, Legend: tg.Legend})
		}
	}
	for _, v := range d.Variables {
		qs = append(qs, Query{Where: "variable " + v.Name, Expr: v.Selector, Legend: "{{" + v.Label + "}}"})
	}
	return qs
}

// Interpolate puts value(name) in place of each of Grafana's variables in
// expr: $name, ${name} and ${name:format}.
func Interpolate(expr string, value func(name string) string) string {
	return grafanaVarRE.ReplaceAllStringFunc(expr, func(v string) string {
		return value(grafanaVarRE.FindStringSubmatch(v)[1])
	})
}

// SeriesNames returns the metric names expr selects by name (not those of
// a {__name__=...} matcher), each once, in the order they first appear.
func SeriesNames(expr string) ([]string, error) {
	e, err := promql.ParseExpr(expr)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrParse, err)
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok && vs.Name != "" && !slices.Contains(names, vs.Name) {
			names = append(names, vs.Name)
		}
		return nil
	})
	return names, nil
}
