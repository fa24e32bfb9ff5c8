package eventlog

import (
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// frontier holds, per tree level, the hash of the most recently completed
// subtree. Those are exactly the hashes tlog.StoredHashes reads when the next
// record is appended, so the writer never reads hashes back from the database,
// not even ones written earlier in the same, uncommitted transaction.
type frontier struct {
	n   int64         // records in the tree
	idx [64]int64     // stored hash index of the node kept at each level
	h   [64]tlog.Hash // its hash
	ok  [64]bool      // level holds a node
}

// ReadHashes implements tlog.HashReader for the frontier nodes only.
func (f *frontier) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		level, _ := tlog.SplitStoredHashIndex(x)
		if level >= len(f.idx) || !f.ok[level] || f.idx[level] != x {
			return nil, fmt.Errorf("eventlog: merkle frontier has no hash %d (tree size %d)", x, f.n)
		}
		out[i] = f.h[level]
	}
	return out, nil
}

// append adds the record whose leaf hash is leaf and returns the hashes to
// store with it (leaf first, then the subtrees it completes, level by level).
func (f *frontier) append(leaf tlog.Hash) ([]tlog.Hash, error) {
	n := f.n
	hashes, err := tlog.StoredHashesForRecordHash(n, leaf, f)
	if err != nil {
		return nil, err
	}
	for level, h := range hashes {
		f.set(level, n>>uint(level), h)
	}
	f.n++
	return hashes, nil
}

func (f *frontier) set(level int, n int64, h tlog.Hash) {
	f.idx[level] = tlog.StoredHashIndex(level, n)
	f.h[level] = h
	f.ok[level] = true
}

// frontierIndexes lists, for a tree of n records, the stored hash index of the
// last complete node at each level: what loadFrontier must read on open.
func frontierIndexes(n int64) (levels []int, indexes []int64) {
	for level := 0; level < 63 && n>>uint(level) > 0; level++ {
		levels = append(levels, level)
		indexes = append(indexes, tlog.StoredHashIndex(level, n>>uint(level)-1))
	}
	return levels, indexes
}

// hashLocation says where the stored hash with the given index lives: in the
// merkle column of event record, at position level (32 bytes each). The node
// (level, k) is completed, and so stored, by record (k+1)<<level - 1.
func hashLocation(index int64) (record int64, level int) {
	level, k := tlog.SplitStoredHashIndex(index)
	return (k+1)<<uint(level) - 1, level
}
