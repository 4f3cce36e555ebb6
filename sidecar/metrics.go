package sidecar

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the sidecar's own series; the dispatchers and the tailer add
// theirs. Per-container series are deleted when the container's shipper
// stops.
type Metrics struct {
	containers     *prometheus.GaugeVec
	startErrors    prometheus.Counter
	positionsSaved prometheus.Counter
	positions      prometheus.Gauge
	truncated      prometheus.Counter
	invalidUTF8    prometheus.Counter
	blocked        prometheus.Counter
	linesRead      *prometheus.CounterVec
	bytesRead      *prometheus.CounterVec
}

// NewMetrics registers the sidecar's series with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		containers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "logferry_sidecar_containers", Help: "Running containers by route: file, api, plugin (skipped), none (skipped), error (skipped).",
		}, []string{"route"}),
		startErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logferry_sidecar_container_errors_total", Help: "Containers not shipped because of bad logferry.* labels or endpoint settings.",
		}),
		positionsSaved: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logferry_sidecar_positions_saved_total", Help: "Writes of the positions file.",
		}),
		positions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "logferry_sidecar_positions", Help: "Containers with a saved position.",
		}),
		truncated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logferry_sidecar_lines_truncated_total", Help: "Lines cut at max-line-size.",
		}),
		invalidUTF8: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logferry_sidecar_lines_invalid_utf8_total", Help: "Lines whose invalid UTF-8 was replaced with U+FFFD.",
		}),
		blocked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logferry_sidecar_backpressure_waits_total", Help: "Times reading waited because the Loki queue was full (policy block).",
		}),
		linesRead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logferry_sidecar_lines_read_total", Help: "Lines read, per container and source.",
		}, []string{"container_name", "source"}),
		bytesRead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logferry_sidecar_bytes_read_total", Help: "Line bytes read, per container and source.",
		}, []string{"container_name", "source"}),
	}
	if reg != nil {
		reg.MustRegister(m.containers, m.startErrors, m.positionsSaved, m.positions, m.truncated, m.invalidUTF8, m.blocked,
			m.linesRead, m.bytesRead)
	}
	return m
}

// containerMetrics resolves a container's series once, not per line.
type containerMetrics struct {
	m                  *Metrics
	name               string
	outLines, errLines prometheus.Counter
	outBytes, errBytes prometheus.Counter
}

func (m *Metrics) forContainer(name string) *containerMetrics {
	return &containerMetrics{m: m, name: name,
		outLines: m.linesRead.WithLabelValues(name, "stdout"), errLines: m.linesRead.WithLabelValues(name, "stderr"),
		outBytes: m.bytesRead.WithLabelValues(name, "stdout"), errBytes: m.bytesRead.WithLabelValues(name, "stderr")}
}

func (c *containerMetrics) lines(source string) prometheus.Counter {
	if source == "stderr" {
		return c.errLines
	}
	return c.outLines
}

func (c *containerMetrics) bytes(source string) prometheus.Counter {
	if source == "stderr" {
		return c.errBytes
	}
	return c.outBytes
}

func (c *containerMetrics) forget() {
	l := prometheus.Labels{"container_name": c.name}
	c.m.linesRead.DeletePartialMatch(l)
	c.m.bytesRead.DeletePartialMatch(l)
}
