package fileaccess

import "sync"

// OS records (Windows Security-log record ids) behind accesses, tracked so
// that a probe's persisted position never passes a record whose events are
// not yet durable: a crash then repeats at most a few events, it never
// loses any. Record ids increase in the order a probe hands accesses out.

// recordAcks is the control's side: every access with a record is held from
// its arrival until what it caused has been emitted (a read's file.read
// event or the bulk summary it was counted in) or it is dropped (outside the
// roots, excluded, a write record aged out of the join window). done says
// how far every record is released.
type recordAcks struct {
	q     []uint64       // held records in arrival order, oldest first
	holds map[uint64]int // open holds per record
	acked uint64         // highest record reported by done
}

// hold takes one hold on rec (0: no record, ignored).
func (t *recordAcks) hold(rec uint64) {
	if rec == 0 {
		return
	}
	if t.holds == nil {
		t.holds = map[uint64]int{}
	}
	if t.holds[rec] == 0 {
		t.q = append(t.q, rec)
	}
	t.holds[rec]++
}

// release drops one hold on each of recs.
func (t *recordAcks) release(recs ...uint64) {
	for _, rec := range recs {
		if n := t.holds[rec]; n > 0 {
			t.holds[rec] = n - 1
		}
	}
}

// done returns the highest record such that it and every record before it
// are released, and whether that moved since the last call.
func (t *recordAcks) done() (uint64, bool) {
	i := 0
	for ; i < len(t.q) && t.holds[t.q[i]] == 0; i++ {
		delete(t.holds, t.q[i])
	}
	if i == 0 {
		return t.acked, false
	}
	t.acked = t.q[i-1]
	t.q = t.q[i:]
	return t.acked, true
}

// recordCursor is the probe's side: the position in the OS log that is
// safe to persist. Records read but not ours (other paths, other events)
// are passed at once; records handed out wait for the control's ack.
type recordCursor struct {
	mu       sync.Mutex
	read     uint64   // highest record read: the next read starts after it
	inflight []uint64 // handed out, not yet acked, ascending
	saved    uint64   // last persisted position
}

// start sets the position read from a bookmark (or the log's end).
func (c *recordCursor) start(pos uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.read, c.saved, c.inflight = pos, pos, nil
}

// next is the record after which to read.
func (c *recordCursor) next() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.read
}

// passed notes a record read that the control will not see.
func (c *recordCursor) passed(rec uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.read = max(c.read, rec)
}

// handOut notes a record about to be handed to the control; call it before
// the hand-over, so an ack can never come first.
func (c *recordCursor) handOut(rec uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inflight = append(c.inflight, rec)
	c.read = max(c.read, rec)
}

// ack: every record up to rec the control got is durable.
func (c *recordCursor) ack(rec uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := 0
	for i < len(c.inflight) && c.inflight[i] <= rec {
		i++
	}
	c.inflight = c.inflight[i:]
}

// position is where a restart may resume: before the oldest record still
// in flight, else after everything read.
func (c *recordCursor) position() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.inflight) > 0 {
		return c.inflight[0] - 1
	}
	return c.read
}

// unsaved returns the position when it differs from the persisted one.
func (c *recordCursor) unsaved() (uint64, bool) {
	pos := c.position()
	c.mu.Lock()
	defer c.mu.Unlock()
	return pos, pos != c.saved
}

// markSaved records that pos was persisted.
func (c *recordCursor) markSaved(pos uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.saved = pos
}
