package eventlog

import (
	"errors"
	"strings"
	"testing"
)

// The refusal names this server's epoch as its own, not the store's: a
// deposed server (-1) was read as "this store's epoch is -1".
func TestFenceResultNamesWhoseEpoch(t *testing.T) {
	if err := fenceResult(deposedEpoch, 0); !errors.Is(err, ErrFenced) || !strings.Contains(err.Error(), "stepped down") {
		t.Errorf("deposed: %v", err)
	}
	if err := fenceResult(7, 0); !errors.Is(err, ErrFenced) || !strings.Contains(err.Error(), "this server's writer epoch 7 is older") {
		t.Errorf("older: %v", err)
	}
	if err := fenceResult(7, 1); err != nil {
		t.Errorf("matched: %v", err)
	}
}
