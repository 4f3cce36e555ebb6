package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/logferry/logferry/shared/atomicfile"
)

// The ack file: see the package doc.
const (
	ackFileName = "ack"
	ackFileSize = 20
	ackVersion  = 1
	// legacyAckTempName is the temporary file of an ack write before
	// package atomicfile did them; Open still removes one a crash left.
	legacyAckTempName = "ack.tmp"
)

var ackMagic = [4]byte{'L', 'F', 'A', 'K'}

// errCorruptAck is wrapped when the ack file does not check.
var errCorruptAck = errors.New("corrupt ack file")

// Ack acknowledges every record before pos, a Record.End: after a restart
// Read starts at pos. It writes the ack file (synced unless FsyncNever) and
// deletes the segments wholly acknowledged, except the one being written.
// Positions at or before the acknowledged one are ignored. Ack costs a file
// write and up to two fsyncs: call it per batch, not per record.
func (s *Spool) Ack(pos int64) error {
	s.ackMu.Lock()
	defer s.ackMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	pos = min(pos, s.next)
	if pos <= s.acked {
		s.mu.Unlock()
		return nil
	}
	bytes := pos - max(s.acked, min(s.droppedUntil, pos))
	i, found := slices.BinarySearch(s.inflight, pos)
	if found {
		i++
	}
	records := i
	s.inflight = s.inflight[i:]
	if len(s.inflight) == 0 {
		s.inflight = nil // let the array go
	}
	s.acked = pos
	s.cursor = max(s.cursor, pos)
	var del []*segment
	for len(s.segs) > 0 && s.segs[0].end() <= pos && !(len(s.segs) == 1 && s.file != nil) {
		del = append(del, s.segs[0])
		s.diskBytes -= s.segs[0].size
		s.segs[0] = nil
		s.segs = s.segs[1:]
	}
	s.updateGauges()
	s.mu.Unlock()

	s.counts.acked.Add(int64(records))
	s.m.recordsAcked.Add(float64(records))
	s.m.bytesAcked.Add(float64(bytes))
	err := writeAck(s.cfg.Dir, pos, s.cfg.Fsync != FsyncNever)
	if err != nil {
		s.log.Error("writing the ack file failed", "err", err)
	}
	// Deleting after the ack file is written: if this is lost, Open
	// deletes the segments again from the ack file.
	for _, g := range del {
		if rerr := os.Remove(g.path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = errors.Join(err, fmt.Errorf("spool: deleting an acknowledged segment: %w", rerr))
		}
	}
	return err
}

// readAck returns the acknowledged position in dir's ack file: 0 when there
// is none, and an error wrapping errCorruptAck when it does not check.
func readAck(dir string) (int64, error) {
	path := filepath.Join(dir, ackFileName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("spool ack file %s: %w", path, err)
	}
	if len(b) != ackFileSize || [4]byte(b[0:4]) != ackMagic ||
		binary.LittleEndian.Uint32(b[4:8]) != ackVersion ||
		binary.LittleEndian.Uint32(b[16:20]) != crc32.Checksum(b[0:16], castagnoli) {
		return 0, fmt.Errorf("spool ack file %s: %w", path, errCorruptAck)
	}
	pos := int64(binary.LittleEndian.Uint64(b[8:16]))
	if pos < 0 {
		return 0, fmt.Errorf("spool ack file %s: negative position: %w", path, errCorruptAck)
	}
	return pos, nil
}

// writeAck replaces dir's ack file with pos, atomically; with sync it is
// durable when writeAck returns.
func writeAck(dir string, pos int64, sync bool) error {
	var b [ackFileSize]byte
	copy(b[0:4], ackMagic[:])
	binary.LittleEndian.PutUint32(b[4:8], ackVersion)
	binary.LittleEndian.PutUint64(b[8:16], uint64(pos))
	binary.LittleEndian.PutUint32(b[16:20], crc32.Checksum(b[0:16], castagnoli))
	path := filepath.Join(dir, ackFileName)
	if err := atomicfile.Write(path, b[:], atomicfile.Options{Perm: 0o600, NoSync: !sync}); err != nil {
		return fmt.Errorf("spool ack file %s: %w", path, err)
	}
	return nil
}

// removeAckTemps removes the temporary files of ack writes a crash
// interrupted, in the naming of package atomicfile and in the older one.
func removeAckTemps(dir string) error {
	err := atomicfile.RemoveTemps(dir)
	if lerr := os.Remove(filepath.Join(dir, legacyAckTempName)); lerr != nil && !errors.Is(lerr, fs.ErrNotExist) {
		err = errors.Join(err, lerr)
	}
	if err != nil {
		return fmt.Errorf("spool: removing an interrupted ack write: %w", err)
	}
	return nil
}
