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
	// ReasonSpoolError counts entries the dispatcher meant to spool and
	// the spool did not take (full under its refuse policy, a write error,
	// closed).
	ReasonSpoolError = "spool_error"
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
	pushFailures    *prometheus.CounterVec
	pushDuration    *prometheus.HistogramVec
	queueBytes      *prometheus.GaugeVec
	queueLimit      *prometheus.GaugeVec
	batchWait       *prometheus.GaugeVec
	queueEntries    *prometheus.GaugeVec

	users endpointUsers
}

// endpointUsers counts the dispatchers of each endpoint and tenant, so that
// a metric set deletes an endpoint's gauges with its last dispatcher.
type endpointUsers struct {
	mu sync.Mutex
	n  map[[2]string]int
}

func (u *endpointUsers) add(endpoint, tenant string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.n == nil {
		u.n = map[[2]string]int{}
	}
	u.n[[2]string{endpoint, tenant}]++
}

// done removes one user; after the last it calls last with the pair's
// labels, under the lock, so that a dispatcher acquiring the pair meanwhile
// does not lose the series last deletes.
func (u *endpointUsers) done(endpoint, tenant string, last func(prometheus.Labels)) {
	key := [2]string{endpoint, tenant}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.n[key]--; u.n[key] > 0 {
		return
	}
	delete(u.n, key)
	last(prometheus.Labels{"endpoint": endpoint, "tenant": tenant})
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
			Name: "logferry_loki_entries_sent_total",
			Help: "Entries Loki accepted: its push answered 200 or 204, or 400 naming other entries (those are counted as dropped).",
		}, labels),
		bytesSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logferry_loki_bytes_sent_total",
			Help: "Line bytes of the pushes Loki accepted (200, 204, or 400 for some of their entries, whose bytes are included).",
		}, labels),
		wireBytesSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logferry_loki_request_bytes_sent_total", Help: "Compressed request body bytes of pushes Loki accepted.",
		}, labels),
		batchesSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logferry_loki_batches_sent_total", Help: "Pushes Loki accepted (200, 204, or 400 for some of their entries).",
		}, labels),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logferry_loki_entries_dropped_total", Help: "Entries not delivered, by reason.",
		}, append(labels, "reason")),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logferry_loki_retries_total", Help: "Pushes retried, by the status that caused it (HTTP code, network, or token_file when loki-bearer-token-file could not be read).",
		}, append(labels, "status")),
		pushFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logferry_loki_push_failures_total",
			Help: "Pushes Loki did not acknowledge, by reason: network, token_file (loki-bearer-token-file unreadable), redirect (3xx, never followed), unauthorized (401, 403), unexpected_status (a 2xx but 200 and 204, or an unknown code), rate_limited (429), server_error (5xx), refused (another 4xx, or a 400 that names what Loki refused).",
		}, append(labels, "reason")),
		pushDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "logferry_loki_push_duration_seconds", Help: "Time of one push request, by outcome (HTTP code, network, token_file).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
		}, append(labels, "status")),
		queueBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "logferry_loki_queue_bytes", Help: "Line bytes waiting in memory for Loki.",
		}, labels),
		queueEntries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "logferry_loki_queue_entries", Help: "Entries waiting in memory for Loki.",
		}, labels),
		queueLimit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "logferry_loki_queue_limit_bytes", Help: "The memory queue's bound (loki-queue-size), against logferry_loki_queue_bytes.",
		}, labels),
		batchWait: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "logferry_loki_batch_wait_seconds", Help: "The longest an entry waits for its batch to fill (loki-batch-wait).",
		}, labels),
	}
	if reg != nil {
		reg.MustRegister(m.entriesReceived, m.bytesReceived, m.entriesSent, m.bytesSent, m.wireBytesSent,
			m.batchesSent, m.dropped, m.retries, m.pushFailures, m.pushDuration, m.queueBytes, m.queueEntries,
			m.queueLimit, m.batchWait)
	}
	return m
}

// endpointMetrics are one dispatcher's curried series.
type endpointMetrics struct {
	entriesReceived, bytesReceived        prometheus.Counter
	entriesSent, bytesSent, wireBytesSent prometheus.Counter
	batchesSent                           prometheus.Counter
	dropped, retries, pushFailures        *prometheus.CounterVec
	pushDuration                          prometheus.ObserverVec
	queueBytes, queueEntries              prometheus.Gauge
}

// settings exports cfg's bounds for the pair (the last dispatcher of a
// pair to start sets them; dispatchers of one pair with other settings
// are rare, and any of them is a fair reading).
func (m *Metrics) settings(cfg Config) {
	l := prometheus.Labels{"endpoint": cfg.Endpoint(), "tenant": cfg.TenantID}
	m.queueLimit.With(l).Set(float64(cfg.QueueBytes))
	m.batchWait.With(l).Set(cfg.BatchWait.Seconds())
}

// received counts e as handed to the dispatcher.
func (m *endpointMetrics) received(e *Entry) {
	m.entriesReceived.Inc()
	m.bytesReceived.Add(float64(len(e.Line)))
}

func (m *Metrics) acquire(endpoint, tenant string) *endpointMetrics {
	m.users.add(endpoint, tenant)
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
		pushFailures:    m.pushFailures.MustCurryWith(l),
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
	m.users.done(endpoint, tenant, func(l prometheus.Labels) {
		m.queueBytes.DeletePartialMatch(l)
		m.queueEntries.DeletePartialMatch(l)
		m.queueLimit.DeletePartialMatch(l)
		m.batchWait.DeletePartialMatch(l)
	})
}

// SpoolMetrics are the spooling dispatchers' series, kept apart from Metrics
// so that dispatchers without a spool export none of them.
type SpoolMetrics struct {
	spooled  *prometheus.CounterVec
	replayed *prometheus.CounterVec
	mode     *prometheus.GaugeVec

	users endpointUsers
}

func (m *SpoolMetrics) acquire(endpoint, tenant string) spoolEndpointMetrics {
	m.users.add(endpoint, tenant)
	l := prometheus.Labels{"endpoint": endpoint, "tenant": tenant}
	return spoolEndpointMetrics{
		spooled:  m.spooled.MustCurryWith(l),
		replayed: m.replayed.With(l),
		mode:     m.mode.With(l),
	}
}

// release deletes the pair's spooling gauge when its last dispatcher is
// gone; the counters stay, as Metrics keeps its counters (a scrape after the
// last container of an endpoint stopped still sees what was spooled).
func (m *SpoolMetrics) release(endpoint, tenant string) {
	m.users.done(endpoint, tenant, func(l prometheus.Labels) { m.mode.DeletePartialMatch(l) })
}

// NewSpoolMetrics creates the series and registers them with reg (nil: not
// registered).
func NewSpoolMetrics(reg prometheus.Registerer) *SpoolMetrics {
	labels := []string{"endpoint", "tenant"}
	m := &SpoolMetrics{
		spooled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logferry_loki_entries_spooled_total",
			Help: "Entries the dispatcher wrote to its spool, by reason (spooling: behind spooled entries, queue_full, retries_exhausted, shutdown).",
		}, append(labels, "reason")),
		replayed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logferry_loki_entries_replayed_total", Help: "Entries the dispatcher read back from its spool and queued for Loki.",
		}, labels),
		mode: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "logferry_loki_spooling", Help: "1 while new entries go to the spool behind spooled ones, else 0.",
		}, labels),
	}
	if reg != nil {
		reg.MustRegister(m.spooled, m.replayed, m.mode)
	}
	return m
}

// ReasonSpooling labels entries spooled because older ones were.
const ReasonSpooling = "spooling"

type spoolEndpointMetrics struct {
	spooled  *prometheus.CounterVec
	replayed prometheus.Counter
	mode     prometheus.Gauge
}
