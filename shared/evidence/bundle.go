package evidence

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mamori/mamori/shared/event"
)

// Format names version 3 of the bundle: JSON Lines, a Header line, one Entry
// line per log leaf in ascending log index, then a Trailer line holding the
// signed Manifest. Version 3 adds each entry's received time, which the
// leaf commits to (LeafHashAt), and marks entries whose payload retention
// cleared, so Verify can hold each to a signed retention record. Version 2
// bundles (leaves of the event hash alone) still verify. Version 1 had no
// manifest and is refused (FormatV1).
const Format = "mamori-evidence/v3"

// FormatV2 is the format before received times were signed.
const FormatV2 = "mamori-evidence/v2"

// FormatV1 is the format before the manifest: a bundle missing its first or
// last entries still verified, so Verify refuses it.
const FormatV1 = "mamori-evidence/v1"

// Header is the bundle's first line. It is not signed itself: the manifest
// repeats what verification relies on, and Verify compares the two.
type Header struct {
	Format     string    `json:"format"`
	Origin     string    `json:"origin"`
	PublicKey  string    `json:"public_key"` // note verifier key of the log
	Checkpoint string    `json:"checkpoint"` // signed; every proof is against this tree
	Created    time.Time `json:"created"`
	// Query is the export's filter, as the server received it.
	Query map[string]string `json:"query,omitempty"`
	// Older holds earlier signed checkpoints, each with a consistency proof to
	// Checkpoint, so an auditor holding one of them can tell the log only grew.
	Older []Older `json:"older,omitempty"`
}

// Older is an earlier checkpoint and the proof that Checkpoint extends it.
type Older struct {
	Checkpoint string      `json:"checkpoint"`
	Proof      []tlog.Hash `json:"proof"`
}

// Entry is one leaf of the log: a full event, or only its chain link when
// the event did not match the export's filter or retention removed its
// payload. Links keep each agent's chain provably unbroken in the bundle.
type Entry struct {
	Index int64        `json:"index"`
	Event *event.Event `json:"event,omitempty"`
	Link  *Link        `json:"link,omitempty"`
	// Received is when the server stored the event; the leaf commits to it
	// (LeafHashAt). Absent for leaves written before format v3 (LeafHash).
	Received *time.Time `json:"received,omitempty"`
	// Pruned marks a link whose event's payload retention cleared: it must
	// have been received before the cutoff of a retention record in the
	// bundle (RetentionCutoff).
	Pruned bool        `json:"pruned,omitempty"`
	Proof  []tlog.Hash `json:"proof"`
}

// Trailer is the bundle's last line: the Manifest as a signed note.
type Trailer struct {
	Manifest string `json:"manifest"`
}

// trailerPrefix starts the trailer line as Writer writes it; entries start
// with "index", so the two cannot be confused.
var trailerPrefix = []byte(`{"manifest":`)

// Link is an event reduced to its place in its agent's chain.
type Link struct {
	Agent string `json:"agent"`
	Seq   uint64 `json:"seq"`
	Prev  string `json:"prev"`
	Hash  string `json:"hash"`
}

// LinkOf reduces e to its link.
func LinkOf(e *event.Event) *Link {
	return &Link{Agent: e.Agent, Seq: e.Seq, Prev: e.Prev, Hash: e.Hash}
}

// Writer writes a bundle and, on Close, its signed manifest.
type Writer struct {
	bw     *bufio.Writer
	enc    *json.Encoder
	signer note.Signer
	m      Manifest
	digest *entryDigest
	closed bool
}

// NewWriter writes h and returns a Writer for the entries; Close signs the
// manifest with s, the log key that signed h.Checkpoint.
func NewWriter(w io.Writer, h Header, s note.Signer) (*Writer, error) {
	h.Format = Format
	cp, err := checkpointOfNote(h.Checkpoint)
	if err != nil {
		return nil, fmt.Errorf("evidence: header: %w", err)
	}
	m := Manifest{Origin: h.Origin, Size: cp.Size, Root: cp.Root, Created: h.Created, Query: h.Query,
		Agents: map[string]AgentRange{}}
	for i, o := range h.Older {
		oc, err := checkpointOfNote(o.Checkpoint)
		if err != nil {
			return nil, fmt.Errorf("evidence: header: older checkpoint %d: %w", i, err)
		}
		m.Older = append(m.Older, oc.Size)
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&h); err != nil {
		return nil, fmt.Errorf("evidence: write header: %w", err)
	}
	return &Writer{bw: bw, enc: enc, signer: s, m: m, digest: newEntryDigest()}, nil
}

// Add writes one entry.
func (w *Writer) Add(e *Entry) error {
	var l *Link
	switch {
	case e.Event != nil && e.Link == nil:
		l = LinkOf(e.Event)
		w.m.Events++
	case e.Link != nil && e.Event == nil:
		l = e.Link
		w.m.Links++
	default:
		return fmt.Errorf("evidence: entry %d must hold exactly one of event, link", e.Index)
	}
	if err := w.enc.Encode(e); err != nil {
		return fmt.Errorf("evidence: write entry %d: %w", e.Index, err)
	}
	if e.Pruned && e.Link == nil {
		return fmt.Errorf("evidence: entry %d: a pruned entry must be a link", e.Index)
	}
	w.digest.add(e.Index, e.Link != nil, e.Pruned, l)
	r, ok := w.m.Agents[l.Agent]
	if !ok {
		r.First = l.Seq
	}
	r.Last = l.Seq
	r.Entries++
	w.m.Agents[l.Agent] = r
	return nil
}

// Close signs the manifest of what was added, writes it as the last line
// and flushes. A bundle without it does not verify.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	w.m.Digest = w.digest.sum()
	msg, err := SignManifest(&w.m, w.signer)
	if err != nil {
		return err
	}
	if err := w.enc.Encode(Trailer{Manifest: string(msg)}); err != nil {
		return fmt.Errorf("evidence: write manifest: %w", err)
	}
	return w.bw.Flush()
}

// Problem is one verification failure, located in the bundle.
type Problem struct {
	Line  int         `json:"line"` // 1-based line of the bundle; 0 for the auditor's own checkpoint
	Index int64       `json:"index,omitempty"`
	Agent string      `json:"agent,omitempty"`
	Seq   uint64      `json:"seq,omitempty"`
	Kind  ProblemKind `json:"kind"`
	Msg   string      `json:"msg"` // English detail
}

func (p Problem) String() string {
	if p.Line == 0 { // the auditor's own checkpoint, which Msg names
		return p.Msg
	}
	s := fmt.Sprintf("line %d", p.Line)
	if p.Agent != "" {
		s += fmt.Sprintf(" (log index %d, agent %s, seq %d)", p.Index, p.Agent, p.Seq)
	}
	return s + ": " + p.Msg
}

// ProblemKind names what a Problem found, so a report can say it in the
// reader's language while Msg keeps the exact English detail.
type ProblemKind string

const (
	ProblemKey              ProblemKind = "key"                // the header names another public key
	ProblemCheckpoint       ProblemKind = "checkpoint"         // the checkpoint's signature does not hold
	ProblemOlderCheckpoint  ProblemKind = "older-checkpoint"   // an older checkpoint in the header does not hold
	ProblemYourCheckpoint   ProblemKind = "your-checkpoint"    // the auditor's checkpoint cannot be read or is newer
	ProblemNoProof          ProblemKind = "no-proof"           // no consistency proof from the auditor's checkpoint
	ProblemRewritten        ProblemKind = "log-rewritten"      // the log does not extend the auditor's checkpoint
	ProblemUnreadable       ProblemKind = "unreadable"         // a line is not an entry or manifest
	ProblemJoined           ProblemKind = "joined"             // a second manifest
	ProblemAppended         ProblemKind = "appended"           // lines after the manifest
	ProblemContent          ProblemKind = "content"            // an event's content does not match its hash
	ProblemEntryShape       ProblemKind = "entry-shape"        // an entry that is neither an event nor a link
	ProblemOrder            ProblemKind = "order"              // log indexes or seqs out of order or repeated
	ProblemNotInLog         ProblemKind = "not-in-log"         // the inclusion proof does not hold
	ProblemPrunedShape      ProblemKind = "pruned-shape"       // a pruned entry without link or received time
	ProblemMissing          ProblemKind = "missing"            // a seq gap: events left out
	ProblemChain            ProblemKind = "chain"              // prev is not the hash before it
	ProblemClearedByHand    ProblemKind = "cleared-by-hand"    // content cleared without a retention record
	ProblemCutShort         ProblemKind = "cut-short"          // no manifest at the end
	ProblemManifestSigned   ProblemKind = "manifest-signature" // the manifest's signature does not hold
	ProblemManifestMismatch ProblemKind = "manifest-mismatch"  // header or entries differ from the signed manifest
	// ProblemRolledBack is the caller's to report: a witness kept a larger
	// log before the bundle was made.
	ProblemRolledBack ProblemKind = "rolled-back"
)

// ProblemKinds lists every kind of problem.
var ProblemKinds = []ProblemKind{
	ProblemKey, ProblemCheckpoint, ProblemOlderCheckpoint, ProblemYourCheckpoint, ProblemNoProof,
	ProblemRewritten, ProblemUnreadable, ProblemJoined, ProblemAppended, ProblemContent,
	ProblemEntryShape, ProblemOrder, ProblemNotInLog, ProblemPrunedShape, ProblemMissing, ProblemChain,
	ProblemClearedByHand, ProblemCutShort, ProblemManifestSigned, ProblemManifestMismatch, ProblemRolledBack,
}

// Report is the outcome of Verify.
type Report struct {
	Checkpoint Checkpoint
	Manifest   *Manifest // the server's signed statement; nil if absent or invalid
	Events     int       // full events verified
	Links      int       // link-only entries verified
	Agents     map[string]*AgentRange
	Problems   []Problem
	Truncated  int // problems beyond MaxProblems, not listed
	// EventsFrom and EventsTo are the earliest and latest time (the
	// agent's) of the events held in full whose content verified; zero
	// when there are none.
	EventsFrom, EventsTo time.Time
}

// AgentRange is what the bundle proves about one agent's chain.
type AgentRange struct {
	First, Last uint64
	Entries     int
}

// OK reports whether everything held.
func (r *Report) OK() bool { return len(r.Problems) == 0 && r.Truncated == 0 }

// MaxProblems bounds the list in a Report.
const MaxProblems = 1000

// MaxLine bounds one bundle line.
const MaxLine = 1 << 20

// VerifyOptions are optional checks.
type VerifyOptions struct {
	// Old is a signed checkpoint the auditor kept from an earlier export; the
	// bundle must prove that its checkpoint extends it.
	Old []byte
}

// ErrNotBundle is Verify's error for a file that is no bundle at all:
// empty, the server's error reply saved in its place, a web page. There is
// nothing to check, which is not the same as evidence that fails checking.
var ErrNotBundle = errors.New("evidence: not an evidence bundle")

// bom is the UTF-8 byte order mark Notepad puts at the start of a file.
var bom = []byte("\xef\xbb\xbf")

// notBundle says what a first line that is not a header is, when it is
// plainly something else; nil when it may be a damaged header.
func notBundle(line []byte) *NotBundleError {
	line = bytes.TrimSpace(bytes.TrimPrefix(line, bom))
	switch {
	case bytes.HasPrefix(line, []byte("\x1f\x8b")), bytes.HasPrefix(line, []byte("PK\x03\x04")):
		return &NotBundleError{Reason: NotBundleArchive, Archive: archiveName(line)}
	case bytes.IndexByte(line, 0) >= 0 || !utf8.Valid(line):
		return &NotBundleError{Reason: NotBundleBinary}
	case bytes.HasPrefix(line, []byte("<")):
		return &NotBundleError{Reason: NotBundleHTML}
	case !bytes.HasPrefix(line, []byte("{")) && bytes.Count(line, []byte(",")) >= 2:
		return &NotBundleError{Reason: NotBundleCSV}
	case !bytes.HasPrefix(line, []byte("{")):
		return &NotBundleError{Reason: NotBundleText}
	}
	if bytes.Equal(line, []byte("{")) {
		// JSON over several lines (pretty-printed): a bundle's header
		// is one line.
		return &NotBundleError{Reason: NotBundleJSON}
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(line, &fields) != nil {
		return nil
	}
	if _, ok := fields["format"]; ok {
		return nil // a header, damaged or of an unknown format
	}
	var reply struct {
		Error *string `json:"error"`
	}
	if json.Unmarshal(line, &reply) == nil && reply.Error != nil {
		return &NotBundleError{Reason: NotBundleReply, Reply: *reply.Error}
	}
	_, size := fields["size"]
	_, root := fields["root"]
	_, cp := fields["checkpoint"]
	if size && root && cp {
		return &NotBundleError{Reason: NotBundleCheckpoint}
	}
	return &NotBundleError{Reason: NotBundleJSON}
}

// Verify checks a bundle offline against the log's public key: the
// checkpoint's signature, each entry's content hash and inclusion proof,
// each agent's seq and hash chain across the bundle, the consistency of
// older checkpoints, the signed manifest against the header and every entry
// (so no line can be dropped, added, reordered or re-typed), and optionally
// that the log only grew since opt.Old. The error is for a bundle that cannot
// be read at all; content failures are Problems in the Report.
func Verify(r io.Reader, v note.Verifier, opt VerifyOptions) (*Report, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), MaxLine)
	rep := &Report{Agents: map[string]*AgentRange{}}
	add := func(p Problem) {
		if len(rep.Problems) < MaxProblems {
			rep.Problems = append(rep.Problems, p)
		} else {
			rep.Truncated++
		}
	}
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("evidence: read header: %w", err)
		}
		return nil, &NotBundleError{Reason: NotBundleEmpty}
	}
	var h Header
	// A BOM (Notepad) is not part of the header, which is not signed
	// itself: the manifest repeats what counts.
	first := bytes.TrimPrefix(sc.Bytes(), bom)
	if err := strictDecode(first, &h); err != nil || h.Format == "" {
		if nb := notBundle(first); nb != nil {
			return nil, nb
		}
		if err != nil {
			return nil, fmt.Errorf("evidence: header (line 1): %w", err)
		}
	}
	switch h.Format {
	case Format, FormatV2:
	case FormatV1:
		return nil, fmt.Errorf("evidence: header (line 1): format %q has no signed manifest, so entries removed from its start or end cannot be detected; export the bundle again from a current server (format %q)", h.Format, Format)
	default:
		return nil, fmt.Errorf("evidence: header (line 1): format %q, want %q", h.Format, Format)
	}
	if hv, err := note.NewVerifier(h.PublicKey); err != nil {
		add(Problem{Line: 1, Kind: ProblemKey, Msg: fmt.Sprintf("bundle names public key %q, which is not a key (the key given is %s)", h.PublicKey, KeyID(v))})
	} else if hv.Name() != v.Name() || hv.KeyHash() != v.KeyHash() {
		add(Problem{Line: 1, Kind: ProblemKey, Msg: fmt.Sprintf("the bundle names the key %s, the key given is %s: a bundle of another log, or the wrong key file", KeyID(hv), KeyID(v))})
	}
	cp, err := Open([]byte(h.Checkpoint), v)
	if err != nil {
		msg := "checkpoint: " + err.Error()
		if !isNote(h.Checkpoint) {
			msg = "the bundle's signed checkpoint is missing or damaged: " + err.Error()
		}
		add(Problem{Line: 1, Kind: ProblemCheckpoint, Msg: msg})
		return rep, nil // nothing below can be trusted without it
	}
	rep.Checkpoint = cp

	olderBySize := map[int64]tlog.Hash{}
	var olderSizes []int64
	failedProof := map[int64]bool{} // said once, as the older checkpoint's problem
	for i, o := range h.Older {
		oc, err := Open([]byte(o.Checkpoint), v)
		if err != nil {
			add(Problem{Line: 1, Kind: ProblemOlderCheckpoint, Msg: fmt.Sprintf("older checkpoint %d: %v", i, err)})
			continue
		}
		olderSizes = append(olderSizes, oc.Size)
		if oc.Size > cp.Size {
			add(Problem{Line: 1, Kind: ProblemOlderCheckpoint, Msg: fmt.Sprintf("older checkpoint %d has size %d > %d", i, oc.Size, cp.Size)})
			continue
		}
		if err := tlog.CheckTree(o.Proof, cp.Size, cp.Root, oc.Size, oc.Root); err != nil {
			add(Problem{Line: 1, Kind: ProblemOlderCheckpoint, Msg: fmt.Sprintf("older checkpoint at size %d: log is not an extension of it: %v", oc.Size, err)})
			failedProof[oc.Size] = true
			continue
		}
		olderBySize[oc.Size] = oc.Root
	}
	if opt.Old != nil {
		oc, err := Open(opt.Old, v)
		switch {
		case err != nil:
			add(Problem{Kind: ProblemYourCheckpoint, Msg: "your checkpoint: " + err.Error()})
		case oc.Size > cp.Size:
			add(Problem{Kind: ProblemYourCheckpoint, Msg: fmt.Sprintf("your checkpoint (size %d) is larger than the bundle's log (size %d): the log was rolled back after you kept it, unless the bundle was made before (compare its manifest's time with when you kept the checkpoint)", oc.Size, cp.Size)})
		case oc.Size == cp.Size:
			if oc.Root != cp.Root {
				add(Problem{Kind: ProblemRewritten, Msg: fmt.Sprintf("log rewritten: your checkpoint at size %d has root %s, the bundle's has %s", oc.Size, oc.Root, cp.Root)})
			}
		default:
			root, ok := olderBySize[oc.Size]
			switch {
			case !ok && failedProof[oc.Size]:
			case !ok:
				add(Problem{Kind: ProblemNoProof, Msg: fmt.Sprintf("bundle holds no consistency proof from size %d (export again with since=%d)", oc.Size, oc.Size)})
			case root != oc.Root:
				add(Problem{Kind: ProblemRewritten, Msg: fmt.Sprintf("log rewritten: your checkpoint at size %d has root %s, the server now proves root %s", oc.Size, oc.Root, root)})
			}
		}
	}

	type head struct {
		seq  uint64
		hash string
	}
	var (
		heads         = map[string]head{}
		gapRecords    = map[gapKey]int64{} // the server.gap records in the bundle, by agent and last missing seq
		lastIndex     = int64(-1)
		digest        = newEntryDigest()
		events, links int    // entries of each kind, valid or not, for the manifest
		trailer       []byte // the manifest's note
		trailerLine   int
		line          = 1
		pruned        []prunedEntry
		cutoff        time.Time // latest retention cutoff in the bundle
		haveCutoff    bool
		blanks        []int // blank lines not yet followed by another line
		lastLine      = 1   // the last line that is not blank
	)
	for sc.Scan() {
		line++
		// Blank lines at the end are an editor's or a mail's doing; one
		// followed by more lines is reported with them.
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			blanks = append(blanks, line)
			continue
		}
		for _, b := range blanks {
			if trailer != nil {
				add(Problem{Line: b, Kind: ProblemAppended, Msg: fmt.Sprintf("line after the manifest (line %d): lines were appended", trailerLine)})
			}
			add(Problem{Line: b, Kind: ProblemUnreadable, Msg: "blank line between entries"})
		}
		blanks, lastLine = blanks[:0], line
		if bytes.HasPrefix(sc.Bytes(), trailerPrefix) {
			var t Trailer
			switch err := strictDecode(sc.Bytes(), &t); {
			case err != nil:
				add(Problem{Line: line, Kind: ProblemUnreadable, Msg: "unreadable manifest: " + err.Error()})
			case trailer != nil:
				add(Problem{Line: line, Kind: ProblemJoined, Msg: fmt.Sprintf("a second manifest (the first is on line %d): bundles were joined", trailerLine)})
			default:
				trailer, trailerLine = []byte(t.Manifest), line
			}
			continue
		}
		if trailer != nil {
			add(Problem{Line: line, Kind: ProblemAppended, Msg: fmt.Sprintf("entry after the manifest (line %d): lines were appended", trailerLine)})
		}
		var en Entry
		if err := strictDecode(sc.Bytes(), &en); err != nil {
			add(Problem{Line: line, Kind: ProblemUnreadable, Msg: "unreadable entry: " + err.Error()})
			continue
		}
		var l Link
		switch {
		case en.Event != nil && en.Link == nil:
			l = *LinkOf(en.Event)
			events++
			if err := en.Event.Validate(); err != nil {
				// Its stated hash still places it in the log and the chain,
				// so only this problem is reported for it.
				add(Problem{Line: line, Index: en.Index, Agent: l.Agent, Seq: l.Seq, Kind: ProblemContent, Msg: "event content: " + err.Error()})
			} else {
				rep.Events++
				if t := en.Event.Time; rep.EventsFrom.IsZero() || t.Before(rep.EventsFrom) {
					rep.EventsFrom = t
				}
				if t := en.Event.Time; t.After(rep.EventsTo) {
					rep.EventsTo = t
				}
			}
		case en.Link != nil && en.Event == nil:
			l = *en.Link
			links++
			rep.Links++
		default:
			add(Problem{Line: line, Index: en.Index, Kind: ProblemEntryShape, Msg: "entry must hold exactly one of event, link"})
			continue
		}
		digest.add(en.Index, en.Link != nil, en.Pruned, &l)
		p := Problem{Line: line, Index: en.Index, Agent: l.Agent, Seq: l.Seq}
		if en.Index <= lastIndex {
			p.Kind, p.Msg = ProblemOrder, fmt.Sprintf("log index %d out of order (after %d): entries reordered or repeated", en.Index, lastIndex)
			add(p)
		}
		lastIndex = max(lastIndex, en.Index)
		leaf, err := LeafHash(l.Hash)
		if en.Received != nil {
			leaf, err = LeafHashAt(l.Hash, *en.Received)
		}
		if err == nil {
			err = tlog.CheckRecord(en.Proof, cp.Size, cp.Root, en.Index, leaf)
		}
		if err != nil {
			p.Kind, p.Msg = ProblemNotInLog, fmt.Sprintf("not in the signed log at index %d: %v", en.Index, err)
			add(p)
		}
		switch {
		case en.Pruned && (en.Link == nil || en.Received == nil):
			p.Kind, p.Msg = ProblemPrunedShape, "an entry marked pruned must be a link with its received time"
			add(p)
		case en.Pruned:
			pruned = append(pruned, prunedEntry{p, *en.Received})
		case en.Event != nil && p.Msg == "":
			if c, ok := RetentionCutoff(en.Event); ok && en.Event.Validate() == nil && (!haveCutoff || c.After(cutoff)) {
				cutoff, haveCutoff = c, true
			}
		}
		if e := en.Event; e != nil && e.Agent == event.ServerStream && e.Type == gapType {
			a, _ := e.Attrs["agent"].(string)
			gapRecords[gapKey{a, fmt.Sprint(e.Attrs["to_seq"])}] = en.Index
		}
		hd, seen := heads[l.Agent]
		if seen {
			switch {
			case l.Seq <= hd.seq:
				p.Kind, p.Msg = ProblemOrder, fmt.Sprintf("seq %d after %d: events reordered or repeated", l.Seq, hd.seq)
				add(p)
			case l.Seq != hd.seq+1:
				p.Kind, p.Msg = ProblemMissing, fmt.Sprintf("seq jumps from %d to %d: %d event(s) missing from the bundle", hd.seq, l.Seq, l.Seq-hd.seq-1)
				add(p)
			case l.Prev != hd.hash:
				p.Kind, p.Msg = ProblemChain, fmt.Sprintf("prev does not match the hash of seq %d: chain broken", hd.seq)
				add(p)
			}
		}
		heads[l.Agent] = head{l.Seq, l.Hash}
		ar := rep.Agents[l.Agent]
		if ar == nil {
			ar = &AgentRange{First: l.Seq}
			rep.Agents[l.Agent] = ar
		}
		ar.Last = l.Seq
		ar.Entries++
	}
	if err := sc.Err(); err != nil {
		return rep, fmt.Errorf("evidence: read bundle: %w", err)
	}
	// Each cleared payload needs a signed retention record whose cutoff
	// is after the event was received; else it was cleared by hand.
	for _, pe := range pruned {
		p := pe.p
		if !haveCutoff {
			p.Kind, p.Msg = ProblemClearedByHand, "the event's content was cleared, but the bundle holds no retention record (retention.pruned) allowing it: cleared by hand"
			add(p)
		} else if !pe.received.Before(cutoff) {
			p.Kind, p.Msg = ProblemClearedByHand, fmt.Sprintf("the event's content was cleared, but it was received %s, after the latest retention cutoff %s: cleared by hand",
				pe.received.UTC().Format(time.RFC3339Nano), cutoff.UTC().Format(time.RFC3339Nano))
			add(p)
		}
	}
	noteRecordedGaps(rep.Problems, gapRecords)
	if trailer == nil {
		add(Problem{Line: lastLine + 1, Kind: ProblemCutShort, Msg: "no signed manifest after the last entry: the bundle was cut short (its last lines removed), so nothing proves it is complete"})
		return rep, nil
	}
	m, err := OpenManifest(trailer, v)
	if err != nil {
		add(Problem{Line: trailerLine, Kind: ProblemManifestSigned, Msg: "manifest: " + err.Error() + ": it was changed after signing or signed by another key"})
		return rep, nil
	}
	rep.Manifest = m
	checkManifest(rep, m, &h, cp, olderSizes, events, links, digest.sum(), func(msg string) {
		p := Problem{Line: trailerLine, Kind: ProblemManifestMismatch, Msg: msg}
		if !strings.Contains(msg, differentExports) {
			add(p)
			return
		}
		// A checkpoint from another export fails every proof; the reason
		// for all of them is this one, so it is read first.
		rep.Problems = append([]Problem{p}, rep.Problems...)
		if len(rep.Problems) > MaxProblems {
			rep.Problems = rep.Problems[:MaxProblems]
			rep.Truncated++
		}
	})
	return rep, nil
}

// gapType is the server's record of a seq gap in an agent's stream,
// appended when the events after it arrived.
const gapType = "server.gap"

type gapKey struct{ agent, to string }

// noteRecordedGaps says of each seq jump the server recorded when it
// happened that it did: those events never reached the server (a PC's
// spool lost, a restored backup), which reads differently from events
// taken out of the log afterwards. Still a problem: the chain has a hole.
func noteRecordedGaps(ps []Problem, gaps map[gapKey]int64) {
	for i := range ps {
		p := &ps[i]
		if p.Kind != ProblemMissing || p.Seq == 0 {
			continue
		}
		if idx, ok := gaps[gapKey{p.Agent, strconv.FormatUint(p.Seq-1, 10)}]; ok {
			p.Msg += fmt.Sprintf("; the server recorded this gap when it happened (server.gap at log index %d): these events never reached it, they were not taken out of the log", idx)
		}
	}
}

// differentExports ends the problem of a header and a manifest that do
// not belong together.
const differentExports = "header and manifest come from different exports"

// prunedEntry is a pruned entry waiting for the retention records after it.
type prunedEntry struct {
	p        Problem
	received time.Time
}

// checkManifest compares the signed manifest with the unsigned header and
// with the entries read, reporting each difference by name.
func checkManifest(rep *Report, m *Manifest, h *Header, cp Checkpoint, olderSizes []int64, events, links int, digest [32]byte, fail func(string)) {
	found := false
	failf := func(format string, a ...any) {
		found = true
		fail(fmt.Sprintf(format, a...))
	}
	if m.Size != cp.Size || m.Root != cp.Root {
		failf("manifest is for the tree at size %d (root %s), the header's checkpoint is size %d (root %s): "+differentExports,
			m.Size, m.Root, cp.Size, cp.Root)
	}
	if hq, mq := encodeQuery(h.Query), encodeQuery(m.Query); hq != mq {
		failf("header query %q is not the signed manifest's %q: the export's filters were changed", hq, mq)
	}
	if !h.Created.Equal(m.Created) {
		failf("header created %s is not the signed manifest's %s", h.Created.UTC().Format(time.RFC3339Nano), m.Created.UTC().Format(time.RFC3339Nano))
	}
	if fmt.Sprint(olderSizes) != fmt.Sprint(m.Older) {
		failf("header holds older checkpoints of sizes %v, the signed manifest lists %v", olderSizes, m.Older)
	}
	if got := events + links; got != m.Entries() {
		what := entries(m.Entries()-got) + " missing"
		if got > m.Entries() {
			what = entries(got-m.Entries()) + " added"
		}
		if got == 0 {
			what = "every entry removed"
		}
		failf("the manifest lists %d entries (%d events, %d links), the bundle holds %d (%d events, %d links): %s",
			m.Entries(), m.Events, m.Links, got, events, links, what)
	} else if events != m.Events {
		failf("the manifest lists %d events and %d links, the bundle holds %d events and %d links: entries were re-typed (an event turned into a link or back)",
			m.Events, m.Links, events, links)
	}
	for _, a := range sortedAgents(m.Agents) {
		want, got := m.Agents[a], rep.Agents[a]
		switch {
		case got == nil:
			failf("agent %s: the manifest lists seq %d..%d (%d entries), the bundle holds none of them: removed", a, want.First, want.Last, want.Entries)
		case *got != want:
			var where []string
			if got.First != want.First {
				where = append(where, "at its start")
			}
			if got.Last != want.Last {
				where = append(where, "at its end")
			}
			if len(where) == 0 {
				where = append(where, "in between")
			}
			failf("agent %s: the manifest lists seq %d..%d (%d entries), the bundle holds seq %d..%d (%d entries): entries changed %s",
				a, want.First, want.Last, want.Entries, got.First, got.Last, got.Entries, strings.Join(where, " and "))
		}
	}
	for _, a := range sortedAgents(rep.Agents) {
		if _, ok := m.Agents[a]; !ok {
			got := rep.Agents[a]
			failf("agent %s: not in the manifest, yet the bundle holds seq %d..%d (%d entries): added", a, got.First, got.Last, got.Entries)
		}
	}
	if !found && digest != m.Digest {
		failf("entries differ from those the server signed (SHA-256 %x, manifest %x): an entry was replaced, re-typed or its link changed", digest, m.Digest)
	}
}

func entries(n int) string {
	if n == 1 {
		return "1 entry"
	}
	return fmt.Sprintf("%d entries", n)
}

func strictDecode(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data")
	}
	return nil
}

// NotBundleError is Verify's error for a file that is no bundle at all; it
// wraps ErrNotBundle and says what the file is instead (Reason), so the
// verifier can say it in the reader's language.
type NotBundleError struct {
	Reason  NotBundleReason
	Reply   string // the server's error text, for NotBundleReply
	Archive string // "gzip" or "ZIP", for NotBundleArchive
}

// NotBundleReason is what a file given as a bundle is instead.
type NotBundleReason string

const (
	NotBundleEmpty      NotBundleReason = "empty"       // an empty file
	NotBundleHTML       NotBundleReason = "html"        // a web page (a login page saved in its place)
	NotBundleCSV        NotBundleReason = "csv"         // a first line of comma-separated fields: a CSV export
	NotBundleText       NotBundleReason = "text"        // other text that is no JSON object
	NotBundleArchive    NotBundleReason = "archive"     // a gzip or ZIP file (a bundle someone packed)
	NotBundleBinary     NotBundleReason = "binary"      // bytes that are not UTF-8 text
	NotBundleReply      NotBundleReason = "error-reply" // the server's error reply, which curl -o saved
	NotBundleCheckpoint NotBundleReason = "checkpoint"  // the JSON of GET /api/v1/checkpoint
	NotBundleJSON       NotBundleReason = "json"        // a JSON object that is not a bundle header
)

func archiveName(line []byte) string {
	if bytes.HasPrefix(line, []byte("PK")) {
		return "ZIP"
	}
	return "gzip"
}

func (e *NotBundleError) Error() string {
	var what string
	switch e.Reason {
	case NotBundleEmpty:
		what = "the file is empty"
	case NotBundleHTML:
		what = "it is a web page (HTML), not the export's answer; export again with an API token"
	case NotBundleCSV:
		// A CSV export (format=csv, or a register's) is for reading, not
		// verifying.
		what = "it is a CSV export (comma-separated text), which is for reading; export with format=bundle to verify"
	case NotBundleText:
		what = "it is text, not a bundle (a bundle's first line is its JSON header); export with format=bundle"
	case NotBundleArchive:
		what = fmt.Sprintf("it is a %s archive; unpack it and give the bundle inside", e.Archive)
	case NotBundleBinary:
		what = "it is a binary file, not a bundle (a bundle is UTF-8 text whose first line is its JSON header)"
	case NotBundleReply:
		what = fmt.Sprintf("it holds the server's error reply %q; export again once that is fixed", e.Reply)
	case NotBundleCheckpoint:
		what = "it is the JSON of GET /api/v1/checkpoint, a checkpoint to pass with --checkpoint, not a bundle"
	default:
		what = "it is JSON, but not a bundle header (no \"format\" field); export with GET /api/v1/export?format=bundle"
	}
	return ErrNotBundle.Error() + ": " + what
}

func (e *NotBundleError) Unwrap() error { return ErrNotBundle }
