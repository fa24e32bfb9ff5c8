package eventlog

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mamori/mamori/shared/event"
)

// payloadEvents is a batch with what a record must carry: attrs of every
// kind, optional fields empty and set, a prev from before the batch, a
// chain that restarts (prev empty), a gap in seqs and a clock that steps
// back.
func payloadEvents(t testing.TB) ([]event.Event, [][]byte) {
	t.Helper()
	t0 := time.Date(2026, 12, 6, 9, 30, 0, 123456789, time.UTC)
	var evs []event.Event
	prev := strings.Repeat("ab", 32) // the event before the batch
	seq := uint64(41)
	for i := range 7 {
		if i == 3 {
			seq += 5 // a gap the server reported
		}
		e := event.Event{
			Agent: "pc-001", Seq: seq, Time: t0.Add(time.Duration(i) * time.Second),
			Control: "file_access", Type: "file.read", Severity: event.Info,
			User: "CORP\\山田", Process: `C:\Windows\explorer.exe`,
			Object: `\\fs01\人事\給与_2026.xlsx`, RegisterID: "REG-0007",
		}
		switch i {
		case 1:
			e.User, e.Process, e.Object, e.RegisterID = "", "", "", ""
		case 2:
			e.Attrs = event.Attrs{"bytes": 1234, "ok": true, "tags": []any{"a", "b"}, "none": nil, "nested": map[string]any{"x": 1.5}}
		case 3:
			e.Time = t0.Add(-time.Hour) // the clock stepped back
		case 4:
			prev = "" // a chain started again
		case 5:
			prev = strings.Repeat("0f", 32) // not the hash before it
		}
		if err := e.Seal(prev); err != nil {
			t.Fatal(err)
		}
		prev = e.Hash
		seq++
		evs = append(evs, e)
	}
	attrs, err := validAttrs(evs)
	if err != nil {
		t.Fatal(err)
	}
	return evs, attrs
}

// encodeParse encodes evs and parses the payload again.
func encodeParse(t testing.TB, evs []event.Event, attrs [][]byte) ([]byte, payload) {
	t.Helper()
	b, err := appendPayload(nil, evs, attrs)
	if err != nil {
		t.Fatal(err)
	}
	p, err := parsePayload(b)
	if err != nil {
		t.Fatal(err)
	}
	return b, p
}

// validAttrs validates evs as the writer's callers do and returns their
// attrs' canonical encodings, what appendPayload takes.
func validAttrs(evs []event.Event) ([][]byte, error) {
	attrs := make([][]byte, len(evs))
	for i := range evs {
		a, err := evs[i].ValidateAttrs()
		if err != nil {
			return nil, err
		}
		attrs[i] = a
	}
	return attrs, nil
}

// samePayloadEvent fails t unless got is want as a store must return it:
// its canonical encoding (what the hash covers), prev and hash.
func samePayloadEvent(t testing.TB, i int, got, want event.Event) {
	t.Helper()
	gc, err := got.Canonical()
	if err != nil {
		t.Fatalf("event %d decoded: %v", i, err)
	}
	wc, _ := want.Canonical()
	if !bytes.Equal(gc, wc) || got.Hash != want.Hash || got.Prev != want.Prev {
		t.Fatalf("event %d:\n got %s prev %s hash %s\nwant %s prev %s hash %s", i, gc, got.Prev, got.Hash, wc, want.Prev, want.Hash)
	}
}

func TestPayloadRoundTrip(t *testing.T) {
	evs, attrs := payloadEvents(t)
	b, p := encodeParse(t, evs, attrs)
	if p.len() != len(evs) {
		t.Fatalf("%d events, want %d", p.len(), len(evs))
	}
	// Backwards, so that no event leans on one decoded before it.
	for i := len(evs) - 1; i >= 0; i-- {
		got, err := p.event(i, "pc-001")
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		samePayloadEvent(t, i, got, evs[i])
		// The indexer's read of the three fields keys are made of.
		f, ok := p.keyFields(i)
		if !ok || string(f[0]) != evs[i].User || string(f[1]) != evs[i].Object || string(f[2]) != evs[i].RegisterID {
			t.Fatalf("event %d: keyFields %q %v, want %q %q %q", i, f, ok, evs[i].User, evs[i].Object, evs[i].RegisterID)
		}
	}
	// The chained prev is one byte: the batch costs little more than its
	// canonical encodings without the prevs.
	var canon int
	for i := range evs {
		c, _ := evs[i].Canonical()
		canon += len(c) - len(`,"prev":""`) - len(evs[i].Prev)
	}
	t.Logf("payload %d bytes, canonical encodings without prev %d", len(b), canon)
	if len(b) > canon {
		t.Errorf("payload %d bytes, more than the %d of the canonical encodings", len(b), canon)
	}
}

func TestPayloadRefused(t *testing.T) {
	evs, attrs := payloadEvents(t)
	for _, c := range []struct {
		name string
		edit func(evs []event.Event, attrs [][]byte) ([]event.Event, [][]byte)
	}{
		{"none", func(evs []event.Event, attrs [][]byte) ([]event.Event, [][]byte) { return nil, nil }},
		{"attrs missing", func(evs []event.Event, attrs [][]byte) ([]event.Event, [][]byte) { return evs, attrs[1:] }},
		{"seq back", func(evs []event.Event, attrs [][]byte) ([]event.Event, [][]byte) {
			evs[2].Seq = evs[1].Seq
			return evs, attrs
		}},
		{"hash not hex", func(evs []event.Event, attrs [][]byte) ([]event.Event, [][]byte) {
			evs[3].Hash = strings.Repeat("zz", 32)
			return evs, attrs
		}},
		{"prev short", func(evs []event.Event, attrs [][]byte) ([]event.Event, [][]byte) {
			evs[5].Prev = "abcd"
			return evs, attrs
		}},
	} {
		e, a := c.edit(append([]event.Event(nil), evs...), attrs)
		if b, err := appendPayload(nil, e, a); err == nil {
			t.Errorf("%s: encoded %d bytes, want an error", c.name, len(b))
		}
	}
}

// TestPayloadCorrupt: every prefix of a payload, and every payload with one
// byte changed, is refused or decodes without a panic; a prefix is always
// refused somewhere, since the last body ends with its hash.
func TestPayloadCorrupt(t *testing.T) {
	evs, attrs := payloadEvents(t)
	b, err := appendPayload(nil, evs, attrs)
	if err != nil {
		t.Fatal(err)
	}
	for n := range len(b) {
		if err := decodeAll(b[:n]); err == nil {
			t.Fatalf("prefix of %d of %d bytes decoded", n, len(b))
		} else if !errors.Is(err, errPayload) {
			t.Fatalf("prefix of %d bytes: %v, not errPayload", n, err)
		}
	}
	// The first event cannot be chained to the one before it.
	one, err := appendPayload(nil, evs[4:5], attrs[4:5]) // prev empty
	if err != nil {
		t.Fatal(err)
	}
	one[len(one)-33] = prevChained
	if err := decodeAll(one); !errors.Is(err, errPayload) {
		t.Fatalf("first event chained to none: %v", err)
	}
	for i := range b {
		for _, x := range []byte{0x01, 0x03, 0x20, 0x40, 0x80, 0xff} {
			c := bytes.Clone(b)
			c[i] ^= x
			decodeAll(c) // must not panic
		}
	}
}

// decodeAll parses b and decodes each of its events, each on its own as a
// page reads them, and returns the first error.
func decodeAll(b []byte) error {
	p, err := parsePayload(b)
	if err != nil {
		return err
	}
	var first error
	for i := p.len() - 1; i >= 0; i-- {
		if _, err := p.event(i, "pc-001"); err != nil {
			first = err
		}
	}
	return first
}

// FuzzPayload: any bytes are refused or decoded without a panic, and events
// built from the fuzzer's strings come back as they went in.
func FuzzPayload(f *testing.F) {
	evs, attrs := payloadEvents(f)
	b, err := appendPayload(nil, evs, attrs)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b, "file.read", `C:\人事\a.xlsx`, int64(3), uint8(2))
	f.Add([]byte{payloadV1, 1, 1, 0, 0, 0, 0, 0}, "", "", int64(-1), uint8(0))
	f.Fuzz(func(t *testing.T, raw []byte, typ, object string, step int64, n uint8) {
		decodeAll(raw) // must not panic
		if n == 0 || n > 16 {
			return
		}
		t0 := time.Unix(0, 1<<60+step%(1<<40)).UTC()
		var evs []event.Event
		prev := ""
		for i := range int(n) {
			e := event.Event{Agent: "pc-9", Seq: 1 + uint64(i)*uint64(1+step&3), Time: t0.Add(time.Duration(int64(i) * step)),
				Control: "media", Type: typ, Severity: event.Warning, Object: object}
			if i%2 == 1 {
				e.Attrs = event.Attrs{"k": typ, "n": step}
			}
			if err := e.Seal(prev); err != nil {
				return
			}
			prev = e.Hash
			evs = append(evs, e)
		}
		attrs, err := validAttrs(evs)
		if err != nil {
			return // not a valid event: a store never gets it
		}
		_, p := encodeParse(t, evs, attrs)
		for i := range evs {
			got, err := p.event(i, "pc-9")
			if err != nil {
				t.Fatal(fmt.Errorf("event %d: %w", i, err))
			}
			samePayloadEvent(t, i, got, evs[i])
		}
	})
}
