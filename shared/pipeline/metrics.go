package pipeline

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Drop reasons of the stages, the defaults of Promtail's
// drop_counter_reason where it has one.
const (
	ReasonDropStage     = "drop_stage"
	ReasonMatchStage    = "match_stage"
	ReasonLimitStage    = "limit_stage"
	ReasonMalformedJSON = "malformed_json"
	// ReasonOther counts drops under reasons past maxReasons.
	ReasonOther = "other"
)

// maxReasons bounds the reason label values of the dropped counter: the
// reasons come from configurations image authors may write.
const maxReasons = 64

// Metrics are the pipelines' and multiline joiners' Prometheus series, one
// set for every instance registered with the same Registerer. Their
// labels are stage kinds and reasons from a bounded set, never container
// names, so nothing is left to delete when a container stops.
type Metrics struct {
	dropped   *prometheus.CounterVec
	errors    *prometheus.CounterVec
	cuts      prometheus.Counter
	mlEntries *prometheus.CounterVec
	mlLines   prometheus.Counter
	tenants   prometheus.Counter

	mu      sync.Mutex
	reasons map[string]prometheus.Counter
}

// NewMetrics creates the series and registers them with reg (nil: not
// registered, for tests that do not look at them).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logferry_pipeline_dropped_total",
			Help: "Entries a pipeline stage dropped on purpose (drop, match with action drop, limit, json drop_malformed), by reason. They count as delivered.",
		}, []string{"reason"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logferry_pipeline_errors_total",
			Help: "Runtime failures of pipeline stages (a time that does not parse, malformed JSON, a template that fails or outgrows its bound), by stage kind. The entry goes on as Promtail documents.",
		}, []string{"stage"}),
		cuts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logferry_pipeline_label_cuts_total",
			Help: "Labels and structured-metadata fields that stages produced past Loki's limits: values cut to the maximum length, labels or fields refused.",
		}),
		mlEntries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logferry_pipeline_multiline_entries_total",
			Help: "Entries the multiline joiner emitted, by why: firstline (a new entry began), max_lines, max_bytes, max_wait, end (stream end or shutdown), sources.",
		}, []string{"reason"}),
		mlLines: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logferry_pipeline_multiline_lines_total",
			Help: "Lines the multiline joiner took in.",
		}),
		tenants: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logferry_pipeline_tenant_overflow_total",
			Help: "Entries a tenant stage gave a tenant past the bound of tenants per container (16): they went to the container's own tenant.",
		}),
		reasons: map[string]prometheus.Counter{},
	}
	if reg != nil {
		reg.MustRegister(m.dropped, m.errors, m.cuts, m.mlEntries, m.mlLines, m.tenants)
	}
	return m
}

// dropCounter returns the counter of a drop reason, or of ReasonOther once
// maxReasons reasons have series.
func (m *Metrics) dropCounter(reason string) prometheus.Counter {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.reasons[reason]; ok {
		return c
	}
	if len(m.reasons) >= maxReasons {
		reason = ReasonOther
		if c, ok := m.reasons[reason]; ok {
			return c
		}
	}
	c := m.dropped.WithLabelValues(reason)
	m.reasons[reason] = c
	return c
}

// TenantOverflow counts the entries sent to a container's own tenant
// because its tenant stage chose more tenants than loki.MaxFanoutTenants.
func (m *Metrics) TenantOverflow() prometheus.Counter {
	if m == nil {
		return nil
	}
	return m.tenants
}
