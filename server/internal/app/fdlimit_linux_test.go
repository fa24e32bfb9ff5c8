package app

import (
	"syscall"
	"testing"
)

// TestRaiseFDLimit: after the call the soft limit is the hard one (Linux;
// macOS may keep a lower one, see raiseFDLimit).
func TestRaiseFDLimit(t *testing.T) {
	got, err := raiseFDLimit()
	if err != nil {
		t.Fatal(err)
	}
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		t.Fatal(err)
	}
	if got != r.Cur || r.Cur != r.Max {
		t.Fatalf("raiseFDLimit = %d; soft %d, hard %d", got, r.Cur, r.Max)
	}
}
