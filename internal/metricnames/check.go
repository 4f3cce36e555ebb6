package metricnames

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/promql/parser"
)

// What Check finds.
var (
	ErrParse         = errors.New("not valid PromQL")
	ErrUnknownMetric = errors.New("not a metric the binaries register")
	ErrUnknownLabel  = errors.New("not a label of that metric")
	ErrNotRecorded   = errors.New("not recorded by a rule")
)

// strictPrefixes are the names that must be registered: logferry's own and
// the Go and process collectors'. Other names (up, another exporter's) are
// not checked.
var strictPrefixes = []string{"logferry_", "go_", "process_"}

// promql is the parser of the Prometheus version the rules are written for.
var promql = parser.NewParser(parser.Options{})

// Check parses expr and checks that every logferry_, go_ and process_
// name it selects is a registered family (a histogram's also with
// _bucket, _sum or _count), that every label a selector matches on is one
// the series has, that every label of by, without, on, ignoring and
// group_left/right is one the expression it applies to has, and that every
// logferry:* name is one of recorded (whose labels are not known, so
// expressions over them are not checked further).
func (fs Families) Check(expr string, recorded []string) error {
	e, err := promql.ParseExpr(expr)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrParse, err)
	}
	c := checker{fs: fs, recorded: recorded}
	c.labels(e)
	return errors.Join(c.errs...)
}

// Labels returns the labels the result of expr can have (a superset), and
// false when it cannot tell because expr uses a series it does not know.
// Grafana's legend templates use only these.
func (fs Families) Labels(expr string) ([]string, bool, error) {
	e, err := promql.ParseExpr(expr)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %v", ErrParse, err)
	}
	c := checker{fs: fs}
	ls := c.labels(e)
	if ls == nil {
		return nil, false, errors.Join(c.errs...)
	}
	return ls.sorted(), true, errors.Join(c.errs...)
}

// labelSet is the labels an expression's result can have; nil: not known.
type labelSet map[string]bool

func setOf(ls ...string) labelSet {
	s := labelSet{}
	for _, l := range ls {
		s[l] = true
	}
	return s
}

func (s labelSet) union(o labelSet) labelSet {
	if s == nil || o == nil {
		return nil
	}
	u := labelSet{}
	for l := range s {
		u[l] = true
	}
	for l := range o {
		u[l] = true
	}
	return u
}

func (s labelSet) sorted() []string {
	var ls []string
	for l := range s {
		ls = append(ls, l)
	}
	slices.Sort(ls)
	return ls
}

type checker struct {
	fs       Families
	recorded []string
	errs     []error
}

func (c *checker) errorf(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf(format, args...))
}

// need reports each of names that has is known not to hold.
func (c *checker) need(where string, names []string, has labelSet) {
	if has == nil {
		return
	}
	for _, n := range names {
		if !has[n] {
			c.errorf("%s: %q: %w (it has %v)", where, n, ErrUnknownLabel, has.sorted())
		}
	}
}

// labels checks n and returns the labels its result can have.
func (c *checker) labels(n parser.Node) labelSet {
	switch n := n.(type) {
	case *parser.VectorSelector:
		return c.selector(n)
	case *parser.MatrixSelector:
		return c.labels(n.VectorSelector)
	case *parser.SubqueryExpr:
		return c.labels(n.Expr)
	case *parser.ParenExpr:
		return c.labels(n.Expr)
	case *parser.StepInvariantExpr:
		return c.labels(n.Expr)
	case *parser.UnaryExpr:
		return c.labels(n.Expr)
	case *parser.NumberLiteral, *parser.StringLiteral:
		return labelSet{}
	case *parser.AggregateExpr:
		return c.aggregate(n)
	case *parser.BinaryExpr:
		return c.binary(n)
	case *parser.Call:
		return c.call(n)
	}
	for child := range parser.ChildrenIter(n) {
		c.labels(child)
	}
	return nil
}

func (c *checker) selector(vs *parser.VectorSelector) labelSet {
	name := vs.Name
	if strings.HasPrefix(name, "logferry:") {
		if !slices.Contains(c.recorded, name) {
			c.errorf("%s: %w", name, ErrNotRecorded)
		}
		return nil
	}
	f, suffix, ok := c.fs.lookup(name)
	if !ok {
		for _, p := range strictPrefixes {
			if strings.HasPrefix(name, p) {
				c.errorf("%s: %w", name, ErrUnknownMetric)
			}
		}
		return nil
	}
	has := setOf(append(slices.Clone(TargetLabels), f.Labels...)...)
	if suffix == "_bucket" {
		has["le"] = true
	}
	if f.Kind == Summary && suffix == "" {
		has["quantile"] = true
	}
	var matched []string
	for _, m := range vs.LabelMatchers {
		if m.Name != "__name__" {
			matched = append(matched, m.Name)
		}
	}
	c.need(name, matched, has)
	return has
}

func (c *checker) aggregate(a *parser.AggregateExpr) labelSet {
	if a.Param != nil {
		c.labels(a.Param)
	}
	in := c.labels(a.Expr)
	op := a.Op.String()
	if a.Without {
		c.need(op+" without", a.Grouping, in)
	} else {
		c.need(op+" by", a.Grouping, in)
	}
	switch a.Op {
	case parser.TOPK, parser.BOTTOMK, parser.LIMITK, parser.LIMIT_RATIO:
		return in // keep the series they select
	}
	var out labelSet
	switch {
	case a.Without && in != nil:
		out = labelSet{}
		for l := range in {
			if !slices.Contains(a.Grouping, l) {
				out[l] = true
			}
		}
	case a.Without:
		return nil
	default:
		out = setOf(a.Grouping...)
	}
	if a.Op == parser.COUNT_VALUES {
		if s, ok := a.Param.(*parser.StringLiteral); ok {
			out[s.Val] = true
		}
	}
	return out
}

func (c *checker) binary(b *parser.BinaryExpr) labelSet {
	lhs, rhs := c.labels(b.LHS), c.labels(b.RHS)
	lv := b.LHS.Type() == parser.ValueTypeVector
	rv := b.RHS.Type() == parser.ValueTypeVector
	switch {
	case !lv && !rv:
		return labelSet{}
	case !rv:
		return lhs
	case !lv:
		return rhs
	}
	vm := b.VectorMatching
	if vm == nil {
		return lhs
	}
	op := b.Op.String()
	if vm.On {
		c.need(op+" on (left)", vm.MatchingLabels, lhs)
		c.need(op+" on (right)", vm.MatchingLabels, rhs)
	} else {
		c.need(op+" ignoring", vm.MatchingLabels, lhs.union(rhs))
	}
	// The result is a superset: the "many" side's labels and what
	// group_left/right copies from the "one" side.
	switch vm.Card {
	case parser.CardManyToOne:
		c.need(op+" group_left", vm.Include, rhs)
		return lhs.union(setOf(vm.Include...))
	case parser.CardOneToMany:
		c.need(op+" group_right", vm.Include, lhs)
		return rhs.union(setOf(vm.Include...))
	}
	if b.Op == parser.LOR {
		return lhs.union(rhs)
	}
	return lhs
}

func (c *checker) call(call *parser.Call) labelSet {
	var args []labelSet
	for _, a := range call.Args {
		args = append(args, c.labels(a))
	}
	switch call.Func.Name {
	case "label_replace", "label_join":
		if len(args) > 1 && args[0] != nil {
			if s, ok := call.Args[1].(*parser.StringLiteral); ok {
				return args[0].union(setOf(s.Val))
			}
		}
		return nil
	case "histogram_quantile", "histogram_fraction":
		in := args[len(args)-1]
		if in == nil {
			return nil
		}
		out := labelSet{}
		for l := range in {
			if l != "le" {
				out[l] = true
			}
		}
		return out
	case "absent", "absent_over_time", "vector", "time", "scalar":
		return labelSet{}
	}
	// Other functions keep the labels of their vector argument.
	out := labelSet{}
	for i, a := range call.Args {
		switch a.Type() {
		case parser.ValueTypeVector, parser.ValueTypeMatrix:
			out = out.union(args[i])
		}
	}
	return out
}

// lookup finds the family a series name belongs to, and the suffix the
// series adds to the family's name.
func (fs Families) lookup(name string) (Family, string, bool) {
	if f, ok := fs[name]; ok {
		return f, "", true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		f, ok := fs[base]
		if ok && (f.Kind == Histogram || f.Kind == Summary && suffix != "_bucket") {
			return f, suffix, true
		}
	}
	return Family{}, "", false
}
