package eventlog

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"github.com/mamori/mamori/shared/event"
)

// A payload is the encoding of one record's events: a batch of one agent's
// chain stored as one value instead of a row an event (docs/record-store.md,
// step 1). It keeps every field the hash covers, so each event's canonical
// encoding, and with it its hash, can be rebuilt from it, plus prev and hash
// raw. An offset table lets a reader decode one event without the others.
//
//	version byte (payloadV1)
//	uvarint n, uvarint seq of the first event, varint time of the first (Unix ns)
//	n x uint32 little-endian: each event's start within the bodies
//	bodies, one an event:
//	  uvarint seq - first seq, varint time - first time,
//	  control, type, severity, user, process, object, register id, attrs:
//	    each uvarint length + bytes (attrs: their canonical JSON, empty if none),
//	  prev: 0 none, 1 the previous event's hash, 2 then 32 bytes,
//	  hash: 32 bytes
//
// Prev is almost always the previous event's hash (a batch is a chain), so
// it costs one byte. Agent, log index and commit time belong to the record.
const payloadV1 = 1

const (
	prevNone = iota
	prevChained
	prevRaw
)

// payloadStrings is how many length-prefixed fields a body holds.
const payloadStrings = 8

var errPayload = errors.New("eventlog: corrupt record payload")

// appendPayload appends the payload of evs to b. attrs[i] is the canonical
// JSON of evs[i]'s attrs as validation produced it (nil if none), so they
// are stored as the hash covered them and not encoded again. The events are
// expected validated: seqs increasing, hashes and prevs hex SHA-256.
func appendPayload(b []byte, evs []event.Event, attrs [][]byte) ([]byte, error) {
	if len(evs) == 0 || len(attrs) != len(evs) {
		return nil, fmt.Errorf("eventlog: payload of %d events with %d attrs", len(evs), len(attrs))
	}
	seq0, t0 := evs[0].Seq, evs[0].Time.UnixNano()
	b = append(b, payloadV1)
	b = binary.AppendUvarint(b, uint64(len(evs)))
	b = binary.AppendUvarint(b, seq0)
	b = binary.AppendVarint(b, t0)
	offs := len(b)
	b = append(b, make([]byte, 4*len(evs))...)
	bodies := len(b)
	for i := range evs {
		e := &evs[i]
		if i > 0 && e.Seq <= evs[i-1].Seq {
			return nil, fmt.Errorf("eventlog: payload: seq %d after %d", e.Seq, evs[i-1].Seq)
		}
		at := len(b) - bodies
		if at > math.MaxUint32 {
			return nil, fmt.Errorf("eventlog: payload over 4 GiB")
		}
		binary.LittleEndian.PutUint32(b[offs+4*i:], uint32(at))
		b = binary.AppendUvarint(b, e.Seq-seq0)
		b = binary.AppendVarint(b, e.Time.UnixNano()-t0)
		for _, s := range [payloadStrings - 1]string{e.Control, e.Type, string(e.Severity), e.User, e.Process, e.Object, e.RegisterID} {
			b = binary.AppendUvarint(b, uint64(len(s)))
			b = append(b, s...)
		}
		b = binary.AppendUvarint(b, uint64(len(attrs[i])))
		b = append(b, attrs[i]...)
		var err error
		switch {
		case e.Prev == "":
			b = append(b, prevNone)
		case i > 0 && e.Prev == evs[i-1].Hash:
			b = append(b, prevChained)
		default:
			b = append(b, prevRaw)
			if b, err = appendHash(b, e.Prev); err != nil {
				return nil, fmt.Errorf("eventlog: payload: seq %d prev: %w", e.Seq, err)
			}
		}
		if b, err = appendHash(b, e.Hash); err != nil {
			return nil, fmt.Errorf("eventlog: payload: seq %d hash: %w", e.Seq, err)
		}
	}
	return b, nil
}

// appendHash appends the 32 bytes of a hex SHA-256.
func appendHash(b []byte, h string) ([]byte, error) {
	if len(h) != 64 {
		return nil, fmt.Errorf("%d hex digits, want 64", len(h))
	}
	n := len(b)
	b = append(b, make([]byte, 32)...)
	if _, err := hex.Decode(b[n:], []byte(h)); err != nil {
		return nil, err
	}
	return b, nil
}

// payload is a parsed payload: its header and offset table checked, its
// bodies decoded one at a time by event.
type payload struct {
	seq0   uint64
	t0     int64
	offs   []byte // n x uint32
	bodies []byte
}

// parsePayload checks b's header and offset table. The bodies are checked
// as they are decoded: a corrupt payload is an error, never a panic.
func parsePayload(b []byte) (payload, error) {
	if len(b) == 0 || b[0] != payloadV1 {
		return payload{}, fmt.Errorf("%w: not version %d", errPayload, payloadV1)
	}
	r := b[1:]
	n, k := binary.Uvarint(r)
	if k <= 0 || n == 0 || n > uint64(len(r))/4 {
		return payload{}, fmt.Errorf("%w: event count", errPayload)
	}
	r = r[k:]
	var p payload
	if p.seq0, k = binary.Uvarint(r); k <= 0 || p.seq0 == 0 {
		return payload{}, fmt.Errorf("%w: first seq", errPayload)
	}
	r = r[k:]
	if p.t0, k = binary.Varint(r); k <= 0 {
		return payload{}, fmt.Errorf("%w: first time", errPayload)
	}
	r = r[k:]
	if uint64(len(r)) < 4*n {
		return payload{}, fmt.Errorf("%w: offset table cut short", errPayload)
	}
	p.offs, p.bodies = r[:4*n], r[4*n:]
	// Offsets increase and each body has room for its hash, so a body's
	// end is the next one's start and a chained prev is the 32 bytes
	// before it.
	last := -1
	for i := range int(n) {
		at := int64(binary.LittleEndian.Uint32(p.offs[4*i:]))
		if (i == 0 && at != 0) || at <= int64(last) || at+33 > int64(len(p.bodies)) {
			return payload{}, fmt.Errorf("%w: offset of event %d", errPayload, i)
		}
		if i > 0 && at-int64(last) < 33 {
			return payload{}, fmt.Errorf("%w: event %d too short", errPayload, i-1)
		}
		last = int(at)
	}
	return p, nil
}

// len is the number of events.
func (p payload) len() int { return len(p.offs) / 4 }

// body returns event i's bytes.
func (p payload) body(i int) []byte {
	end := len(p.bodies)
	if i+1 < p.len() {
		end = int(binary.LittleEndian.Uint32(p.offs[4*(i+1):]))
	}
	return p.bodies[binary.LittleEndian.Uint32(p.offs[4*i:]):end]
}

// timeAt decodes only event i's time; false if that fails (raw reports
// why).
func (p payload) timeAt(i int) (int64, bool) {
	b := p.body(i)
	if _, k := binary.Uvarint(b); k > 0 {
		dt, m := binary.Varint(b[k:])
		if m > 0 && !((dt > 0 && p.t0 > math.MaxInt64-dt) || (dt < 0 && p.t0 < math.MinInt64-dt)) {
			return p.t0 + dt, true
		}
	}
	return 0, false
}

// field returns event i's string field f (fControl..fAttrs) without
// decoding or checking the others; false if that fails (raw reports why).
func (p payload) field(i, f int) ([]byte, bool) {
	b := p.body(i)
	for k := 0; k < 2; k++ { // seq and time deltas
		_, n := binary.Varint(b) // a uvarint has a varint's extent
		if n <= 0 {
			return nil, false
		}
		b = b[n:]
	}
	for ; ; f-- {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, false
		}
		if f == 0 {
			return b[k : k+int(n)], true
		}
		b = b[k+int(n):]
	}
}

// keyFields returns event i's user, object and register id without
// decoding or checking the other fields (raw's UTF-8 checks of every field
// were half of the indexer's reading of the log); false if they do not
// read. Keys are hints that readers check against the event.
func (p payload) keyFields(i int) (f [3][]byte, ok bool) {
	b := p.body(i)
	for k := 0; k < 2; k++ { // seq and time deltas
		_, n := binary.Varint(b)
		if n <= 0 {
			return f, false
		}
		b = b[n:]
	}
	for fld := 0; fld <= fRegisterID; fld++ {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return f, false
		}
		switch v := b[k : k+int(n)]; fld {
		case fUser:
			f[0] = v
		case fObject:
			f[1] = v
		case fRegisterID:
			f[2] = v
		}
		b = b[k+int(n):]
	}
	return f, true
}

// rawEvent is one event of a payload with its fields as stored: strings
// and attrs as bytes of the payload, prev and hash 32 bytes (prev nil for
// none).
type rawEvent struct {
	seq        uint64
	time       int64 // Unix ns
	str        [payloadStrings][]byte
	prev, hash []byte
}

// Indexes into rawEvent.str.
const (
	fControl = iota
	fType
	fSeverity
	fUser
	fProcess
	fObject
	fRegisterID
	fAttrs
)

// raw decodes event i's fields without copying them.
func (p payload) raw(i int) (rawEvent, error) {
	var r rawEvent
	if i < 0 || i >= p.len() {
		return r, fmt.Errorf("eventlog: payload has no event %d", i)
	}
	b := p.body(i)
	bad := func(what string) (rawEvent, error) {
		return rawEvent{}, fmt.Errorf("%w: event %d: %s", errPayload, i, what)
	}
	d, k := binary.Uvarint(b)
	if k <= 0 || d > math.MaxUint64-p.seq0 || (i > 0 && d == 0) {
		return bad("seq")
	}
	r.seq, b = p.seq0+d, b[k:]
	dt, k := binary.Varint(b)
	if k <= 0 || (dt > 0 && p.t0 > math.MaxInt64-dt) || (dt < 0 && p.t0 < math.MinInt64-dt) {
		return bad("time")
	}
	r.time, b = p.t0+dt, b[k:]
	for f := range r.str {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return bad("field length")
		}
		r.str[f], b = b[k:k+int(n)], b[k+int(n):]
		if f != fAttrs && !utf8.Valid(r.str[f]) {
			return bad("field not UTF-8")
		}
	}
	if len(b) == 0 {
		return bad("prev")
	}
	switch tag := b[0]; {
	case tag == prevNone && len(b) == 33:
	case tag == prevChained && i > 0 && len(b) == 33:
		prev := p.body(i - 1)
		r.prev = prev[len(prev)-32:]
	case tag == prevRaw && len(b) == 65:
		r.prev = b[1:33]
	default:
		return bad("prev and hash")
	}
	r.hash = b[len(b)-32:]
	return r, nil
}

// event decodes event i of the record of agent.
func (p payload) event(i int, agent string) (event.Event, error) {
	r, err := p.raw(i)
	if err != nil {
		return event.Event{}, err
	}
	s := &r.str
	e := event.Event{Agent: agent, Seq: r.seq, Time: time.Unix(0, r.time).UTC(),
		Control: string(s[fControl]), Type: string(s[fType]), Severity: event.Severity(s[fSeverity]),
		User: string(s[fUser]), Process: string(s[fProcess]), Object: string(s[fObject]), RegisterID: string(s[fRegisterID]),
		Hash: hex.EncodeToString(r.hash)}
	if len(s[fAttrs]) > 0 {
		if err := json.Unmarshal(s[fAttrs], &e.Attrs); err != nil {
			return event.Event{}, fmt.Errorf("%w: event %d: attrs: %w", errPayload, i, err)
		}
	}
	if r.prev != nil {
		e.Prev = hex.EncodeToString(r.prev)
	}
	return e, nil
}

// prunedPayload returns p with the payload fields of its events cleared
// (retention.go), but those keep names and those already cleared, and how
// many it cleared. Seq, time, prev and hash stay, so chains and the
// Merkle log still verify.
func prunedPayload(p payload, keep func(*rawEvent) bool) ([]byte, int, error) {
	n := p.len()
	evs, attrs := make([]event.Event, n), make([][]byte, n)
	cleared := 0
	for i := range n {
		r, err := p.raw(i)
		if err != nil {
			return nil, 0, err
		}
		e := &evs[i]
		e.Seq, e.Time, e.Hash = r.seq, time.Unix(0, r.time), hex.EncodeToString(r.hash)
		if r.prev != nil {
			e.Prev = hex.EncodeToString(r.prev)
		}
		if len(r.str[fControl]) > 0 && !keep(&r) {
			cleared++
			continue
		}
		s := &r.str
		e.Control, e.Type, e.Severity = string(s[fControl]), string(s[fType]), event.Severity(s[fSeverity])
		e.User, e.Process, e.Object, e.RegisterID = string(s[fUser]), string(s[fProcess]), string(s[fObject]), string(s[fRegisterID])
		if len(s[fAttrs]) > 0 {
			attrs[i] = s[fAttrs]
		}
	}
	b, err := appendPayload(nil, evs, attrs)
	return b, cleared, err
}
