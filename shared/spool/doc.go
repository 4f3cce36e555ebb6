// Package spool owns the disk spool: entries the Loki dispatcher could not
// deliver or hold in memory are appended to checksummed segment files in one
// directory and replayed, in append order, until Loki acknowledged them.
//
// # On disk
//
// The directory holds segment files, a state file, a lock file and, for
// NewEndpointSpools, the endpoint's file:
//
//	00000000000000000000.seg   segments, named by their base position
//	00000000000008388736.seg   (20 decimal digits, so names sort like bases)
//	ack                        the acknowledged position
//	lock                       flock(2)ed while a Spool has the directory open
//	endpoint.json              whose spool it is (NewEndpointSpools only)
//
// A position is a byte offset in the concatenation of every segment ever
// written: a segment's records start at its base, and the next segment's
// base is at least the previous one's end. Positions only grow, across
// restarts too, so a position names one place for the life of the
// directory. Record.End is such a position, and it is what Ack takes.
//
// A segment is a sequence of frames, with no file header:
//
//	offset  size  field
//	0       4     magic FE 4C 46 FF ("\xfeLF\xff": never valid UTF-8)
//	4       4     payload length n, uint32 little-endian, at most MaxRecordBytes
//	8       4     CRC-32C (Castagnoli) of the payload
//	12      4     CRC-32C of bytes 0..11
//	16      n     payload
//
// The header has its own checksum so that a reader knows a length is real
// before it trusts it: a frame whose header checks but whose payload does
// not is skipped exactly and counted as one corrupt record; bytes that do
// not start a valid header are scanned for the next magic, and the run of
// bytes skipped counts as one corrupt record. Damage that runs to the end of
// a segment is counted as torn: that is what a crash in the middle of a
// write leaves. Every byte of a segment is either in an intact frame or
// counted as damaged.
//
// A payload (version 1) is:
//
//	1 byte   version, 1
//	varint   time in Unix nanoseconds (zig-zag, encoding/binary)
//	uvarint  length, then the stream selector bytes
//	uvarint  length, then the line bytes
//	uvarint  number of structured metadata pairs, then per pair
//	         uvarint length + name, uvarint length + value
//
// The ack file is 20 bytes: "LFAK", uint32 version 1, int64 position, and a
// CRC-32C of the first 16 bytes, all little-endian. It is replaced
// atomically by package atomicfile (write a temporary file beside it, fsync,
// rename, fsync the directory); Open removes the temporary files a crash
// left, atomicfile's (".atomic-ack-*.tmp") and the "ack.tmp" of earlier
// versions. Segments whose end is at or before the acknowledged position
// are deleted; the one being written waits until it is closed or its space
// is needed.
//
// Writes go to one active segment at a time; a Spool never appends to a
// segment it found when it opened the directory, so a torn tail left by a
// crash stays where it is, is counted once read, and never has new records
// written after it.
package spool
