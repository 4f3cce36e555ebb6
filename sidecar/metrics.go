package sidecar

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/logferry/logferry/shared/pipeline"
	"github.com/logferry/logferry/shared/series"
)

// Metrics are the sidecar's own series; the dispatchers and the tailer add
// theirs. Per-container series are deleted when the container's shipper
// stops.
type Metrics struct {
	containers   *prometheus.GaugeVec
	startErrors  prometheus.Counter
	labelRefused *prometheus.CounterVec
	filesRefused *prometheus.CounterVec
	excluded     *prometheus.GaugeVec
	// Loki's limits on labels (shared/labels): values cut, labels left out.
	labelValuesTruncated prometheus.Counter
	labelsDropped        prometheus.Counter
	positionsSaved       prometheus.Counter
	positions            prometheus.Gauge
	truncated            prometheus.Counter
	invalidUTF8          prometheus.Counter
	blocked              prometheus.Counter
	linesRead            *prometheus.CounterVec
	bytesRead            *prometheus.CounterVec
	pipeline             *pipeline.Metrics // every container's stages
	reloads              *prometheus.CounterVec
	// byName deletes a name's series when the last container of that name
	// lets go: a draining container and a new one with its name share them.
	byName *series.Set
}

// NewMetrics registers the sidecar's series with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		containers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "logferry_sidecar_containers", Help: "Running containers by route: file, api, plugin (skipped), none (skipped), excluded (by the selection, never read), dropped (by loki-relabel-config, never read), error (skipped).",
		}, []string{"route"}),
		startErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logferry_sidecar_container_errors_total", Help: "Containers not shipped because their labels could not be built or their endpoint could not be set up.",
		}),
		labelRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logferry_sidecar_label_refused_total",
			Help: "Container logferry.* labels not applied (the container is shipped with the operator's setting), by option (unknown for a name that is no option) and reason.",
		}, []string{"option", "reason"}),
		filesRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logferry_sidecar_files_refused_total",
			Help: "Log files not read from disk, by reason: outside_containers_dir (the Engine named another path; the container is read through the logs API), symlink, not_regular.",
		}, []string{"reason"}),
		labelValuesTruncated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logferry_sidecar_label_values_truncated_total", Help: "Label values cut to Loki's 2048-byte limit, at container start.",
		}),
		labelsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logferry_sidecar_labels_dropped_total", Help: "Labels left out at container start: past Loki's 15 per stream, or a name over 1024 bytes.",
		}),
		excluded: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "logferry_sidecar_containers_excluded",
			Help: "Running containers the selection leaves out (never read), by reason: enable_false, exclude_labels, exclude_names, exclude_images, include_labels, include_names, include_images, selection_relabel.",
		}, []string{"reason"}),
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
	m.filesRefused.WithLabelValues(refusedOutside) // at 0 from the start; tail adds its reasons
	m.pipeline = pipeline.NewMetrics(reg)
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "logferry_sidecar_config_reloads_total",
		Help: "Configuration reloads (SIGHUP, or a change of the --config file with watch-config), by result: applied, invalid (the old configuration stays).",
	}, []string{"result"})
	m.reloads.WithLabelValues(ReloadApplied)
	m.reloads.WithLabelValues(ReloadInvalid)
	m.byName = series.NewSet("container_name", m.linesRead, m.bytesRead)
	if reg != nil {
		reg.MustRegister(m.containers, m.startErrors, m.labelRefused, m.filesRefused, m.excluded, m.labelValuesTruncated, m.labelsDropped, m.positionsSaved, m.positions, m.truncated, m.invalidUTF8, m.blocked,
			m.linesRead, m.bytesRead, m.reloads)
	}
	return m
}

// containerMetrics resolves a container's series once, not per line.
type containerMetrics struct {
	held               *series.Handle
	outLines, errLines prometheus.Counter
	outBytes, errBytes prometheus.Counter
}

func (m *Metrics) forContainer(name string) *containerMetrics {
	held := m.byName.Hold(name) // before the series are resolved
	return &containerMetrics{held: held,
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

// forget lets go of the container's series: they are deleted unless
// another container of the same name still counts into them.
func (c *containerMetrics) forget() { c.held.Release() }
