package spool

import "github.com/prometheus/client_golang/prometheus"

// Reasons records leave or stay out of the spool, for the dropped and
// refused counters.
const (
	// ReasonSpoolFull: deleted by the drop-oldest policy to make room.
	ReasonSpoolFull = "spool_full"
	// ReasonFull: refused by the refuse policy (ErrFull).
	ReasonFull = "full"
	// ReasonTooLarge: one Append larger than MaxRecordBytes per record or
	// MaxBytes in all (ErrTooLarge).
	ReasonTooLarge = "too_large"
	// ReasonWriteError: the write failed, for example ENOSPC.
	ReasonWriteError = "write_error"
	// ReasonClosed: Append after Close (ErrClosed).
	ReasonClosed = "closed"
)

// Kinds of damage, for the corrupt counters.
const (
	DamageCorrupt = "corrupt" // checksum mismatch or garbage followed by intact records
	DamageTorn    = "torn"    // damage running to the end of a segment: a write cut short
)

// Metrics are the spools' Prometheus series. One Metrics serves every Spool
// opened with it; series carry the spool's directory and are deleted when
// that Spool is closed.
type Metrics struct {
	recordsAppended *prometheus.CounterVec
	bytesAppended   *prometheus.CounterVec
	recordsReplayed *prometheus.CounterVec
	bytesReplayed   *prometheus.CounterVec
	recordsAcked    *prometheus.CounterVec
	bytesAcked      *prometheus.CounterVec
	recordsDropped  *prometheus.CounterVec
	recordsRefused  *prometheus.CounterVec
	recordsCorrupt  *prometheus.CounterVec
	bytesCorrupt    *prometheus.CounterVec
	syncErrors      *prometheus.CounterVec
	diskBytes       *prometheus.GaugeVec
	unackedBytes    *prometheus.GaugeVec
	segments        *prometheus.GaugeVec
	maxBytes        *prometheus.GaugeVec
}

// NewMetrics creates the series and registers them with reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	dir := []string{"dir"}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, append(dir, labels...))
	}
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, dir)
	}
	m := &Metrics{
		recordsAppended: counter("logferry_spool_records_appended_total", "Records written to the spool."),
		bytesAppended:   counter("logferry_spool_bytes_appended_total", "Bytes written to the spool, framing included."),
		recordsReplayed: counter("logferry_spool_records_replayed_total", "Records read back from the spool (again after a rewind)."),
		bytesReplayed:   counter("logferry_spool_bytes_replayed_total", "Bytes of records read back from the spool, framing included."),
		recordsAcked:    counter("logferry_spool_records_acked_total", "Records read back in this process and then acknowledged."),
		bytesAcked:      counter("logferry_spool_bytes_acked_total", "Spool bytes acknowledged."),
		recordsDropped:  counter("logferry_spool_records_dropped_total", "Unacknowledged records deleted from the spool, by reason.", "reason"),
		recordsRefused:  counter("logferry_spool_records_refused_total", "Records Append did not take, by reason; the caller still has them.", "reason"),
		recordsCorrupt:  counter("logferry_spool_records_corrupt_total", "Damaged records skipped on replay, by kind (corrupt, torn); a damaged run counts as one.", "kind"),
		bytesCorrupt:    counter("logferry_spool_bytes_corrupt_total", "Damaged bytes skipped on replay, by kind (corrupt, torn).", "kind"),
		syncErrors:      counter("logferry_spool_sync_errors_total", "Failed fsyncs of segments, the ack file or the directory."),
		diskBytes:       gauge("logferry_spool_bytes", "Bytes in the spool's segment files."),
		unackedBytes:    gauge("logferry_spool_unacked_bytes", "Bytes in the spool not yet acknowledged."),
		segments:        gauge("logferry_spool_segments", "Segment files in the spool."),
		maxBytes:        gauge("logferry_spool_max_bytes", "The spool's bound on its segment files (spool-max-size)."),
	}
	if reg != nil {
		reg.MustRegister(m.recordsAppended, m.bytesAppended, m.recordsReplayed, m.bytesReplayed,
			m.recordsAcked, m.bytesAcked, m.recordsDropped, m.recordsRefused, m.recordsCorrupt,
			m.bytesCorrupt, m.syncErrors, m.diskBytes, m.unackedBytes, m.segments, m.maxBytes)
	}
	return m
}

// spoolMetrics are one spool's curried series.
type spoolMetrics struct {
	recordsAppended, bytesAppended prometheus.Counter
	recordsReplayed, bytesReplayed prometheus.Counter
	recordsAcked, bytesAcked       prometheus.Counter
	recordsDropped, recordsRefused *prometheus.CounterVec
	recordsCorrupt, bytesCorrupt   *prometheus.CounterVec
	syncErrors                     prometheus.Counter
	diskBytes, unackedBytes        prometheus.Gauge
	segments                       prometheus.Gauge
}

func (m *Metrics) forDir(dir string, maxBytes int64) *spoolMetrics {
	l := prometheus.Labels{"dir": dir}
	m.maxBytes.With(l).Set(float64(maxBytes))
	return &spoolMetrics{
		recordsAppended: m.recordsAppended.With(l),
		bytesAppended:   m.bytesAppended.With(l),
		recordsReplayed: m.recordsReplayed.With(l),
		bytesReplayed:   m.bytesReplayed.With(l),
		recordsAcked:    m.recordsAcked.With(l),
		bytesAcked:      m.bytesAcked.With(l),
		recordsDropped:  m.recordsDropped.MustCurryWith(l),
		recordsRefused:  m.recordsRefused.MustCurryWith(l),
		recordsCorrupt:  m.recordsCorrupt.MustCurryWith(l),
		bytesCorrupt:    m.bytesCorrupt.MustCurryWith(l),
		syncErrors:      m.syncErrors.With(l),
		diskBytes:       m.diskBytes.With(l),
		unackedBytes:    m.unackedBytes.With(l),
		segments:        m.segments.With(l),
	}
}

// release deletes dir's series.
func (m *Metrics) release(dir string) {
	l := prometheus.Labels{"dir": dir}
	for _, v := range []*prometheus.CounterVec{m.recordsAppended, m.bytesAppended, m.recordsReplayed,
		m.bytesReplayed, m.recordsAcked, m.bytesAcked, m.recordsDropped, m.recordsRefused,
		m.recordsCorrupt, m.bytesCorrupt, m.syncErrors} {
		v.DeletePartialMatch(l)
	}
	for _, v := range []*prometheus.GaugeVec{m.diskBytes, m.unackedBytes, m.segments, m.maxBytes} {
		v.DeletePartialMatch(l)
	}
}
