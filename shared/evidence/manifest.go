package evidence

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// ManifestFormat is the first line of a manifest's signed text. It also
// keeps a manifest from ever parsing as a checkpoint (whose second line is a
// number), though both are signed with the same log key.
const ManifestFormat = "mamori-evidence-manifest/v2"

// Manifest is the server's signed statement of what one bundle holds: the
// export's request, the checkpoint it is proven against, how many entries of
// each kind, each agent's range, and a SHA-256 over every entry in order.
// The header is unsigned and any line can be dropped, so this is what makes a
// missing first or last entry, an empty bundle, an added or reordered line,
// an event turned into a link, or edited filters detectable.
//
// Its text, one field a line, agents sorted, names and query URL-escaped:
//
//	mamori-evidence-manifest/v2
//	origin mamori/srv1
//	checkpoint 1234 <base64 root>
//	created 2026-11-02T03:04:05Z
//	query agent=pc-a&type=file.modified
//	older 100 1000
//	entries 60 events 40 links 20
//	agent pc-a 1 40 40
//	agent pc-b 7 26 20
//	sha256 <hex>
type Manifest struct {
	Origin  string
	Size    int64 // tree size of the bundle's checkpoint
	Root    tlog.Hash
	Created time.Time
	Query   map[string]string
	Older   []int64 // sizes of the older checkpoints in the header, in order
	Events  int
	Links   int
	Agents  map[string]AgentRange
	Digest  [sha256.Size]byte // see entryDigest
}

// Entries is the number of entry lines the bundle must hold.
func (m *Manifest) Entries() int { return m.Events + m.Links }

// Text is the manifest's signed text.
func (m *Manifest) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\norigin %s\ncheckpoint %d %s\ncreated %s\nquery %s\nolder",
		ManifestFormat, m.Origin, m.Size, m.Root, m.Created.UTC().Format(time.RFC3339Nano), encodeQuery(m.Query))
	for _, o := range m.Older {
		fmt.Fprintf(&b, " %d", o)
	}
	fmt.Fprintf(&b, "\nentries %d events %d links %d\n", m.Entries(), m.Events, m.Links)
	for _, a := range sortedAgents(m.Agents) {
		r := m.Agents[a]
		fmt.Fprintf(&b, "agent %s %d %d %d\n", url.QueryEscape(a), r.First, r.Last, r.Entries)
	}
	fmt.Fprintf(&b, "sha256 %x\n", m.Digest)
	return b.String()
}

// encodeQuery is url.Values encoding: keys sorted, no control characters
// (which a note's text may not hold).
func encodeQuery(q map[string]string) string {
	v := url.Values{}
	for k, x := range q {
		v.Set(k, x)
	}
	return v.Encode()
}

func sortedAgents[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for a := range m {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// SignManifest returns the signed note of m.
func SignManifest(m *Manifest, s note.Signer) ([]byte, error) {
	msg, err := note.Sign(&note.Note{Text: m.Text()}, s)
	if err != nil {
		return nil, fmt.Errorf("evidence: sign manifest: %w", err)
	}
	return msg, nil
}

// OpenManifest verifies a signed manifest with v and parses it. Its origin
// must be the key's name.
func OpenManifest(msg []byte, v note.Verifier) (*Manifest, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return nil, fmt.Errorf("evidence: manifest signature: %w", err)
	}
	m, err := ParseManifest(n.Text)
	if err != nil {
		return nil, err
	}
	if m.Origin != v.Name() {
		return nil, fmt.Errorf("evidence: manifest origin %q is not the key's name %q", m.Origin, v.Name())
	}
	return m, nil
}

// ParseManifest parses a manifest's text (not the signed note around it).
// Only the canonical form Text writes is accepted.
func ParseManifest(text string) (*Manifest, error) {
	bad := func(what string, err error) (*Manifest, error) {
		if err != nil {
			return nil, fmt.Errorf("evidence: malformed manifest: %s: %w", what, err)
		}
		return nil, fmt.Errorf("evidence: malformed manifest: %s", what)
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 8 || lines[0] != ManifestFormat {
		return bad("want "+ManifestFormat+" and its fields", nil)
	}
	field := func(i int, name string) (string, bool) {
		return strings.CutPrefix(lines[i], name+" ")
	}
	m := &Manifest{Query: map[string]string{}, Agents: map[string]AgentRange{}}
	var ok bool
	if m.Origin, ok = field(1, "origin"); !ok || m.Origin == "" {
		return bad("origin", nil)
	}
	s, ok := field(2, "checkpoint")
	size, root, _ := strings.Cut(s, " ")
	var err error
	if m.Size, err = strconv.ParseInt(size, 10, 64); !ok || err != nil || m.Size < 0 {
		return bad("checkpoint size", err)
	}
	if m.Root, err = tlog.ParseHash(root); err != nil {
		return bad("checkpoint root", err)
	}
	if s, ok = field(3, "created"); !ok {
		return bad("created", nil)
	}
	if m.Created, err = time.Parse(time.RFC3339Nano, s); err != nil {
		return bad("created", err)
	}
	if s, ok = field(4, "query"); !ok {
		return bad("query", nil)
	}
	q, err := url.ParseQuery(s)
	if err != nil {
		return bad("query", err)
	}
	for k := range q {
		m.Query[k] = q.Get(k)
	}
	s, ok = strings.CutPrefix(lines[5], "older")
	if !ok {
		return bad("older", nil)
	}
	for _, f := range strings.Fields(s) {
		o, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return bad("older", err)
		}
		m.Older = append(m.Older, o)
	}
	// The total is redundant for readers; the canonical check below holds it
	// to events + links.
	var total int
	if _, err := fmt.Sscanf(lines[6], "entries %d events %d links %d", &total, &m.Events, &m.Links); err != nil {
		return bad("entries", err)
	}
	last := len(lines) - 1
	for _, l := range lines[7:last] {
		var name string
		var r AgentRange
		if _, err := fmt.Sscanf(l, "agent %s %d %d %d", &name, &r.First, &r.Last, &r.Entries); err != nil {
			return bad("agent line", err)
		}
		a, err := url.QueryUnescape(name)
		if err != nil {
			return bad("agent name", err)
		}
		m.Agents[a] = r
	}
	s, ok = field(last, "sha256")
	d, err := hex.DecodeString(s)
	if !ok || err != nil || len(d) != sha256.Size {
		return bad("sha256", err)
	}
	copy(m.Digest[:], d)
	// Canonical form only: one text, one meaning.
	if m.Text() != text {
		return bad("not in canonical form", nil)
	}
	return m, nil
}

// entryDigest accumulates the manifest's SHA-256 over entries: for each, in
// bundle order, "index kind agent seq prev hash\n" (kind "event", "link" or,
// since format v3, "pruned",
// agent URL-escaped). It binds each entry's place, kind and chain link,
// including a link's agent, seq and prev, which no proof covers.
type entryDigest struct {
	h   hash.Hash
	buf []byte
}

func newEntryDigest() *entryDigest { return &entryDigest{h: sha256.New()} }

func (d *entryDigest) add(index int64, isLink, pruned bool, l *Link) {
	b := strconv.AppendInt(d.buf[:0], index, 10)
	switch {
	case pruned:
		b = append(b, " pruned "...)
	case isLink:
		b = append(b, " link "...)
	default:
		b = append(b, " event "...)
	}
	b = append(b, url.QueryEscape(l.Agent)...)
	b = append(b, ' ')
	b = strconv.AppendUint(b, l.Seq, 10)
	b = append(b, ' ')
	b = append(b, l.Prev...)
	b = append(b, ' ')
	b = append(b, l.Hash...)
	b = append(b, '\n')
	d.h.Write(b)
	d.buf = b
}

func (d *entryDigest) sum() (s [sha256.Size]byte) {
	d.h.Sum(s[:0])
	return s
}

// checkpointOfNote parses the checkpoint inside a signed note without
// checking its signature: the writer has only the signer, and Verify checks
// the signature on its own.
func checkpointOfNote(msg string) (Checkpoint, error) {
	i := strings.LastIndex(msg, "\n\n")
	if i < 0 {
		return Checkpoint{}, errors.New("evidence: checkpoint is not a signed note")
	}
	return ParseCheckpoint(msg[:i+1])
}
