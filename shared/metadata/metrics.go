package metadata

import "github.com/prometheus/client_golang/prometheus"

// Metrics counts what a Cache does. A nil *Metrics counts nothing.
type Metrics struct {
	hits        prometheus.Counter
	misses      prometheus.Counter
	loadsFailed prometheus.Counter
	entries     prometheus.Gauge
}

// NewMetrics creates the cache's metrics and registers them with reg unless
// reg is nil. It panics if they are already registered with reg, as
// prometheus.Registerer.MustRegister does: build one per Cache and registry.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		hits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logferry_metadata_cache_hits_total",
			Help: "Container metadata lookups answered from the cache.",
		}),
		misses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logferry_metadata_cache_misses_total",
			Help: "Container metadata lookups not in the cache or expired; concurrent misses of one id share a load.",
		}),
		loadsFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logferry_metadata_cache_loads_failed_total",
			Help: "Container metadata loads that returned an error (not cached).",
		}),
		entries: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "logferry_metadata_cache_entries",
			Help: "Containers in the metadata cache.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.hits, m.misses, m.loadsFailed, m.entries)
	}
	return m
}

func (m *Metrics) hit() {
	if m != nil {
		m.hits.Inc()
	}
}

func (m *Metrics) miss() {
	if m != nil {
		m.misses.Inc()
	}
}

func (m *Metrics) loadFailed() {
	if m != nil {
		m.loadsFailed.Inc()
	}
}

func (m *Metrics) setEntries(n int) {
	if m != nil {
		m.entries.Set(float64(n))
	}
}
