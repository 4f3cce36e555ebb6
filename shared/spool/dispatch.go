package spool

import "github.com/logferry/logferry/shared/loki"

var _ loki.Spool = (*Spool)(nil)

// ReadEntries is Read for the Loki dispatcher (it implements loki.Spool):
// the records as entries, and end, the position Read stopped at, which
// covers damaged data skipped after the last record; Ack(end) acknowledges
// all of it.
func (s *Spool) ReadEntries(maxEntries, maxBytes int) ([]loki.Entry, int64, error) {
	recs, err := s.Read(maxEntries, maxBytes)
	s.mu.Lock()
	end := s.cursor
	s.mu.Unlock()
	if err != nil {
		return nil, end, err
	}
	entries := make([]loki.Entry, len(recs))
	for i := range recs {
		entries[i] = recs[i].Entry()
	}
	return entries, end, nil
}

// Unread reports whether records were appended that Read has not returned
// yet.
func (s *Spool) Unread() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cursor < s.next
}

// Drained reports whether everything appended was acknowledged (or dropped).
func (s *Spool) Drained() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acked >= s.next || s.droppedUntil >= s.next
}

// MaxBytes is the spool's size bound (Config.MaxBytes).
func (s *Spool) MaxBytes() int64 { return s.cfg.MaxBytes }

// Signals is Wait for a reader that waits on other things too (it
// implements loki.Spool): appended receives after an Append (capacity 1, so
// one reader at a time), closed is closed by Close.
func (s *Spool) Signals() (appended, closed <-chan struct{}) { return s.appended, s.done }
