package eventlog

import (
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// TestFrontier checks the writer's frontier against tlog over a map holding
// every hash, for every size up to 1100, and the record/level arithmetic used
// to find a stored hash in the merkle column.
func TestFrontier(t *testing.T) {
	var f frontier
	all := map[int64]tlog.Hash{}
	reader := tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(ix))
		for i, x := range ix {
			out[i] = all[x]
		}
		return out, nil
	})
	for n := int64(0); n < 1100; n++ {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(n))
		leaf := sha256.Sum256(b[:])
		got, err := f.append(tlog.RecordHash(leaf[:]))
		if err != nil {
			t.Fatalf("record %d: %v", n, err)
		}
		want, err := tlog.StoredHashes(n, leaf[:], reader)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("record %d: %d hashes, want %d", n, len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("record %d hash %d differs", n, i)
			}
			x := tlog.StoredHashIndex(0, n) + int64(i)
			all[x] = want[i]
			if rec, level := hashLocation(x); rec != n || level != i {
				t.Fatalf("hashLocation(%d) = %d, %d; want %d, %d", x, rec, level, n, i)
			}
		}
		// A frontier rebuilt from storage, as on open, equals the live one.
		size := n + 1
		levels, ix := frontierIndexes(size)
		re := frontier{n: size}
		for i, level := range levels {
			re.set(level, size>>uint(level)-1, all[ix[i]])
		}
		if re != f {
			t.Fatalf("size %d: reloaded frontier differs", size)
		}
	}
}

// BenchmarkMerkleAppend measures the Merkle work per stored event: the leaf
// hash and the stored hashes of completed subtrees.
func BenchmarkMerkleAppend(b *testing.B) {
	var f frontier
	leaf := sha256.Sum256([]byte("event"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.append(tlog.RecordHash(leaf[:])); err != nil {
			b.Fatal(err)
		}
	}
}
