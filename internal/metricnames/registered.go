// Package metricnames knows the metric families the two binaries register,
// with their labels, and checks PromQL expressions against them, so that
// the alert rules and the dashboard cannot name a series that does not
// exist.
package metricnames

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"

	"github.com/logferry/logferry/plugin"
	"github.com/logferry/logferry/shared/buildinfo"
	"github.com/logferry/logferry/shared/loki"
	"github.com/logferry/logferry/shared/pipeline"
	"github.com/logferry/logferry/shared/spool"
	"github.com/logferry/logferry/sidecar"
	"github.com/logferry/logferry/sidecar/tail"
)

// Kind is what a family is, for the suffixes its series have.
type Kind int

const (
	Plain     Kind = iota // counter, gauge, untyped: the name alone
	Histogram             // _bucket (with le), _sum, _count
	Summary               // the name (with quantile), _sum, _count
)

// Family is one registered metric family.
type Family struct {
	Kind   Kind
	Labels []string // variable labels, without job and instance
}

// Families maps a family's name to it.
type Families map[string]Family

// TargetLabels are added by Prometheus to every scraped series.
var TargetLabels = []string{"job", "instance"}

// Binaries names the two binaries and registers each one's metrics as its
// cmd/logferry-* main does (with the spool overflow policy, which adds the
// spool series).
var Binaries = map[string]func(prometheus.Registerer){
	"plugin": func(reg prometheus.Registerer) {
		common(reg)
		plugin.NewMetrics(reg)
	},
	"sidecar": func(reg prometheus.Registerer) {
		common(reg)
		sidecar.NewMetrics(reg)
		tail.NewMetrics(reg)
	},
}

func common(reg prometheus.Registerer) {
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildinfo.Read().Register(reg)
	loki.NewMetrics(reg)
	spool.NewMetrics(reg)
	loki.NewSpoolMetrics(reg)
	pipeline.NewGuards(pipeline.GuardConfig{}, reg, nil)
}

// Registered returns the families of both binaries, each registered in a
// registry of its own (which still refuses duplicates).
func Registered() (Families, error) {
	all := Families{}
	for name, register := range Binaries {
		fs, err := record(register)
		if err != nil {
			return nil, fmt.Errorf("registering the %s's metrics: %w", name, err)
		}
		maps.Copy(all, fs)
	}
	return all, nil
}

// record runs register against a recorder and returns what it registered.
// A vector's type is read from the collector's type, a plain collector's
// (the Go and process collectors') from what it gathers.
func record(register func(prometheus.Registerer)) (fs Families, err error) {
	r := &recorder{reg: prometheus.NewRegistry(), families: Families{}}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%v", p)
		}
	}()
	register(r)
	if r.err != nil {
		return nil, r.err
	}
	gathered, err := r.reg.Gather()
	if err != nil {
		return nil, err
	}
	for _, mf := range gathered {
		f, ok := r.families[mf.GetName()]
		if !ok {
			continue
		}
		switch mf.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			f.Kind = Histogram
		case dto.MetricType_SUMMARY:
			f.Kind = Summary
		}
		r.families[mf.GetName()] = f
	}
	return r.families, nil
}

// recorder is a Registerer that writes down the descriptors of what is
// registered with it and passes it on to a real registry.
type recorder struct {
	reg      *prometheus.Registry
	families Families
	err      error // the first descriptor that could not be read
}

var _ prometheus.Registerer = (*recorder)(nil)

// descRE reads a Desc's String(); client_golang exports no accessors for
// the name and variable labels.
var descRE = regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)

var errDesc = errors.New("cannot read the descriptor")

func (r *recorder) Register(c prometheus.Collector) error {
	if err := r.reg.Register(c); err != nil {
		return err
	}
	k := Plain
	switch c.(type) {
	case prometheus.Histogram, *prometheus.HistogramVec:
		k = Histogram
	case prometheus.Summary, *prometheus.SummaryVec:
		k = Summary
	}
	ch := make(chan *prometheus.Desc)
	go func() { // ends when Describe returns; the loop below drains ch
		defer close(ch)
		c.Describe(ch)
	}()
	for d := range ch {
		m := descRE.FindStringSubmatch(d.String())
		if m == nil {
			if r.err == nil {
				r.err = fmt.Errorf("%w: %s", errDesc, d)
			}
			continue
		}
		var labels []string
		for l := range strings.SplitSeq(m[2], ",") {
			if l = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(l), "c("), ")"); l != "" {
				labels = append(labels, l)
			}
		}
		r.families[m[1]] = Family{Kind: k, Labels: labels}
	}
	return r.err
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *recorder) Unregister(c prometheus.Collector) bool { return r.reg.Unregister(c) }
