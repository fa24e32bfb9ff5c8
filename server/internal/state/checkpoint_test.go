package state

import (
	"errors"
	"testing"
)

// etcd's copy of the checkpoint moves only when extends accepts the copy
// held, and a copy replaced between extends and the write (another server
// advancing it) is re-read and judged again, never overwritten blindly.
func TestAdvanceCheckpointCompareAndSwap(t *testing.T) {
	s := openTest(t)
	ctx := ctxT(t)
	if err := s.AdvanceCheckpoint(ctx, []byte("cp 10"), func(old []byte) error {
		if old != nil {
			t.Fatalf("first advance saw %q", old)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// A smaller (rolled back) checkpoint: extends refuses, nothing changes.
	refused := errors.New("not an extension")
	if err := s.AdvanceCheckpoint(ctx, []byte("cp 5"), func(old []byte) error {
		if string(old) != "cp 10" {
			t.Fatalf("extends saw %q", old)
		}
		return refused
	}); !errors.Is(err, refused) {
		t.Fatalf("refused advance: %v", err)
	}
	if b, err := s.LatestCheckpoint(ctx); err != nil || string(b) != "cp 10" {
		t.Fatalf("after a refused advance: %q, %v", b, err)
	}
	// Another server advances to 20 while this one judges 15 against 10:
	// the write of 15 must not land on top of 20 unjudged.
	var seen []string
	err := s.AdvanceCheckpoint(ctx, []byte("cp 15"), func(old []byte) error {
		seen = append(seen, string(old))
		if len(seen) == 1 {
			if err := s.PutCheckpoint(ctx, []byte("cp 20")); err != nil {
				t.Fatal(err)
			}
			return nil
		}
		return refused // 15 does not extend 20
	})
	if !errors.Is(err, refused) || len(seen) != 2 || seen[1] != "cp 20" {
		t.Fatalf("concurrent advance: %v, extends saw %q", err, seen)
	}
	if b, err := s.LatestCheckpoint(ctx); err != nil || string(b) != "cp 20" {
		t.Fatalf("after the concurrent advance: %q, %v", b, err)
	}
}
