package audit

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// The export's cache of stored hashes answers exactly what the store
// would, also across the moment it is emptied for being full (where a
// first version answered zero hashes for what it had just forgotten).
func TestHashCacheAnswersAsTheStore(t *testing.T) {
	hashOf := func(x int64) (h tlog.Hash) {
		binary.LittleEndian.PutUint64(h[:], uint64(x)+1)
		return h
	}
	reads := 0
	store := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		reads++
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = hashOf(x)
		}
		return out, nil
	})
	c := &hashCache{r: store, m: map[int64]tlog.Hash{}}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 400 {
		idx := make([]int64, 1000)
		for i := range idx {
			idx[i] = rng.Int64N(3 * hashCacheMax) // overflows the cache many times
		}
		got, err := c.ReadHashes(idx)
		if err != nil {
			t.Fatal(err)
		}
		for i, x := range idx {
			if got[i] != hashOf(x) {
				t.Fatalf("index %d: %x, want %x", x, got[i][:8], hashOf(x))
			}
		}
	}
	if len(c.m) > hashCacheMax {
		t.Errorf("cache holds %d hashes, bound %d", len(c.m), hashCacheMax)
	}
}
