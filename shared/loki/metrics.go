package loki

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Drop reasons. Every entry that is not delivered is counted under exactly
// one of these, or under a reason parsed from Loki's answer (see reasonFor).
const (
	ReasonQueueFull        = "queue_full"
	ReasonRetriesExhausted = "retries_exhausted"
	ReasonShutdown         = "shutdown"
	ReasonStopped          = "dispatcher_stopped"
	ReasonEncode           = "encode_error"
)

// Metrics are the dispatchers' Prometheus series. One Metrics serves every
// Dispatcher registered with the same Registerer; series carry the endpoint
// (URL without credentials) and tenant; the queue gauges are deleted when
// the last dispatcher using that pair stops, the counters stay.
type Metrics struct {
	entriesReceived *prometheus.CounterVec
	bytesReceived   *prometheus.CounterVec
	entriesSent     *prometheus.CounterVec
	bytesSent       *prometheus.CounterVec
	wireBytesSent   *prometheus.CounterVec
	batchesSent     *prometheus.CounterVec
	dropped         *prometheus.CounterVec
	retries         *prometheus.CounterVec
	pushDuration    *prometheus.HistogramVec
	queueBytes      *prometheus.GaugeVec
	queueEntries    *prometheus.GaugeVec

	mu    sync.Mutex
	users map[[2]string]int
}

// NewMetrics creates the series and registers them with reg (nil: not
// registered, for tests that do not look at them).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	labels := []string{"endpoint", "tenant"}
	m := &Metrics{
		entriesReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logferry_loki_entries_received_total", Help: "Entries handed to the Loki dispatcher.",
		}, labels),
		bytesReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logferry_loki_bytes_received_total", Help: "Line bytes handed to the Loki dispatcher.",
		}, labels),
		entriesSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logferry_loki_entries_sent_total", Help: "Entries Loki accepted (2xx).",
		}, labels),
		bytesSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logferry_loki_bytes_sent_total", Help: "Line bytes Loki accepted (2xx).",
		}, labels),
		wireBytesSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logferry_loki_request_bytes_sent_total", Help: "Compressed request body bytes of pushes Loki accepted.",
		}, labels),
		batchesSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logferry_loki_batches_sent_total", Help: "Pushes Loki accepted.",
		}, labels),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logferry_loki_entries_dropped_total", Help: "Entries not delivered, by reason.",
		}, append(labels, "reason")),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logferry_loki_retries_total", Help: "Pushes retried, by the status that caused it (HTTP code or network).",
		}, append(labels, "status")),
		pushDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "logferry_loki_push_duration_seconds", Help: "Time of one push request, by outcome.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
		}, append(labels, "status")),
		queueBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "logferry_loki_queue_bytes", Help: "Line bytes waiting in memory for Loki.",
		}, labels),
		queueEntries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "logferry_loki_queue_entries", Help: "Entries waiting in memory for Loki.",
		}, labels),
		users: make(map[[2]string]int),
	}
	if reg != nil {
		reg.MustRegister(m.entriesReceived, m.bytesReceived, m.entriesSent, m.bytesSent, m.wireBytesSent,
			m.batchesSent, m.dropped, m.retries, m.pushDuration, m.queueBytes, m.queueEntries)
	}
	return m
}

// endpointMetrics are one dispatcher's curried series.
type endpointMetrics struct {
	entriesReceived, bytesReceived        prometheus.Counter
	entriesSent, bytesSent, wireBytesSent prometheus.Counter
	batchesSent                           prometheus.Counter
	dropped, retries                      *prometheus.CounterVec
	pushDuration                          prometheus.ObserverVec
	queueBytes, queueEntries              prometheus.Gauge
}

func (m *Metrics) acquire(endpoint, tenant string) *endpointMetrics {
	m.mu.Lock()
	m.users[[2]string{endpoint, tenant}]++
	m.mu.Unlock()
	l := prometheus.Labels{"endpoint": endpoint, "tenant": tenant}
	return &endpointMetrics{
		entriesReceived: m.entriesReceived.With(l),
		bytesReceived:   m.bytesReceived.With(l),
		entriesSent:     m.entriesSent.With(l),
		bytesSent:       m.bytesSent.With(l),
		wireBytesSent:   m.wireBytesSent.With(l),
		batchesSent:     m.batchesSent.With(l),
		dropped:         m.dropped.MustCurryWith(l),
		retries:         m.retries.MustCurryWith(l),
		pushDuration:    m.pushDuration.MustCurryWith(l),
		queueBytes:      m.queueBytes.With(l),
		queueEntries:    m.queueEntries.With(l),
	}
}

// release resets the pair's queue gauges when its last dispatcher is gone.
// The counters and the push histogram stay: a scrape after the last
// container of an endpoint stopped must still see what was sent and, above
// all, what was dropped, and a counter that vanished would read as a reset.
// Their number is bounded by the endpoints and tenants configured.
func (m *Metrics) release(endpoint, tenant string) {
	key := [2]string{endpoint, tenant}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.users[key]--
	if m.users[key] > 0 {
		return
	}
	delete(m.users, key)
	l := prometheus.Labels{"endpoint": endpoint, "tenant": tenant}
	m.queueBytes.DeletePartialMatch(l)
	m.queueEntries.DeletePartialMatch(l)
}
