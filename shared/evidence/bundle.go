package evidence

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mamori/mamori/shared/event"
)

// Format names version 1 of the bundle: JSON Lines, a Header line then one
// Entry line per log leaf, in ascending log index.
const Format = "mamori-evidence/v1"

// Header is the bundle's first line.
type Header struct {
	Format     string    `json:"format"`
	Origin     string    `json:"origin"`
	PublicKey  string    `json:"public_key"` // note verifier key of the log
	Checkpoint string    `json:"checkpoint"` // signed; every proof is against this tree
	Created    time.Time `json:"created"`
	// Query is the export's filter, for the reader; verification does not
	// depend on it.
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
	Proof []tlog.Hash  `json:"proof"`
}

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

// Writer writes a bundle.
type Writer struct {
	bw  *bufio.Writer
	enc *json.Encoder
}

// NewWriter writes h and returns a Writer for the entries.
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	h.Format = Format
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&h); err != nil {
		return nil, fmt.Errorf("evidence: write header: %w", err)
	}
	return &Writer{bw: bw, enc: enc}, nil
}

// Add writes one entry.
func (w *Writer) Add(e *Entry) error {
	if err := w.enc.Encode(e); err != nil {
		return fmt.Errorf("evidence: write entry %d: %w", e.Index, err)
	}
	return nil
}

// Flush writes out what is buffered.
func (w *Writer) Flush() error { return w.bw.Flush() }

// Problem is one verification failure, located in the bundle.
type Problem struct {
	Line  int    `json:"line"` // 1-based line of the bundle
	Index int64  `json:"index,omitempty"`
	Agent string `json:"agent,omitempty"`
	Seq   uint64 `json:"seq,omitempty"`
	Msg   string `json:"msg"`
}

func (p Problem) String() string {
	s := fmt.Sprintf("line %d", p.Line)
	if p.Agent != "" {
		s += fmt.Sprintf(" (log index %d, agent %s, seq %d)", p.Index, p.Agent, p.Seq)
	}
	return s + ": " + p.Msg
}

// Report is the outcome of Verify.
type Report struct {
	Checkpoint Checkpoint
	Events     int // full events verified
	Links      int // link-only entries verified
	Agents     map[string]*AgentRange
	Problems   []Problem
	Truncated  int // problems beyond MaxProblems, not listed
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

// Verify checks a bundle offline against the log's public key: the
// checkpoint's signature, each entry's content hash and inclusion proof,
// each agent's seq and hash chain across the bundle, the consistency of
// older checkpoints, and optionally that the log only grew since opt.Old.
// The error is for a bundle that cannot be read at all; content failures are
// Problems in the Report.
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
		return nil, errors.New("evidence: empty bundle")
	}
	var h Header
	if err := strictDecode(sc.Bytes(), &h); err != nil {
		return nil, fmt.Errorf("evidence: header (line 1): %w", err)
	}
	if h.Format != Format {
		return nil, fmt.Errorf("evidence: header (line 1): format %q, want %q", h.Format, Format)
	}
	if hv, err := note.NewVerifier(h.PublicKey); err != nil || hv.Name() != v.Name() || hv.KeyHash() != v.KeyHash() {
		add(Problem{Line: 1, Msg: fmt.Sprintf("bundle names public key %q, which is not the key given (%s)", h.PublicKey, v.Name())})
	}
	cp, err := Open([]byte(h.Checkpoint), v)
	if err != nil {
		add(Problem{Line: 1, Msg: "checkpoint: " + err.Error()})
		return rep, nil // nothing below can be trusted without it
	}
	rep.Checkpoint = cp

	olderBySize := map[int64]tlog.Hash{}
	for i, o := range h.Older {
		oc, err := Open([]byte(o.Checkpoint), v)
		if err != nil {
			add(Problem{Line: 1, Msg: fmt.Sprintf("older checkpoint %d: %v", i, err)})
			continue
		}
		if oc.Size > cp.Size {
			add(Problem{Line: 1, Msg: fmt.Sprintf("older checkpoint %d has size %d > %d", i, oc.Size, cp.Size)})
			continue
		}
		if err := tlog.CheckTree(o.Proof, cp.Size, cp.Root, oc.Size, oc.Root); err != nil {
			add(Problem{Line: 1, Msg: fmt.Sprintf("older checkpoint at size %d: log is not an extension of it: %v", oc.Size, err)})
			continue
		}
		olderBySize[oc.Size] = oc.Root
	}
	if opt.Old != nil {
		oc, err := Open(opt.Old, v)
		switch {
		case err != nil:
			add(Problem{Msg: "your checkpoint: " + err.Error()})
		case oc.Size > cp.Size:
			add(Problem{Msg: fmt.Sprintf("your checkpoint (size %d) is newer than the bundle's (size %d)", oc.Size, cp.Size)})
		case oc.Size == cp.Size:
			if oc.Root != cp.Root {
				add(Problem{Msg: fmt.Sprintf("log rewritten: your checkpoint at size %d has root %s, the bundle's has %s", oc.Size, oc.Root, cp.Root)})
			}
		default:
			root, ok := olderBySize[oc.Size]
			switch {
			case !ok:
				add(Problem{Msg: fmt.Sprintf("bundle holds no consistency proof from size %d (export again with since=%d)", oc.Size, oc.Size)})
			case root != oc.Root:
				add(Problem{Msg: fmt.Sprintf("log rewritten: your checkpoint at size %d has root %s, the server now proves root %s", oc.Size, oc.Root, root)})
			}
		}
	}

	type head struct {
		seq  uint64
		hash string
	}
	heads := map[string]head{}
	lastIndex := int64(-1)
	for line := 2; sc.Scan(); line++ {
		var en Entry
		if err := strictDecode(sc.Bytes(), &en); err != nil {
			add(Problem{Line: line, Msg: "unreadable entry: " + err.Error()})
			continue
		}
		var l Link
		switch {
		case en.Event != nil && en.Link == nil:
			l = *LinkOf(en.Event)
			if err := en.Event.Validate(); err != nil {
				add(Problem{Line: line, Index: en.Index, Agent: l.Agent, Seq: l.Seq, Msg: "event content: " + err.Error()})
				continue
			}
			rep.Events++
		case en.Link != nil && en.Event == nil:
			l = *en.Link
			rep.Links++
		default:
			add(Problem{Line: line, Index: en.Index, Msg: "entry must hold exactly one of event, link"})
			continue
		}
		p := Problem{Line: line, Index: en.Index, Agent: l.Agent, Seq: l.Seq}
		if en.Index <= lastIndex {
			p.Msg = fmt.Sprintf("log index %d out of order (after %d): entries reordered or repeated", en.Index, lastIndex)
			add(p)
		}
		lastIndex = max(lastIndex, en.Index)
		leaf, err := LeafHash(l.Hash)
		if err == nil {
			err = tlog.CheckRecord(en.Proof, cp.Size, cp.Root, en.Index, leaf)
		}
		if err != nil {
			p.Msg = fmt.Sprintf("not in the signed log at index %d: %v", en.Index, err)
			add(p)
		}
		hd, seen := heads[l.Agent]
		if seen {
			switch {
			case l.Seq <= hd.seq:
				p.Msg = fmt.Sprintf("seq %d after %d: events reordered or repeated", l.Seq, hd.seq)
				add(p)
			case l.Seq != hd.seq+1:
				p.Msg = fmt.Sprintf("seq jumps from %d to %d: %d event(s) missing from the bundle", hd.seq, l.Seq, l.Seq-hd.seq-1)
				add(p)
			case l.Prev != hd.hash:
				p.Msg = fmt.Sprintf("prev does not match the hash of seq %d: chain broken", hd.seq)
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
	return rep, nil
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
