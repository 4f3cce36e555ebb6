package positions

import (
	"crypto/sha256"
)

// FingerprintSize is how many bytes from the start of a file its fingerprint
// covers at most. The first json-file line alone (a nanosecond timestamp and
// the text) makes 256 bytes practically unique to one file.
const FingerprintSize = 256

// Identity recognises one log file across renames (<id>-json.log to .1, .2,
// ...), compression (.1 to .1.gz: a new inode, the same uncompressed bytes)
// and inode reuse (a new file that got a deleted file's inode has a different
// start).
//
// Dev and Inode identify the file while it exists uncompressed; the
// fingerprint identifies its content: a hash of its first FingerprintLen
// bytes of uncompressed content, which is min(FingerprintSize, what the file
// held when it was computed). A file that was small when its position was
// saved is recognised later by hashing the same number of its first bytes.
type Identity struct {
	Dev   uint64
	Inode uint64
	// FingerprintLen is how many bytes Fingerprint covers, 0..FingerprintSize;
	// 0 means that the file was empty, and then Fingerprint is all zero.
	FingerprintLen int
	Fingerprint    [16]byte
}

// SetFingerprint computes the fingerprint from prefix, the first bytes of the
// file's uncompressed content (the whole file when it is shorter than
// FingerprintSize); bytes past FingerprintSize are ignored.
func (id *Identity) SetFingerprint(prefix []byte) {
	prefix = prefix[:min(len(prefix), FingerprintSize)]
	id.FingerprintLen = len(prefix)
	id.Fingerprint = fingerprint(prefix)
}

// MatchesContent reports whether a file whose uncompressed content starts
// with prefix has this identity's fingerprint. prefix must hold at least
// FingerprintLen bytes of it (or all of it when the file is shorter); more
// are ignored.
func (id Identity) MatchesContent(prefix []byte) bool {
	if len(prefix) < id.FingerprintLen {
		return false
	}
	return fingerprint(prefix[:id.FingerprintLen]) == id.Fingerprint
}

// SameInode reports whether dev and inode are this identity's. Alone it does
// not prove the same file: inodes are reused after a file is deleted.
func (id Identity) SameInode(dev, inode uint64) bool {
	return id.Inode != 0 && id.Dev == dev && id.Inode == inode
}

func fingerprint(b []byte) [16]byte {
	var fp [16]byte
	if len(b) == 0 {
		return fp
	}
	sum := sha256.Sum256(b)
	copy(fp[:], sum[:])
	return fp
}

// Position is where reading a container's log stopped: the file, and the
// offset in its uncompressed content right after the last line that has been
// delivered. Reading resumes at Offset, which is always at a line start.
type Position struct {
	File   Identity
	Offset int64
}
