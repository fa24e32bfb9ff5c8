package eventlog

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestKeyBlocks writes random keys (values that share prefixes, hold 0
// bytes or are empty, across several blocks) as runs, merges them, and
// checks every read against the keys themselves: the runs read back whole,
// the merge is the sorted union, and scanRun gives exactly the keys of each
// seek (values equal, in a range, open-ended, from a pos), in order.
func TestKeyBlocks(t *testing.T) {
	ctx := context.Background()
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	rng := rand.New(rand.NewPCG(3, 4))
	vals := []string{"", "a", "a\x00", "a\x00b", "a\x01", "ab", "D:\\共有\\顧客", "D:\\共有\\顧客\\2025", "D:\\共有\\顧客\\2025\\見積書.xlsx", "\xff", "zz"}
	for i := 0; i < 300; i++ {
		vals = append(vals, fmt.Sprintf("C:\\Users\\u%d\\%s_%04d.pdf", rng.IntN(5), strings.Repeat("x", rng.IntN(40)), rng.IntN(1000)))
	}
	// Four runs of disjoint pos ranges, as the indexer makes them.
	var (
		runs []keyRun
		all  []runKey
	)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for r := int64(0); r < 4; r++ {
		lo, hi := r*2000, (r+1)*2000
		var keys []runKey
		for pos := lo; pos < hi; pos++ {
			for _, kind := range []int{4, 5, 6} {
				if rng.IntN(3) == 0 {
					continue
				}
				k := runKey{kind: kind, val: vals[rng.IntN(len(vals))], pos: pos}
				if kind != 5 && rng.IntN(2) == 0 {
					k.upto = pos + 1 + int64(rng.IntN(50))
				}
				keys = append(keys, k)
			}
		}
		sortKeys(keys)
		run := keyRun{name: runName(lo, hi), lo: lo, hi: hi}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf(runSchema, run.name)); err != nil {
			t.Fatal(err)
		}
		if err := writeKeys(ctx, tx, run.name, keys); err != nil {
			t.Fatal(err)
		}
		if got := readRun(t, tx, run.name); !slices.Equal(got, keys) {
			t.Fatalf("run %s reads back %d keys, wrote %d", run.name, len(got), len(keys))
		}
		runs, all = append(runs, run), append(all, keys...)
	}
	var blocks int
	if err := tx.QueryRow(`SELECT count(*) FROM ` + runs[0].name).Scan(&blocks); err != nil {
		t.Fatal(err)
	}
	if blocks < 5 {
		t.Fatalf("run of %d keys in %d blocks: the test wants several", len(all)/4, blocks)
	}
	merged := keyRun{name: runName(0, 8000), lo: 0, hi: 8000}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(runSchema, merged.name)); err != nil {
		t.Fatal(err)
	}
	if err := mergeKeys(ctx, tx, runs, merged.name); err != nil {
		t.Fatal(err)
	}
	sortKeys(all)
	if got := readRun(t, tx, merged.name); !slices.Equal(got, all) {
		t.Fatalf("merge holds %d keys, want %d", len(got), len(all))
	}

	seeks := []keySeek{{kind: 5, lo: "D:", hi: "D;", hasHi: true}, {kind: 4, lo: "a"}, {kind: 6},
		{kind: 5, lo: "", hi: "a\x00b", hasHi: true}, {kind: 7}, {kind: 3, lo: "zz"}}
	for _, v := range vals[:12] {
		seeks = append(seeks, keySeek{kind: 4, eq: v, hasEq: true}, keySeek{kind: 6, eq: v, hasEq: true, from: 3000},
			keySeek{kind: 5, lo: v, hi: v + "\x00", hasHi: true, from: 7999})
	}
	for i := 0; i < 40; i++ {
		v := vals[rng.IntN(len(vals))]
		seeks = append(seeks, keySeek{kind: 4 + rng.IntN(3), eq: v, hasEq: true, from: rng.Int64N(8000)},
			keySeek{kind: 5, lo: v[:rng.IntN(len(v)+1)], hi: v, hasHi: true, from: rng.Int64N(8000)})
	}
	for _, run := range append(runs, merged) {
		for _, k := range seeks {
			var want, got [][2]int64
			for _, key := range all {
				if key.pos >= run.lo && key.pos < run.hi && key.kind == k.kind && key.pos >= k.from &&
					(k.hasEq && key.val == k.eq || !k.hasEq && key.val >= k.lo && (!k.hasHi || key.val < k.hi)) {
					want = append(want, [2]int64{key.pos, key.upto})
				}
			}
			err := scanRun(ctx, tx, run.name, k, func(pos, upto int64) bool {
				got = append(got, [2]int64{pos, upto})
				return true
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("run %s, seek %+v: %d keys, want %d", run.name, k, len(got), len(want))
			}
		}
	}
}

func sortKeys(keys []runKey) { slices.SortFunc(keys, runKey.compare) }

func readRun(t *testing.T, tx *sql.Tx, run string) []runKey {
	t.Helper()
	keys, err := readRunKeys(context.Background(), tx, run)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestOrderKey: the names of blocks order as their keys do, 0 bytes and
// prefixes included.
func TestOrderKey(t *testing.T) {
	keys := []runKey{{4, "", 0, 0, 0}, {4, "", 9, 0, 0}, {4, "\x00", 0, 0, 0}, {4, "\x00\x00", 0, 0, 0},
		{4, "\x00\x01", 0, 0, 0}, {4, "\x01", 0, 0, 0}, {4, "a", 1 << 40, 0, 0}, {4, "a\x00", 0, 0, 0},
		{4, "a\x00\xff", 0, 0, 0}, {4, "a\x01", 0, 0, 0}, {4, "ab", 0, 0, 0}, {5, "", 0, 0, 0}}
	for i := 1; i < len(keys); i++ {
		a, b := keys[i-1], keys[i]
		if bytes.Compare(orderKey(nil, a.kind, a.val, a.pos), orderKey(nil, b.kind, b.val, b.pos)) >= 0 {
			t.Errorf("%q < %q but not their names", a.val, b.val)
		}
	}
}

// TestSharedPrefix: the eight-bytes-at-a-time prefix is a byte loop's, for
// strings and byte slices, at every length around a word and a difference
// at every position.
func TestSharedPrefix(t *testing.T) {
	naive := func(a, b []byte) int {
		i := 0
		for i < len(a) && i < len(b) && a[i] == b[i] {
			i++
		}
		return i
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for la := range 20 {
		for lb := range 20 {
			for range 50 {
				a := make([]byte, la)
				for i := range a {
					a[i] = byte(rng.IntN(3)) // few values: long shared runs
				}
				b := append([]byte(nil), a[:min(la, lb)]...)
				for len(b) < lb {
					b = append(b, byte(rng.IntN(3)))
				}
				if len(b) > 0 && rng.IntN(2) == 0 {
					b[rng.IntN(len(b))] ^= byte(1 + rng.IntN(255))
				}
				want := naive(a, b)
				if got := sharedPrefix(a, b); got != want {
					t.Fatalf("sharedPrefix(%x, %x) = %d, want %d", a, b, got, want)
				}
				if got := sharedPrefix(string(a), b); got != want {
					t.Fatalf("sharedPrefix(string %x, %x) = %d, want %d", a, b, got, want)
				}
			}
		}
	}
}
