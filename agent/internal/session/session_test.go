package session

import (
	"testing"
	"time"
)

func TestPublishFansOutAndNeverBlocks(t *testing.T) {
	var b Bus
	a, c := b.Subscribe(), b.Subscribe()
	b.Publish(Change{Kind: Lock, SessionID: 1, Time: time.Unix(1, 0)})
	if got := <-a; got.Kind != Lock {
		t.Fatalf("a got %v", got)
	}
	if got := <-c; got.SessionID != 1 {
		t.Fatalf("c got %v", got)
	}
	b.Unsubscribe(c)
	for i := 0; i < 100; i++ { // a's buffer is 64: the rest are counted, not blocked on
		b.Publish(Change{Kind: Unlock})
	}
	if b.Lost() != 36 {
		t.Fatalf("lost %d, want 36", b.Lost())
	}
}
