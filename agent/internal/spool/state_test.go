package spool

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/mamori/mamori/shared/event"
)

func loadAll(t *testing.T, s *Spool, bucket string) map[string]string {
	t.Helper()
	m := map[string]string{}
	if err := s.LoadState(bucket, func(k, v []byte) error { m[string(k)] = string(v); return nil }); err != nil {
		t.Fatal(err)
	}
	return m
}

// The state saved with an event is committed with it, survives a reopen,
// and a refused event leaves the state as it was; Previous names the last
// event before the reopen.
func TestEmitStateCommitsWithEvent(t *testing.T) {
	p := filepath.Join(tempDir(t), "s.db")
	s := open(t, p, Options{})
	if got := s.Previous(); got.Seq != 0 || !got.Time.IsZero() {
		t.Fatalf("new spool previous %+v", got)
	}
	ctx := context.Background()
	if err := s.SaveState(State{Bucket: "snap", Puts: map[string][]byte{"a": []byte("1"), "b": []byte("2")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.EmitState(ctx, ev(event.Info, 1), &State{Bucket: "snap", Puts: map[string][]byte{"a": nil, "c": []byte("3")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.EmitState(ctx, ev(event.Info, 2), &State{}); err == nil {
		t.Fatal("state without bucket accepted")
	}
	if got := loadAll(t, s, "snap"); len(got) != 2 || got["b"] != "2" || got["c"] != "3" {
		t.Fatalf("state %v", got)
	}
	last := s.Stats().LastSeq
	s.Close()
	s = open(t, p, Options{})
	prev := s.Previous()
	if prev.Seq != last || prev.Type != "file.modified" || prev.Time.IsZero() {
		t.Fatalf("previous after reopen %+v, want seq %d", prev, last)
	}
	if got := loadAll(t, s, "snap"); len(got) != 2 || got["c"] != "3" {
		t.Fatalf("state after reopen %v", got)
	}
	s.Close()

	// At the bound an info event is refused and its state is not saved.
	full := open(t, filepath.Join(tempDir(t), "full.db"), Options{MaxBytes: 1})
	defer full.Close()
	emitN(t, full, event.Warning, 1)
	err := full.EmitState(ctx, ev(event.Info, 3), &State{Bucket: "snap", Puts: map[string][]byte{"x": []byte("1")}})
	if !errors.Is(err, ErrFull) {
		t.Fatalf("info at bound: %v", err)
	}
	if got := loadAll(t, full, "snap"); len(got) != 0 {
		t.Fatalf("refused event's state saved: %v", got)
	}
}
