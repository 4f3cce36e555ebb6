// Package series owns the lifetime of per-container metric series: a series
// labelled with a container's name is shared by every container that has
// that name at once (a draining container and its successor), and it is
// deleted when the last of them lets go, never while another still counts
// into it.
package series

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// deleter is the part of a prometheus *CounterVec, *GaugeVec, ... that Set
// needs.
type deleter interface {
	DeletePartialMatch(prometheus.Labels) int
}

// Set counts the holders of each value of one label across vecs.
type Set struct {
	label string
	vecs  []deleter

	mu   sync.Mutex
	held map[string]int // value -> holders; an entry exists only while > 0
}

// NewSet returns a Set for the series of vecs whose label is value-keyed.
func NewSet(label string, vecs ...deleter) *Set {
	return &Set{label: label, vecs: vecs, held: map[string]int{}}
}

// Hold registers one more holder of value's series. Call it before
// resolving the series (WithLabelValues), so that a concurrent last Release
// of the same value cannot delete what the new holder resolved.
func (s *Set) Hold(value string) *Handle {
	s.mu.Lock()
	s.held[value]++
	s.mu.Unlock()
	return &Handle{s: s, value: value}
}

// Holders returns how many handles hold value.
func (s *Set) Holders(value string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held[value]
}

// Handle is one holder's claim on a value's series.
type Handle struct {
	s     *Set
	value string
	once  sync.Once
}

// Release gives up the claim; the series go with the last claim. Releasing
// twice is the same as once.
func (h *Handle) Release() {
	h.once.Do(func() {
		s := h.s
		s.mu.Lock()
		defer s.mu.Unlock()
		s.held[h.value]--
		if s.held[h.value] > 0 {
			return
		}
		delete(s.held, h.value)
		l := prometheus.Labels{s.label: h.value}
		for _, v := range s.vecs {
			v.DeletePartialMatch(l)
		}
	})
}
