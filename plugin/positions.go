package plugin

import (
	"context"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"time"

	"github.com/logferry/logferry/shared/atomicfile"
)

// Positions: how far Loki has accepted each stream, kept so that a
// restarted plugin re-sends from its local copies only what Loki lacks.
//
// The contract:
//   - A stream's position is the time of the latest entry Loki accepted,
//     in hand-over order (stream.acked, moved only by stream.Ack, which
//     the dispatcher calls). A position never moves on a failed delivery.
//   - The Driver owns one goroutine, savePositions, woken by an ack
//     (d.ackedChanged) and writing at most every positionsInterval; it
//     ends when the Driver's context is cancelled. Shutdown writes once
//     more after the dispatchers have flushed (savePositionsNow).
//   - The file holds, per FIFO, the position of every registered stream
//     and of every stream that ended during Shutdown (d.finalPos), none
//     that is 0. It is replaced atomically but without fsync: it has to
//     survive the plugin process; a machine crash restarts the containers
//     anyway. An unreadable file counts as empty: lines are then re-sent
//     from the stream's start (duplicates rather than a loss).
//   - Writes are serialised by d.saveMu, each from a snapshot taken under
//     it, so a later write never holds older positions than an earlier
//     one. Lock order: d.saveMu, then d.mu; no file I/O under d.mu.

// positionsFile is the name of the positions file in the State's directory.
const positionsFile = "positions"

// positionsInterval bounds how often positions are written.
const positionsInterval = 50 * time.Millisecond

// SavePositions replaces the saved positions.
func (s *State) SavePositions(pos map[string]int64) error {
	b, err := json.Marshal(pos)
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(s.dir, positionsFile), b, atomicfile.Options{NoSync: true})
}

// LoadPositions returns the saved positions; none when there are none or
// the file is unreadable (then lines are re-sent from the stream's start).
func (s *State) LoadPositions() map[string]int64 {
	pos := map[string]int64{}
	b, err := os.ReadFile(filepath.Join(s.dir, positionsFile))
	if err == nil {
		_ = json.Unmarshal(b, &pos)
	}
	return pos
}

// savePositions writes every stream's acknowledged time soon after Loki
// accepts a batch (at most every positionsInterval), so that a restarted
// plugin re-sends little that Loki already has: Loki stores such a
// duplicate (its log queries hide it, metric queries count it).
func (d *Driver) savePositions(ctx context.Context) {
	limit := time.NewTicker(positionsInterval)
	defer limit.Stop()
	for {
		select {
		case <-d.ackedChanged:
		case <-ctx.Done():
			return
		}
		d.writePositions(false)
		select {
		case <-limit.C:
		case <-ctx.Done():
			return
		}
	}
}

// savePositionsNow writes the positions of every stream still registered
// or ended during Shutdown, changed or not.
func (d *Driver) savePositionsNow() { d.writePositions(true) }

// writePositions writes the current positions unless, without force, they
// are those written last.
func (d *Driver) writePositions(force bool) {
	d.saveMu.Lock()
	defer d.saveMu.Unlock()
	d.mu.Lock()
	pos := maps.Clone(d.finalPos)
	for f, s := range d.streams {
		pos[f] = s.acked.Load()
	}
	d.mu.Unlock()
	maps.DeleteFunc(pos, func(_ string, a int64) bool { return a <= 0 })
	if !force && maps.Equal(pos, d.savedPos) {
		return
	}
	if err := d.state.SavePositions(pos); err != nil {
		d.log.Error("saving positions", "err", err)
		return
	}
	d.savedPos = pos
}
