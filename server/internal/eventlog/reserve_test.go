package eventlog

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/rs/zerolog"
)

// TestReserve: an open store keeps its reserve beside it, written in full
// and readable by the server's account only; opening gives it up first.
// (TestReopenOnFullDisk shows what it is for, and that one that cannot be
// written in full leaves nothing behind.)
func TestReserve(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	check := func() {
		t.Helper()
		fi, err := os.Stat(path + "-reserve")
		if err != nil {
			t.Fatalf("no reserve beside the open store: %v", err)
		}
		if fi.Size() != reserveSize {
			t.Fatalf("reserve of %d bytes, want %d", fi.Size(), reserveSize)
		}
		if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
			t.Fatalf("reserve mode %v", fi.Mode())
		}
	}
	for range 2 {
		s, err := OpenSQLite(ctx, path, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		check()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := releaseReserve(path + "-reserve"); !ok || err != nil {
		t.Fatalf("releaseReserve = %v, %v", ok, err)
	}
	if ok, err := releaseReserve(path + "-reserve"); ok || err != nil {
		t.Fatalf("releaseReserve with none = %v, %v", ok, err)
	}
}
