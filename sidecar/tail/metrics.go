package tail

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Reasons for logferry_sidecar_tail_lines_skipped_total.
const (
	reasonCorrupt     = "corrupt"      // not a json-file line
	reasonTooLong     = "too_long"     // over MaxRawLine without a newline
	reasonTorn        = "torn"         // unterminated bytes at the end of a finished file
	reasonBadPosition = "bad_position" // a saved offset that was not at a line start
	reasonCorruptGzip = "corrupt_gzip" // the rest of a .gz that does not decompress
)

// Reasons for logferry_sidecar_tail_rotated_unread_total.
const (
	reasonKeepLimit     = "keep_limit"     // over the bound of files kept for a log
	reasonSkipped       = "skipped"        // kept, but the tailer moved past it
	reasonQueueOverflow = "queue_overflow" // the kernel dropped close events (count unknown)
)

// RefusalCounter counts the log files that tailers refuse to read, by
// reason (RefusedSymlink, RefusedNotRegular). A *prometheus.CounterVec with
// the one label "reason" is one.
type RefusalCounter interface {
	WithLabelValues(reason ...string) prometheus.Counter
}

// Metrics are the tailers' and the watcher's series: host-wide counters of
// rare events, each also logged with its container. Lines and bytes per
// container are the sidecar's (logferry_sidecar_lines_read_total), which
// counts both of its routes.
type Metrics struct {
	rotations     prometheus.Counter
	truncations   prometheus.Counter
	skipped       *prometheus.CounterVec
	cut           prometheus.Counter
	invalidUTF8   prometheus.Counter
	positionsLost prometheus.Counter
	pinLimit      prometheus.Counter
	rotatedUnread *prometheus.CounterVec
	keptTaken     prometheus.Counter
	fanotify      prometheus.Gauge
	pollFallbacks *prometheus.CounterVec
	watchedDirs   *prometheus.GaugeVec
	mutedDirs     prometheus.Gauge
	tailers       prometheus.Gauge
	refused       RefusalCounter
}

// NewMetrics registers the series with reg; a nil reg registers nothing.
// Refused log files are counted in a counter that is not registered: see
// NewMetricsWithRefusals.
func NewMetrics(reg prometheus.Registerer) *Metrics { return NewMetricsWithRefusals(reg, nil) }

// NewMetricsWithRefusals is NewMetrics, counting refused log files in
// refused, which its owner registers: the sidecar's
// logferry_sidecar_files_refused_total, which also counts the log paths it
// refuses before any Tailer opens them. A nil refused is NewMetrics.
func NewMetricsWithRefusals(reg prometheus.Registerer, refused RefusalCounter) *Metrics {
	if refused == nil {
		refused = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logferry_sidecar_files_refused_total", Help: "Log files not read because they are not regular files in the container's directory, by reason.",
		}, []string{"reason"})
	}
	for _, r := range []string{RefusedSymlink, RefusedNotRegular} {
		refused.WithLabelValues(r) // the series exist from the start, at 0
	}
	m := &Metrics{
		refused: refused,
		rotations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logferry_sidecar_tail_rotations_total", Help: "Moves from a finished log file to the next one (rotations followed).",
		}),
		truncations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logferry_sidecar_tail_truncations_total", Help: "Log files found truncated and re-read from their start.",
		}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logferry_sidecar_tail_lines_skipped_total", Help: "json-file lines skipped, by reason.",
		}, []string{"reason"}),
		cut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logferry_sidecar_tail_lines_truncated_total", Help: "Lines cut at the maximum line size.",
		}),
		invalidUTF8: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logferry_sidecar_tail_lines_invalid_utf8_total", Help: "Lines whose invalid UTF-8 was replaced with U+FFFD.",
		}),
		positionsLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logferry_sidecar_tail_positions_lost_total", Help: "Saved positions whose file no longer exists; reading restarted at the oldest file.",
		}),
		pinLimit: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logferry_sidecar_tail_pin_limit_total", Help: "Times a tailer was so far behind that it stopped holding rotated files open (max pinned bytes); later rotations may delete lines unread.",
		}),
		rotatedUnread: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logferry_sidecar_tail_rotated_unread_total",
			Help: "Rotated log files that fanotify held but that were let go unread, by reason (queue_overflow counts overflows, not files). Without fanotify such losses are not seen.",
		}, []string{"reason"}),
		keptTaken: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logferry_sidecar_tail_kept_taken_total",
			Help: "Rotated log files a tailer found among those fanotify held, after the file it had last, before any listing showed them or after a rotation deleted them.",
		}),
		fanotify: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "logferry_sidecar_tail_fanotify",
			Help: "1 when rotated log files are held through fanotify until read (see the fanotify setting), 0 when only pinning holds them.",
		}),
		pollFallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logferry_sidecar_tail_poll_fallbacks_total", Help: "Times fsnotify could not watch and polling took over, by reason.",
		}, []string{"reason"}),
		watchedDirs: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "logferry_sidecar_tail_watched_directories", Help: "Container directories watched, by mode (fsnotify or poll).",
		}, []string{"mode"}),
		tailers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "logferry_sidecar_tail_tailers", Help: "Tailers running.",
		}),
		mutedDirs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "logferry_sidecar_tail_steady_directories",
			Help: "Watched container directories whose logs are read on the 100 ms grid, their inotify watch removed meanwhile (counted in watched_directories too).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.rotations, m.truncations, m.skipped, m.cut, m.invalidUTF8,
			m.positionsLost, m.pinLimit, m.rotatedUnread, m.keptTaken, m.fanotify, m.pollFallbacks, m.watchedDirs, m.tailers, m.mutedDirs)
	}
	return m
}
