package plugin

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/logferry/logferry/shared/labels"
	"github.com/logferry/logferry/shared/pipeline"
	"github.com/logferry/logferry/shared/series"
)

// Metrics are the plugin's own series; the dispatchers add theirs. Series
// that name a container are deleted when its stream ends.
type Metrics struct {
	streams     prometheus.Gauge
	draining    prometheus.Gauge
	started     prometheus.Counter
	reattached  prometheus.Counter
	replayed    prometheus.Counter
	startErrors *prometheus.CounterVec
	framesRead  prometheus.Counter
	corrupt     prometheus.Counter
	truncated   prometheus.Counter
	invalidUTF8 prometheus.Counter
	copyErrors  prometheus.Counter
	entries     *prometheus.CounterVec
	bytes       *prometheus.CounterVec
	stopSeconds prometheus.Histogram
	// Loki's limits on labels (shared/labels): values cut, labels left out.
	labelValuesTruncated prometheus.Counter
	labelsDropped        prometheus.Counter
	relabelDropped       prometheus.Counter
	pipeline             *pipeline.Metrics // every stream's stages
	// byName deletes a name's series when the last stream of that name
	// ends: a draining stream and a new container with its name share them.
	byName *series.Set
}

// NewMetrics registers the plugin's series with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "logferry_plugin_streams_active", Help: "Container FIFOs being read.",
		}),
		draining: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "logferry_plugin_streams_draining", Help: "Ended streams whose last lines Loki has not accepted yet (their records are kept for a restart).",
		}),
		started: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logferry_plugin_streams_started_total", Help: "StartLogging calls that opened a stream.",
		}),
		reattached: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logferry_plugin_streams_reattached_total", Help: "Streams re-opened from the state directory after a plugin restart.",
		}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logferry_plugin_lines_replayed_total", Help: "Lines re-sent from local copies after a restart because Loki had not acknowledged them.",
		}),
		startErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logferry_plugin_start_errors_total", Help: "StartLogging calls refused, by reason.",
		}, []string{"reason"}),
		framesRead: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logferry_plugin_frames_read_total", Help: "Frames read from FIFOs.",
		}),
		corrupt: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logferry_plugin_frames_corrupt_total", Help: "Corrupt or torn frames skipped.",
		}),
		truncated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logferry_plugin_lines_truncated_total", Help: "Lines cut at max-line-size.",
		}),
		invalidUTF8: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logferry_plugin_lines_invalid_utf8_total", Help: "Lines whose invalid UTF-8 was replaced with U+FFFD.",
		}),
		copyErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logferry_plugin_local_copy_errors_total", Help: "Lines that could not be written to the local copy for docker logs.",
		}),
		entries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logferry_plugin_entries_read_total", Help: "Complete lines read, per container and source.",
		}, []string{"container_name", "source"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logferry_plugin_bytes_read_total", Help: "Line bytes read, per container and source.",
		}, []string{"container_name", "source"}),
		labelValuesTruncated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logferry_plugin_label_values_truncated_total", Help: "Label values cut to Loki's 2048-byte limit, at stream start.",
		}),
		labelsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logferry_plugin_labels_dropped_total", Help: "Labels left out at stream start: past Loki's 15 per stream, or a name over 1024 bytes.",
		}),
		relabelDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logferry_plugin_lines_relabel_dropped_total", Help: "Lines of containers that loki-relabel-config drops: kept for docker logs, not shipped.",
		}),
		stopSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "logferry_plugin_stop_logging_seconds", Help: "Time StopLogging took to answer.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 8),
		}),
	}
	m.pipeline = pipeline.NewMetrics(reg)
	m.byName = series.NewSet("container_name", m.entries, m.bytes)
	if reg != nil {
		reg.MustRegister(m.streams, m.draining, m.started, m.reattached, m.replayed, m.startErrors, m.framesRead, m.corrupt,
			m.truncated, m.invalidUTF8, m.copyErrors, m.entries, m.bytes, m.stopSeconds, m.labelValuesTruncated, m.labelsDropped, m.relabelDropped)
	}
	return m
}

// streamMetrics are one stream's view: per-source series resolved once.
type streamMetrics struct {
	*Metrics
	held *series.Handle
	src  [2]sourceMetrics // stdout, stderr: sourceIndex
}

type sourceMetrics struct {
	entries, bytes prometheus.Counter
}

func (m *Metrics) forStream(containerName string) *streamMetrics {
	sm := &streamMetrics{Metrics: m, held: m.byName.Hold(containerName)} // before the series are resolved
	for i, source := range [2]string{labels.SourceStdout, labels.SourceStderr} {
		sm.src[i] = sourceMetrics{m.entries.WithLabelValues(containerName, source), m.bytes.WithLabelValues(containerName, source)}
	}
	return sm
}

// sourceIndex is a line's source's place in streamMetrics.src and
// lineCounts.
func sourceIndex(source string) int {
	if source == labels.SourceStderr {
		return 1
	}
	return 0
}

// lineCounts are a stream's lines since its counters were last added to:
// three atomic additions per line were 4.5 % of the plugin's flat-out
// profile, one set per FIFO read is not measurable.
type lineCounts struct {
	frames         uint64
	entries, bytes [2]uint64 // by sourceIndex
}

// add adds c to the counters.
func (sm *streamMetrics) add(c *lineCounts) {
	if c.frames > 0 {
		sm.framesRead.Add(float64(c.frames))
	}
	for i := range sm.src {
		if c.entries[i] > 0 {
			sm.src[i].entries.Add(float64(c.entries[i]))
			sm.src[i].bytes.Add(float64(c.bytes[i]))
		}
	}
}

// forget lets go of the stream's per-container series: they are deleted
// unless another stream of the same container name still counts into them.
func (sm *streamMetrics) forget() { sm.held.Release() }
