// Package evidence implements Mamori's audit evidence: signed checkpoints of
// the server's Merkle log (RFC 6962, via golang.org/x/mod/sumdb/tlog), the
// export bundle an auditor takes away, and its offline verification.
//
// A checkpoint is a C2SP tlog-checkpoint body — origin line, tree size,
// base64 root hash — signed as a golang.org/x/mod/sumdb/note with the
// server's Ed25519 log key. Each leaf of the log is tlog.RecordHash over the
// 32 raw bytes of an event's hash, so a leaf stays provable after retention
// has removed the event's payload.
//
// A bundle (format mamori-evidence/v2, JSON Lines) is a Header, one Entry
// per leaf and a Trailer holding a Manifest signed with the same key: the
// export's query, checkpoint, counts of events and links, each agent's seq
// range and a SHA-256 over every entry. Proofs show each entry is in the
// log; the manifest shows the bundle holds every entry the server exported,
// in order and of the kind it exported. See README.md.
package evidence

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mamori/mamori/shared/event"
)

// Checkpoint is the state of the log at one size.
type Checkpoint struct {
	Origin string
	Size   int64
	Root   tlog.Hash
}

// Body is the signed text.
func (c Checkpoint) Body() string {
	return fmt.Sprintf("%s\n%d\n%s\n", c.Origin, c.Size, c.Root)
}

// ParseCheckpoint parses a checkpoint body (not the signed note around it).
func ParseCheckpoint(body string) (Checkpoint, error) {
	lines := strings.SplitAfter(body, "\n")
	if len(lines) < 4 || lines[3] != "" && !strings.HasSuffix(body, "\n") {
		return Checkpoint{}, errors.New("evidence: malformed checkpoint: want origin, size, root lines")
	}
	origin := strings.TrimSuffix(lines[0], "\n")
	size, err := strconv.ParseInt(strings.TrimSuffix(lines[1], "\n"), 10, 64)
	if err != nil || size < 0 || origin == "" {
		return Checkpoint{}, errors.New("evidence: malformed checkpoint: bad origin or size")
	}
	root, err := tlog.ParseHash(strings.TrimSuffix(lines[2], "\n"))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("evidence: malformed checkpoint root: %w", err)
	}
	return Checkpoint{Origin: origin, Size: size, Root: root}, nil
}

// Sign returns the signed note of c.
func Sign(c Checkpoint, s note.Signer) ([]byte, error) {
	msg, err := note.Sign(&note.Note{Text: c.Body()}, s)
	if err != nil {
		return nil, fmt.Errorf("evidence: sign checkpoint: %w", err)
	}
	return msg, nil
}

// Open verifies a signed checkpoint with v and parses it. The origin must be
// the key's name, so a note signed by another log is refused too.
func Open(msg []byte, v note.Verifier) (Checkpoint, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("evidence: checkpoint signature: %w", err)
	}
	c, err := ParseCheckpoint(n.Text)
	if err != nil {
		return Checkpoint{}, err
	}
	if c.Origin != v.Name() {
		return Checkpoint{}, fmt.Errorf("evidence: checkpoint origin %q is not the key's name %q", c.Origin, v.Name())
	}
	return c, nil
}

// LeafHash is the Merkle record hash of an event with the given hex hash.
func LeafHash(eventHash string) (tlog.Hash, error) {
	var raw [32]byte
	if len(eventHash) != 64 {
		return tlog.Hash{}, errors.New("evidence: event hash is not 64 hex digits")
	}
	if _, err := hex.Decode(raw[:], []byte(eventHash)); err != nil {
		return tlog.Hash{}, fmt.Errorf("evidence: event hash: %w", err)
	}
	return tlog.RecordHash(raw[:]), nil
}

// LeafHashAt is the Merkle record hash of an event with the given hex hash
// stored at received: tlog.RecordHash over the 32 hash bytes followed by
// received as 8 big-endian bytes of Unix nanoseconds. Servers since bundle
// format v3 use it, so the server's received time, which retention goes by,
// is signed with the checkpoint; the 40-byte record cannot be confused with
// the 32-byte one of LeafHash.
func LeafHashAt(eventHash string, received time.Time) (tlog.Hash, error) {
	var raw [32]byte
	if len(eventHash) != 64 {
		return tlog.Hash{}, errors.New("evidence: event hash is not 64 hex digits")
	}
	if _, err := hex.Decode(raw[:], []byte(eventHash)); err != nil {
		return tlog.Hash{}, fmt.Errorf("evidence: event hash: %w", err)
	}
	return RecordLeaf(raw[:], received.UnixNano()), nil
}

// RecordLeaf is LeafHashAt over the raw event hash and received Unix
// nanoseconds, for the server's writer.
func RecordLeaf(rawHash []byte, receivedNano int64) tlog.Hash {
	var b [40]byte
	copy(b[:32], rawHash)
	binary.BigEndian.PutUint64(b[32:], uint64(receivedNano))
	return tlog.RecordHash(b[:])
}

// MinRetention is the shortest retention a server may clear payloads after:
// Privacy Mark renewal reviews the last two years of records.
const MinRetention = 2 * 365 * 24 * time.Hour

// Retention record vocabulary: the server appends this event (and has it
// signed in a checkpoint) before it clears payloads received before cutoff.
const (
	RetentionControl = "server"
	RetentionType    = "retention.pruned"
)

// RetentionCutoff returns the cutoff a retention.pruned server event
// authorises: events received before it may have had their payload cleared.
// ok is false unless e is such an event, whole (not itself pruned), whose
// "keep" is at least MinRetention and whose "cutoff" is at least keep
// before the event's own time. A pruned event no such record covers was
// cleared by hand.
func RetentionCutoff(e *event.Event) (cutoff time.Time, ok bool) {
	if e.Agent != event.ServerStream || e.Type != RetentionType || e.Control != RetentionControl {
		return time.Time{}, false
	}
	cs, _ := e.Attrs["cutoff"].(string)
	ks, _ := e.Attrs["keep"].(string)
	cutoff, err := time.Parse(time.RFC3339Nano, cs)
	if err != nil {
		return time.Time{}, false
	}
	keep, err := time.ParseDuration(ks)
	if err != nil || keep < MinRetention || cutoff.After(e.Time.Add(-keep)) {
		return time.Time{}, false
	}
	return cutoff, true
}

// KeyFingerprint is the SHA-256 of a log's verifier key as the server
// writes it to log-key.pub (the key and a newline; spaces and line ends
// around it do not count): "sha256:" and 64 hex digits in groups of four,
// to read aloud. `sha256sum log-key.pub` prints the same digits for the
// server's file. Unlike the key's 32-bit ID it covers the whole key.
func KeyFingerprint(vkey string) string {
	sum := sha256.Sum256([]byte(strings.TrimSpace(vkey) + "\n"))
	h := hex.EncodeToString(sum[:])
	var b strings.Builder
	b.WriteString("sha256:")
	for i := 0; i < len(h); i += 4 {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(h[i : i+4])
	}
	return b.String()
}

// KeyID names a verifier key as note keys do, NAME+HASH: the key's name
// and its 32-bit ID (8 hex digits). The ID tells keys apart; only the
// fingerprint (KeyFingerprint) shows a key is the one handed over.
func KeyID(v note.Verifier) string {
	return fmt.Sprintf("%s+%08x", v.Name(), v.KeyHash())
}

// isNote says whether msg parses as a signed note, whoever signed it.
func isNote(msg string) bool {
	_, err := note.Open([]byte(msg), note.VerifierList())
	var unv *note.UnverifiedNoteError
	return errors.As(err, &unv)
}
