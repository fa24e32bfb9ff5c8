package fileaccess

import "testing"

func TestRecordAcksWaitForTheOldest(t *testing.T) {
	var a recordAcks
	if _, moved := a.done(); moved {
		t.Fatal("empty tracker moved")
	}
	a.hold(0) // no record: ignored
	for _, r := range []uint64{3, 5, 8} {
		a.hold(r)
	}
	a.hold(5) // a second holder (a read also counted into a bulk window)
	a.release(8)
	a.release(5)
	if got, moved := a.done(); moved {
		t.Fatalf("3 still held, done moved to %d", got)
	}
	a.release(3)
	if got, moved := a.done(); !moved || got != 3 {
		t.Fatalf("after 3: %d %v, want 3 (5 has a second hold)", got, moved)
	}
	a.release(5)
	if got, moved := a.done(); !moved || got != 8 {
		t.Fatalf("after 5: %d %v, want 8", got, moved)
	}
	if got, moved := a.done(); moved || got != 8 {
		t.Fatalf("again: %d %v", got, moved)
	}
	a.release(8, 42) // releasing what is not held changes nothing
	a.hold(9)
	if got, moved := a.done(); moved || got != 8 {
		t.Fatalf("9 held: %d %v", got, moved)
	}
	if len(a.holds) != 1 || len(a.q) != 1 {
		t.Fatalf("released records kept: %v %v", a.holds, a.q)
	}
}

func TestRecordCursorPersistsOnlyAckedRecords(t *testing.T) {
	var c recordCursor
	c.start(10)
	if pos, dirty := c.unsaved(); dirty || pos != 10 {
		t.Fatalf("fresh: %d %v", pos, dirty)
	}
	c.passed(11) // another path's record: nothing to wait for
	if pos, dirty := c.unsaved(); !dirty || pos != 11 {
		t.Fatalf("after a passed record: %d %v", pos, dirty)
	}
	c.markSaved(11)
	c.handOut(12)
	c.passed(13)
	c.handOut(14)
	if c.next() != 14 {
		t.Fatalf("next read after %d, want 14", c.next())
	}
	// 12 and 14 are queued to the control, not yet emitted: a crash now
	// must read 12 again, so nothing newer than 11 may be saved.
	if pos, dirty := c.unsaved(); dirty || pos != 11 {
		t.Fatalf("in flight: %d %v", pos, dirty)
	}
	c.ack(12)
	if pos, _ := c.unsaved(); pos != 13 {
		t.Fatalf("after ack 12: %d, want 13", pos)
	}
	c.ack(14)
	if pos, _ := c.unsaved(); pos != 14 {
		t.Fatalf("after ack 14: %d", pos)
	}
	c.ack(99) // acks beyond what was handed out do not move past what was read
	if pos := c.position(); pos != 14 {
		t.Fatalf("after ack 99: %d", pos)
	}
}
