package audit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/mamori/mamori/server/internal/csvcell"
	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/evidence"
	"github.com/mamori/mamori/shared/labels"
)

// DefaultMaxExport bounds the events in one export; a larger result asks for
// a narrower filter instead of exhausting the server.
const DefaultMaxExport = 1_000_000

// ErrTooLarge is returned when an export would exceed the bound.
var ErrTooLarge = errors.New("audit: export too large: narrow the filter (agent, time range)")

// ErrNoSuchCheckpoint is returned when since names a size never signed.
var ErrNoSuchCheckpoint = errors.New("audit: no signed checkpoint of that size")

// Exporter writes evidence bundles and CSV files.
type Exporter struct {
	Log          Log
	Checkpointer *Checkpointer
	PublicKey    string // note verifier key of the log (DATA/log-key.pub)
	MaxEvents    int    // default DefaultMaxExport
	// HostNames maps agent ids to PC names for the CSV's agent column;
	// optional (without it the column holds agent ids).
	HostNames func(context.Context) (map[string]string, error)
}

// Summary says what an export holds.
type Summary struct {
	TreeSize int64 `json:"tree_size"`
	Events   int   `json:"events"`
	Links    int   `json:"links"`
}

func (x *Exporter) max() int {
	if x.MaxEvents > 0 {
		return x.MaxEvents
	}
	return DefaultMaxExport
}

// Bundle writes the events matching f as an evidence bundle against a
// checkpoint signed now. Each agent's events between its first and last
// match that do not match f go in as links, so the bundle proves the chain
// has no holes. since > 0 adds a consistency proof from the checkpoint of
// that size (one the auditor kept). The bundle ends with a manifest signed
// with the log key (query, checkpoint, counts, per-agent ranges, a digest of
// every entry), so no entry can be dropped or re-typed unnoticed.
func (x *Exporter) Bundle(ctx context.Context, w io.Writer, f eventlog.Filter, since int64, query map[string]string) (Summary, error) {
	cp, err := x.Checkpointer.SignNow(ctx)
	if err != nil {
		return Summary{}, err
	}
	n := cp.Size
	// Pass 1: what matches, and each agent's span.
	var matched []int64
	spans := map[string]*span{}
	f.Cursor, f.Limit = "", eventlog.MaxLimit
	for {
		p, err := x.Log.Query(ctx, f)
		if err != nil {
			return Summary{}, fmt.Errorf("audit: export: %w", err)
		}
		stop := p.Next == ""
		for _, s := range p.Events {
			if s.Index >= n {
				stop = true
				break
			}
			if len(matched) >= x.max() {
				return Summary{}, fmt.Errorf("%w (more than %d events)", ErrTooLarge, x.max())
			}
			matched = append(matched, s.Index)
			if sp := spans[s.Agent]; sp == nil {
				spans[s.Agent] = &span{s.Index, s.Index}
			} else {
				sp.last = s.Index
			}
		}
		if stop {
			break
		}
		f.Cursor = p.Next
	}
	found, err := x.findings(ctx, f, n)
	if err != nil {
		return Summary{}, err
	}
	for _, s := range found {
		if len(matched) >= x.max() {
			return Summary{}, fmt.Errorf("%w (more than %d events)", ErrTooLarge, x.max())
		}
		i, _ := slices.BinarySearch(matched, s.Index)
		matched = slices.Insert(matched, i, s.Index)
		if sp := spans[event.ServerStream]; sp == nil {
			spans[event.ServerStream] = &span{s.Index, s.Index}
		} else {
			sp.first, sp.last = min(sp.first, s.Index), max(sp.last, s.Index)
		}
	}
	return x.writeBundle(ctx, w, cp, matched, spans, since, query)
}

// findings are the server stream's events about the one PC f selects when
// f selects nothing else but a time range: its outages, gaps, clock skew,
// alerts, enrollment and tampering, which the server records in its own
// stream and a PC's evidence must hold. Below limit (a tree size) when > 0.
func (x *Exporter) findings(ctx context.Context, f eventlog.Filter, limit int64) ([]eventlog.Stored, error) {
	if f.Agent == "" || f.Agent == event.ServerStream || f.Control != "" || f.Type != "" || f.User != "" ||
		f.ObjectPrefix != "" || f.RegisterID != "" {
		return nil, nil
	}
	sf := eventlog.Filter{Agent: event.ServerStream, From: f.From, To: f.To, Limit: eventlog.MaxLimit}
	var out []eventlog.Stored
	for {
		p, err := x.Log.Query(ctx, sf)
		if err != nil {
			return nil, fmt.Errorf("audit: export: server findings: %w", err)
		}
		for _, s := range p.Events {
			if limit > 0 && s.Index >= limit {
				return out, nil
			}
			if a, _ := s.Attrs["agent"].(string); a == f.Agent || s.Object == f.Agent || s.Object == "agent/"+f.Agent {
				out = append(out, s)
			}
		}
		if p.Next == "" {
			return out, nil
		}
		sf.Cursor = p.Next
	}
}

// span is one agent's first and last matched log index: the entries between
// them go in as links, so the agent's chain is provably whole.
type span struct{ first, last int64 }

// writeBundle writes matched (sorted log indexes below cp.Size) as an
// evidence bundle against cp: the matches in full, the rest of each agent's
// span as links, the latest signed retention record, inclusion proofs and
// the signed manifest. Bundle and BundleIndexes differ only in what matches.
func (x *Exporter) writeBundle(ctx context.Context, w io.Writer, cp eventlog.Checkpoint, matched []int64, spans map[string]*span, since int64, query map[string]string) (Summary, error) {
	n := cp.Size
	// The latest signed retention record goes in whole, so each entry
	// whose payload retention cleared can be checked against its cutoff.
	if len(matched) > 0 {
		ri, err := x.latestRetention(ctx, n)
		if err != nil {
			return Summary{}, err
		}
		if ri >= 0 {
			if i, found := slices.BinarySearch(matched, ri); !found {
				matched = slices.Insert(matched, i, ri)
				if sp := spans[event.ServerStream]; sp == nil {
					spans[event.ServerStream] = &span{ri, ri}
				} else {
					sp.first, sp.last = min(sp.first, ri), max(sp.last, ri)
				}
			}
		}
	}

	h := evidence.Header{Origin: x.Checkpointer.Signer.Name(), PublicKey: x.PublicKey, Checkpoint: cp.Note,
		Created: time.Now().UTC(), Query: query}
	if since > 0 && since < n {
		old, err := x.Log.CheckpointAt(ctx, since)
		if errors.Is(err, eventlog.ErrNoCheckpoint) {
			return Summary{}, fmt.Errorf("%w: %d", ErrNoSuchCheckpoint, since)
		}
		if err != nil {
			return Summary{}, fmt.Errorf("audit: export: %w", err)
		}
		proof, err := tlog.ProveTree(n, since, x.Log)
		if err != nil {
			return Summary{}, fmt.Errorf("audit: consistency proof %d..%d: %w", since, n, err)
		}
		h.Older = append(h.Older, evidence.Older{Checkpoint: old.Note, Proof: proof})
	}
	bw, err := evidence.NewWriter(w, h, x.Checkpointer.Signer)
	if err != nil {
		return Summary{}, err
	}
	sum := Summary{TreeSize: n}
	if len(matched) == 0 {
		return sum, bw.Close() // the signed manifest says "nothing matched"
	}
	// Pass 2: the matches in full, the rest of each span as links.
	next := 0
	proofs := &hashCache{r: x.Log, m: map[int64]tlog.Hash{}}
	err = scanPages(ctx, x.Log, matched[0], matched[len(matched)-1]+1, func(page []eventlog.Stored) error {
		idx := make([]int64, len(page))
		for i := range page {
			idx[i] = tlog.StoredHashIndex(0, page[i].Index)
		}
		leaves, err := x.Log.ReadHashes(idx)
		if err != nil {
			return fmt.Errorf("audit: read leaves: %w", err)
		}
		for i := range page {
			s := &page[i]
			en := evidence.Entry{Index: s.Index, Pruned: s.Pruned}
			// Leaves written since format v3 commit to the received time.
			if l, err := evidence.LeafHashAt(s.Hash, s.Received); err == nil && l == leaves[i] {
				recv := s.Received
				en.Received = &recv
			}
			switch sp := spans[s.Agent]; {
			case next < len(matched) && matched[next] == s.Index && !s.Pruned:
				next++
				en.Event = &s.Event
				sum.Events++
			case next < len(matched) && matched[next] == s.Index:
				// Retention removed the payload: the link still proves it.
				next++
				en.Link = evidence.LinkOf(&s.Event)
				sum.Links++
			case sp != nil && sp.first < s.Index && s.Index < sp.last:
				en.Link = evidence.LinkOf(&s.Event)
				sum.Links++
			default:
				continue
			}
			proof, err := tlog.ProveRecord(n, s.Index, proofs)
			if err != nil {
				return fmt.Errorf("audit: inclusion proof %d: %w", s.Index, err)
			}
			en.Proof = proof
			if err := bw.Add(&en); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		// No manifest: a bundle cut short by an error does not verify.
		return sum, err
	}
	return sum, bw.Close()
}

// latestRetention returns the log index of the latest valid retention
// record below n, or -1.
func (x *Exporter) latestRetention(ctx context.Context, n int64) (int64, error) {
	f := eventlog.Filter{Agent: event.ServerStream, Type: evidence.RetentionType, Limit: eventlog.MaxLimit}
	best := int64(-1)
	for {
		p, err := x.Log.Query(ctx, f)
		if err != nil {
			return -1, fmt.Errorf("audit: export: %w", err)
		}
		for _, s := range p.Events {
			if s.Index >= n {
				return best, nil
			}
			if _, ok := evidence.RetentionCutoff(&s.Event); ok && !s.Pruned {
				best = s.Index
			}
		}
		if p.Next == "" {
			return best, nil
		}
		f.Cursor = p.Next
	}
}

// csvHeaders in Japanese and English, for Excel readers.
var csvHeaders = map[string][]string{
	"ja": {"ログ番号", "日時", "エージェント", "管理策", "種別", "重要度", "ユーザー", "プロセス", "対象", "台帳ID", "属性", "ハッシュ", "連番", "受信日時", "エージェントID"},
	"en": {"log index", "time", "agent", "control", "type", "severity", "user", "process", "object", "register id", "attributes", "hash", "seq", "received", "agent id"},
}

// CSV writes the events matching f as UTF-8 CSV with a BOM (so Excel opens
// it as UTF-8), headers and codes (control, type, severity) in lang ("ja" or
// "en") from the shared label catalog, the PC name in the agent column (the
// id in the last), times in loc.
func (x *Exporter) CSV(ctx context.Context, w io.Writer, f eventlog.Filter, lang string, loc *time.Location) (int, error) {
	hdr, ok := csvHeaders[lang]
	if !ok {
		return 0, fmt.Errorf("audit: lang %q: want ja or en", lang)
	}
	// The zone goes in the header, not in each cell: "… 18:00:01.000 JST"
	// is text to Excel, which can sort and filter a bare date-time.
	hdr = slices.Clone(hdr)
	zone := " (" + time.Now().In(loc).Format("MST") + ")"
	hdr[1] += zone
	hdr[13] += zone
	hosts := map[string]string{}
	if x.HostNames != nil {
		m, err := x.HostNames(ctx)
		if err != nil {
			return 0, fmt.Errorf("audit: export: host names: %w", err)
		}
		hosts = m
	}
	if _, err := io.WriteString(w, "\ufeff"); err != nil {
		return 0, err
	}
	cw := csvcell.NewWriter(w) // every cell defused and quoted
	if err := cw.Write(hdr); err != nil {
		return 0, err
	}
	rows := 0
	found, err := x.findings(ctx, f, 0)
	if err != nil {
		return 0, err
	}
	f.Cursor, f.Limit = "", eventlog.MaxLimit
	for {
		p, err := x.Log.Query(ctx, f)
		if err != nil {
			return rows, fmt.Errorf("audit: export: %w", err)
		}
		events := p.Events
		if len(found) > 0 { // in log order with the page's events
			upto := len(found)
			if p.Next != "" && len(events) > 0 {
				upto, _ = slices.BinarySearchFunc(found, events[len(events)-1].Index, func(s eventlog.Stored, i int64) int { return cmp.Compare(s.Index, i) })
			}
			events = append(slices.Clone(events), found[:upto]...)
			found = found[upto:]
			slices.SortFunc(events, func(a, b eventlog.Stored) int { return cmp.Compare(a.Index, b.Index) })
		}
		for _, s := range events {
			if s.Pruned {
				continue // nothing left to show but hashes
			}
			if rows >= x.max() {
				return rows, fmt.Errorf("%w (more than %d events)", ErrTooLarge, x.max())
			}
			// Read in Excel: one "label: value" line an attribute (the
			// old path of a rename, a bulk summary's counts), not JSON.
			attrs := labels.Attrs(s.Attrs, lang, loc)
			if err := cw.Write([]string{strconv.FormatInt(s.Index, 10), s.Time.In(loc).Format("2006-01-02 15:04:05.000"),
				cmp.Or(hosts[s.Agent], s.Agent), labels.Of(labels.Control, lang, s.Control), labels.Of(labels.EventType, lang, s.Type),
				labels.Of(labels.Severity, lang, string(s.Severity)), s.User, s.Process, s.Object, s.RegisterID, attrs, s.Hash,
				strconv.FormatUint(s.Seq, 10), s.Received.In(loc).Format("2006-01-02 15:04:05.000"), s.Agent}); err != nil {
				return rows, err
			}
			rows++
		}
		if p.Next == "" {
			break
		}
		f.Cursor = p.Next
	}
	return rows, cw.Flush()
}

// hashCache keeps the stored hashes the inclusion proofs of an export have
// read. Proofs of neighbouring events share all but their lowest hashes,
// and each store read is a query: a full export of 295,000 events took
// 218 s, 94% of it in those reads, two thirds of that parsing SQL.
type hashCache struct {
	r tlog.HashReader
	m map[int64]tlog.Hash
}

// hashCacheMax bounds the cache (about 5 MiB); emptied when full, it
// refills with the few hashes the next proofs share.
const hashCacheMax = 1 << 16

func (c *hashCache) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	var miss []int64
	var at []int // positions in idx of miss
	for i, x := range idx {
		if h, ok := c.m[x]; ok {
			out[i] = h
		} else {
			miss, at = append(miss, x), append(at, i)
		}
	}
	if len(miss) == 0 {
		return out, nil
	}
	got, err := c.r.ReadHashes(miss)
	if err != nil {
		return nil, err
	}
	if len(c.m)+len(miss) > hashCacheMax {
		clear(c.m)
	}
	for j, x := range miss {
		out[at[j]] = got[j]
		c.m[x] = got[j]
	}
	return out, nil
}
