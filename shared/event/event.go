// Package event defines the Mamori event, its canonical encoding and the
// per-agent SHA-256 hash chain that links each event to the one before it.
//
// An event's hash is SHA-256 over its canonical encoding with the hash field
// left out; prev holds the hash of the same agent's previous event (empty for
// the first event of a chain). The canonical encoding is JSON with the fields
// in a fixed order, no insignificant white space, attrs keys sorted, numbers
// kept as written and no HTML escaping, so any JSON library can reproduce it.
package event

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Severity says how an event weighs in an audit.
type Severity string

const (
	Info      Severity = "info"
	Warning   Severity = "warning"
	Violation Severity = "violation"
)

// Valid reports whether s is one of the known severities.
func (s Severity) Valid() bool { return s == Info || s == Warning || s == Violation }

// ServerStream is the agent id of the server's own, agent-less event stream
// (admin actions, gaps it detected).
const ServerStream = "server"

// Limits every decoder enforces, on the agent and the server alike.
const (
	MaxIDLen     = 128      // agent, control, register_id
	MaxTypeLen   = 64       // type
	MaxFieldLen  = 4096     // user, process, object
	MaxAttrsLen  = 16 << 10 // attrs, encoded
	MaxEventSize = 32 << 10 // one canonical event
	HashLen      = 64       // hex SHA-256
)

// Attrs holds an event's free-form attributes. Numbers decode as json.Number
// so that re-encoding reproduces the bytes that were hashed.
type Attrs map[string]any

// UnmarshalJSON decodes with UseNumber.
func (a *Attrs) UnmarshalJSON(b []byte) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return err
	}
	*a = m
	return nil
}

// Event is one record of what an agent (or the server) observed or did.
type Event struct {
	Agent      string    `json:"agent"`
	Seq        uint64    `json:"seq"`
	Time       time.Time `json:"time"`
	Control    string    `json:"control"`
	Type       string    `json:"type"`
	Severity   Severity  `json:"severity"`
	User       string    `json:"user,omitempty"`
	Process    string    `json:"process,omitempty"`
	Object     string    `json:"object,omitempty"`
	RegisterID string    `json:"register_id,omitempty"`
	Attrs      Attrs     `json:"attrs,omitempty"`
	Prev       string    `json:"prev"`
	Hash       string    `json:"hash"`

	// head is the event's canonical encoding without its closing brace,
	// and attrs the attrs' part of it, when the decoder that made the event
	// found its text already canonical (SetCanonical): Validate then hashes
	// that text instead of encoding the event again.
	head, attrs string
}

// SetCanonical records that head+"}" is e's canonical encoding and attrs
// (empty without attrs) the attrs' part of it, both text e was decoded
// from, valid UTF-8, and so is every string of e. A decoder that proves
// this while decoding saves Validate the encoding, most of its cost. Set
// nothing when unsure: Validate then encodes e itself. SetCanonical("", "")
// forgets the text; so does Seal. Changing e afterwards without forgetting
// it makes Validate check the old text.
func (e *Event) SetCanonical(head, attrs string) { e.head, e.attrs = head, attrs }

// canonical is Event without Hash, in canonical field order. Time is a string
// so that its form is fixed: RFC 3339 in UTC with nanoseconds trimmed.
type canonical struct {
	Agent      string   `json:"agent"`
	Seq        uint64   `json:"seq"`
	Time       string   `json:"time"`
	Control    string   `json:"control"`
	Type       string   `json:"type"`
	Severity   Severity `json:"severity"`
	User       string   `json:"user,omitempty"`
	Process    string   `json:"process,omitempty"`
	Object     string   `json:"object,omitempty"`
	RegisterID string   `json:"register_id,omitempty"`
	Attrs      Attrs    `json:"attrs,omitempty"`
	Prev       string   `json:"prev"`
}

// TimeFormat is the canonical time layout.
const TimeFormat = time.RFC3339Nano

// Canonical returns the bytes the hash is computed over.
func (e *Event) Canonical() ([]byte, error) {
	b, err := appendCanonical(nil, e)
	if err != nil {
		return nil, fmt.Errorf("event: canonical encoding: %w", err)
	}
	return b, nil
}

// ComputeHash returns the hex SHA-256 of the canonical encoding.
func (e *Event) ComputeHash() (string, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	b, err := appendCanonical((*bp)[:0], e)
	if err != nil {
		return "", fmt.Errorf("event: canonical encoding: %w", err)
	}
	*bp = b
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// Seal sets Prev and Hash: the event becomes the next link after prev.
// Time is truncated to the canonical (UTC) form first.
func (e *Event) Seal(prev string) error {
	e.SetCanonical("", "")
	e.Time = e.Time.UTC()
	e.Prev = prev
	h, err := e.ComputeHash()
	if err != nil {
		return err
	}
	e.Hash = h
	return nil
}

// Errors returned by Validate and VerifyChain; test with errors.Is.
var (
	ErrInvalid    = errors.New("invalid event")
	ErrHash       = errors.New("hash does not match content")
	ErrChain      = errors.New("prev does not match hash of previous event")
	ErrSeq        = errors.New("seq not contiguous")
	ErrWrongAgent = errors.New("event from another agent")
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Validate checks field presence, sizes, UTF-8 and the event's own hash. It
// does not look at the chain; see VerifyChain.
func (e *Event) Validate() error {
	_, err := e.validate(false)
	return err
}

// ValidateAttrs is Validate that also returns the attrs' canonical encoding
// as the hash covered it (nil when the event has none): the bytes a store
// keeps, without encoding them a second time.
func (e *Event) ValidateAttrs() ([]byte, error) {
	return e.validate(true)
}

func (e *Event) validate(keepAttrs bool) ([]byte, error) {
	// With the decoder's canonical text, its strings are known valid UTF-8.
	known := e.head != ""
	if err := checkStr("agent", e.Agent, MaxIDLen, true, known); err != nil {
		return nil, err
	}
	if e.Seq == 0 {
		return nil, invalid("seq must be >= 1")
	}
	if e.Time.IsZero() {
		return nil, invalid("seq %d: time missing", e.Seq)
	}
	for _, f := range []struct {
		name, v string
		max     int
		req     bool
	}{
		{"control", e.Control, MaxIDLen, true},
		{"type", e.Type, MaxTypeLen, true},
		{"user", e.User, MaxFieldLen, false},
		{"process", e.Process, MaxFieldLen, false},
		{"object", e.Object, MaxFieldLen, false},
		{"register_id", e.RegisterID, MaxIDLen, false},
	} {
		if err := checkStr(f.name, f.v, f.max, f.req, known); err != nil {
			return nil, fmt.Errorf("seq %d: %w", e.Seq, err)
		}
	}
	if !e.Severity.Valid() {
		return nil, invalid("seq %d: severity %q not one of info, warning, violation", e.Seq, e.Severity)
	}
	if e.Prev != "" && !isHex(e.Prev) {
		return nil, invalid("seq %d: prev is not a hex SHA-256", e.Seq)
	}
	if e.Attrs != nil && !known {
		if err := checkAttrsUTF8(e.Attrs); err != nil {
			return nil, fmt.Errorf("seq %d: %w", e.Seq, err)
		}
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	var (
		b                 []byte
		attrsAt, attrsLen int
	)
	if known {
		b = append(append((*bp)[:0], e.head...), '}')
		attrsLen = len(e.attrs)
	} else {
		var err error
		if b, attrsAt, attrsLen, err = appendCanonicalAttrs((*bp)[:0], e); err != nil {
			return nil, invalid("seq %d: attrs: %v", e.Seq, err)
		}
	}
	*bp = b
	if attrsLen > MaxAttrsLen {
		return nil, invalid("seq %d: attrs is %d bytes, limit %d", e.Seq, attrsLen, MaxAttrsLen)
	}
	if len(b) > MaxEventSize {
		return nil, invalid("seq %d: event is %d bytes, limit %d", e.Seq, len(b), MaxEventSize)
	}
	sum := sha256.Sum256(b)
	var got [HashLen]byte
	hex.Encode(got[:], sum[:])
	if string(got[:]) != e.Hash { // equal means Hash is well-formed too
		if !isHex(e.Hash) {
			return nil, invalid("seq %d: hash is not a hex SHA-256", e.Seq)
		}
		return nil, fmt.Errorf("seq %d: %w", e.Seq, ErrHash)
	}
	switch {
	case !keepAttrs || attrsLen == 0:
		return nil, nil
	case known:
		return []byte(e.attrs), nil
	}
	return bytes.Clone(b[attrsAt : attrsAt+attrsLen]), nil
}

// checkAttrsUTF8 refuses invalid UTF-8 in attrs keys and strings, which
// the canonical encoding would silently turn into U+FFFD.
func checkAttrsUTF8(a Attrs) error {
	var walk func(v any) error
	walk = func(v any) error {
		switch t := v.(type) {
		case string:
			if !utf8.ValidString(t) {
				return invalid("attrs: invalid UTF-8")
			}
		case map[string]any:
			for k, x := range t {
				if !utf8.ValidString(k) {
					return invalid("attrs: invalid UTF-8 in key")
				}
				if err := walk(x); err != nil {
					return err
				}
			}
		case Attrs:
			return walk(map[string]any(t))
		case []any:
			for _, x := range t {
				if err := walk(x); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(map[string]any(a))
}

// checkStr checks a string field; utf8OK skips its UTF-8 check.
func checkStr(name, v string, max int, required, utf8OK bool) error {
	if required && v == "" {
		return invalid("%s missing", name)
	}
	if len(v) > max {
		return invalid("%s is %d bytes, limit %d", name, len(v), max)
	}
	if !utf8OK && !utf8.ValidString(v) {
		return invalid("%s: invalid UTF-8", name)
	}
	return nil
}

func isHex(s string) bool {
	if len(s) != HashLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !lowerHex[s[i]] {
			return false
		}
	}
	return true
}

var lowerHex = func() (t [256]bool) {
	for _, c := range hexDigits {
		t[c] = true
	}
	return t
}()

// VerifyChain checks that evs are one agent's consecutive events following
// (prevSeq, prevHash), each valid and linked to the one before. prevSeq 0
// with prevHash "" means evs start the chain. It returns the index of the
// first bad event with the error, or -1, nil.
func VerifyChain(agent string, prevSeq uint64, prevHash string, evs []Event) (int, error) {
	for i := range evs {
		e := &evs[i]
		if e.Agent != agent {
			return i, fmt.Errorf("seq %d: %w: %q", e.Seq, ErrWrongAgent, e.Agent)
		}
		if err := e.Validate(); err != nil {
			return i, err
		}
		if e.Seq != prevSeq+1 {
			return i, fmt.Errorf("%w: got seq %d after %d", ErrSeq, e.Seq, prevSeq)
		}
		if e.Prev != prevHash {
			return i, fmt.Errorf("seq %d: %w", e.Seq, ErrChain)
		}
		prevSeq, prevHash = e.Seq, e.Hash
	}
	return -1, nil
}
