package register

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/mamori/mamori/server/internal/state"
)

// Key layout below state.Prefix. Entries live under registers/ so that the
// policy watch fires on every change; history under register-history/.
const (
	entriesDir = "registers/"
	historyDir = "register-history/"
)

// txnFraming is room left in a transaction for the request's framing.
const txnFraming = 64 << 10

// Actions recorded in the history and in the server event stream.
const (
	ActionCreated  = "created"
	ActionUpdated  = "updated"
	ActionRetired  = "retired"
	ActionApproved = "approved"
	ActionDenied   = "denied"
	ActionReturned = "returned"
	// ActionUnchanged is Update's answer to an entry saved as stored:
	// nothing is written and nothing is to be recorded.
	ActionUnchanged = "unchanged"
)

// Change is one recorded change of one entry.
type Change struct {
	Kind     Kind            `json:"kind"`
	ID       string          `json:"id"`
	Version  int             `json:"version"`
	Action   string          `json:"action"`
	By       string          `json:"by"`
	At       time.Time       `json:"at"`
	Revision int64           `json:"revision"` // etcd revision of the write
	Before   json.RawMessage `json:"before,omitempty"`
	After    json.RawMessage `json:"after"`
	// Cause names the entry whose write made this change in the same
	// transaction ("disposals/DS-…" for a medium a disposal records).
	Cause string `json:"cause,omitempty"`
	// Also are the changes made with this one (not stored with it): the
	// callers record each as its own event.
	Also []Change `json:"-"`
}

// Config configures a Service.
type Config struct {
	State *state.State
	// Now is the clock (approval windows, dates, history); default time.Now.
	Now func() time.Time
	// MaxTxnOps is the etcd cluster's --max-txn-ops; default what State
	// says (the embedded node's limit, or etcd's default 128).
	MaxTxnOps int
	// MaxTxnBytes bounds one transaction's keys and values; default from
	// State's limit (etcd's default --max-request-bytes for an external
	// cluster) less room for the request's framing.
	MaxTxnBytes int
	// Location is where CSV times without a zone are read and exported
	// times written (Service.ParseCSV, Service.ExportCSV): the web UI's
	// zone. Default DefaultLocation (JST).
	Location *time.Location
}

// Service reads and writes the registers and compiles effective policies.
// It is safe for concurrent use.
type Service struct {
	st       *state.State
	cli      *clientv3.Client
	now      func() time.Time
	loc      *time.Location
	maxOps   int
	maxBytes int

	snapMu  sync.Mutex
	snapGen uint64
	snap    *snapshot // nil: read again
	view    *view     // nil: read again (see Shared)
	// viewLoading is closed when the view being read is in.
	viewLoading chan struct{}

	agentsMu  sync.Mutex
	agents    map[string]agentRec // what compiling needs of each agent's record
	agentsGen uint64              // counts forgotten records, so a read racing one is not kept

	parsedMu sync.Mutex
	parsed   map[string]parsedPolicy // stored policy name -> last parse
}

// New returns a Service over an open state store.
func New(cfg Config) (*Service, error) {
	if cfg.State == nil {
		return nil, errors.New("register: Config.State is nil")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	// One import is one transaction (two operations per changed row: entry
	// and history), so the cluster's limits bound an import.
	ops, bytes := cfg.State.TxnLimits()
	if cfg.MaxTxnOps <= 0 {
		cfg.MaxTxnOps = ops
	}
	if cfg.MaxTxnBytes <= 0 {
		cfg.MaxTxnBytes = bytes - txnFraming
	}
	if cfg.Location == nil {
		cfg.Location = DefaultLocation
	}
	return &Service{st: cfg.State, cli: cfg.State.Client(), now: cfg.Now, loc: cfg.Location, maxOps: cfg.MaxTxnOps, maxBytes: cfg.MaxTxnBytes,
		parsed: map[string]parsedPolicy{}, agents: map[string]agentRec{}}, nil
}

// Now is the service's clock.
func (s *Service) Now() time.Time { return s.now() }

func entryKey(k Kind, id string) string { return state.Prefix + entriesDir + string(k) + "/" + id }
func historyKey(k Kind, id string, version int) string {
	return fmt.Sprintf("%s%s%s/%s/%08d", state.Prefix, historyDir, k, id, version)
}

func validKind(k Kind) bool { return slices.Contains(Kinds, k) }

func opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, 15*time.Second)
}

// decode reads a stored value into a fresh entry of kind k.
func decode(k Kind, b []byte, rev int64) (Entry, error) {
	e := NewEntry(k)
	if e == nil {
		return nil, fmt.Errorf("register: unknown register %q: %w", k, ErrInvalid)
	}
	if err := json.Unmarshal(b, e); err != nil {
		return nil, fmt.Errorf("register: decode %s entry: %w", k, err)
	}
	e.meta().Revision = rev
	return e, nil
}

// encode is the stored form: the entry without its revision.
func encode(e Entry) ([]byte, error) {
	m := e.meta()
	rev := m.Revision
	m.Revision = 0
	b, err := json.Marshal(e)
	m.Revision = rev
	if err != nil {
		return nil, fmt.Errorf("register: encode: %w", err)
	}
	return b, nil
}

// Get returns one entry with its revision.
func (s *Service) Get(ctx context.Context, k Kind, id string) (Entry, error) {
	if !validKind(k) {
		return nil, fmt.Errorf("register: unknown register %q: %w", k, ErrInvalid)
	}
	if !idRE.MatchString(id) {
		return nil, fmt.Errorf("register: %s %q: %w", k, id, ErrNotFound)
	}
	ctx, cancel := opCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, entryKey(k, id))
	if err != nil {
		return nil, fmt.Errorf("register: get %s/%s: %w", k, id, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("register: %s %s: %w", k, id, ErrNotFound)
	}
	return decode(k, resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
}

// Filter selects entries in List; empty fields match everything. Host,
// Serial and Department compare case-insensitively; Q is a substring of
// the entry's JSON.
type Filter struct {
	Status, Department, Host, Serial, Owner, Q string
}

// List returns the entries of one register, ordered by id.
func (s *Service) List(ctx context.Context, k Kind, f Filter) ([]Entry, error) {
	if !validKind(k) {
		return nil, fmt.Errorf("register: unknown register %q: %w", k, ErrInvalid)
	}
	ctx, cancel := opCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, state.Prefix+entriesDir+string(k)+"/", clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("register: list %s: %w", k, err)
	}
	out := []Entry{}
	for _, kv := range resp.Kvs {
		e, err := decode(k, kv.Value, kv.ModRevision)
		if err != nil {
			return nil, err
		}
		if f.match(e, kv.Value) {
			out = append(out, e)
		}
	}
	return out, nil
}

func (f Filter) match(e Entry, raw []byte) bool {
	eq := func(want, have string) bool { return want == "" || strings.EqualFold(want, have) }
	if !eq(f.Status, e.meta().Status) {
		return false
	}
	if f.Q != "" && !bytes.Contains(bytes.ToLower(raw), bytes.ToLower([]byte(f.Q))) {
		return false
	}
	switch e := e.(type) {
	case *PIEntry:
		hostOK := f.Host == ""
		for _, l := range e.Locations {
			hostOK = hostOK || strings.EqualFold(l.Host, f.Host)
		}
		return hostOK && eq(f.Department, e.Department) && eq(f.Owner, e.Owner) && f.Serial == ""
	case *MediaEntry:
		return eq(f.Serial, e.Serial) && eq(f.Owner, e.Owner) && f.Host == "" && f.Department == ""
	case *Approval:
		return eq(f.Serial, e.Serial) && eq(f.Host, e.Host) && eq(f.Owner, e.Requester) && f.Department == ""
	case *Disposal:
		return eq(f.Owner, e.Responsible) && f.Host == "" && f.Serial == "" && f.Department == ""
	}
	return false
}

// History returns every recorded change of one entry, oldest first.
func (s *Service) History(ctx context.Context, k Kind, id string) ([]Change, error) {
	if !validKind(k) || !idRE.MatchString(id) {
		return nil, fmt.Errorf("register: %s %q: %w", k, id, ErrNotFound)
	}
	ctx, cancel := opCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, fmt.Sprintf("%s%s%s/%s/", state.Prefix, historyDir, k, id), clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("register: history %s/%s: %w", k, id, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("register: %s %s: %w", k, id, ErrNotFound)
	}
	out := make([]Change, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var c Change
		if err := json.Unmarshal(kv.Value, &c); err != nil {
			return nil, fmt.Errorf("register: decode history: %w", err)
		}
		c.Revision = kv.ModRevision
		out = append(out, c)
	}
	return out, nil
}

// WithAlso lists cs with the changes each made along with it (Also), in
// order, for recording each as an event.
func WithAlso(cs []Change) []Change {
	out := make([]Change, 0, len(cs))
	for _, c := range cs {
		out = append(out, c)
		out = append(out, c.Also...)
	}
	return out
}

// write is one planned change: put the entry if its key is still at rev
// (0: does not exist yet), and its history record.
type write struct {
	e      Entry
	rev    int64
	before []byte
	action string
	cause  string
}

// commit applies writes in one etcd transaction: all or nothing.
func (s *Service) commit(ctx context.Context, who string, ws []write) ([]Change, error) {
	// Said in Japanese: an office meets this importing its register.
	if 2*len(ws) > s.maxOps {
		return nil, ValidationError{{Field: "file", Msg: fmt.Sprintf(
			"%d 行の変更は1回の取り込み（etcd の1トランザクション）に収まりません。1ファイル %d 行以下に分けて、順に取り込んでください（変更のない行は数えません）。"+
				"(%d changes in one write, at most %d fit in one etcd transaction: --max-txn-ops %d)",
			len(ws), s.maxOps/2, len(ws), s.maxOps/2, s.maxOps)}}
	}
	now := s.now().UTC()
	var cmps []clientv3.Cmp
	var ops []clientv3.Op
	changes := make([]Change, len(ws))
	size := 0
	for i, w := range ws {
		m := w.e.meta()
		k := entryKey(w.e.kind(), m.ID)
		if w.rev == 0 {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), "=", 0))
		} else {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", w.rev))
		}
		m.Version++
		m.Updated = now
		m.UpdatedBy = who
		after, err := encode(w.e)
		if err != nil {
			return nil, err
		}
		c := Change{Kind: w.e.kind(), ID: m.ID, Version: m.Version, Action: w.action, By: who, At: now,
			Before: w.before, After: after, Cause: w.cause}
		hb, err := json.Marshal(c)
		if err != nil {
			return nil, fmt.Errorf("register: encode history: %w", err)
		}
		hk := historyKey(c.Kind, c.ID, c.Version)
		ops = append(ops, clientv3.OpPut(k, string(after)), clientv3.OpPut(hk, string(hb)))
		changes[i] = c
		size += len(k) + len(after) + len(hk) + len(hb)
	}
	if size > s.maxBytes {
		fit := max(1, len(ws)*s.maxBytes/size*9/10) // rows are not all the same size
		return nil, ValidationError{{Field: "file", Msg: fmt.Sprintf(
			"%d 行の変更は1回の取り込み（etcd の1トランザクション）に収まりません。1ファイル約 %d 行以下に分けて、順に取り込んでください（変更のない行は数えません）。"+
				"(%d changes take %d bytes, more than one etcd transaction holds: %d)",
			len(ws), fit, len(ws), size, s.maxBytes)}}
	}
	ctx, cancel := opCtx(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return nil, fmt.Errorf("register: write: %w", err)
	}
	if !resp.Succeeded {
		return nil, fmt.Errorf("register: an entry changed meanwhile, nothing written: %w", ErrConflict)
	}
	for i := range changes {
		changes[i].Revision = resp.Header.Revision
		ws[i].e.meta().Revision = resp.Header.Revision
	}
	s.Invalidate()
	return changes, nil
}

// newID makes an id when the admin gives none: a prefix per register and
// random hex (registration numbers chosen by the office are kept as given).
func newID(k Kind) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	p := map[Kind]string{KindPI: "PI-", KindMedia: "MD-", KindApprovals: "AP-", KindDisposals: "DS-"}[k]
	return p + strings.ToUpper(hex.EncodeToString(b[:]))
}

// Create stores a new entry (id generated when empty) and returns the
// change. A duplicate id is ErrConflict; bad fields a ValidationError.
func (s *Service) Create(ctx context.Context, who string, e Entry) (Change, error) {
	m := e.meta()
	if m.ID == "" {
		m.ID = newID(e.kind())
	}
	m.Revision, m.Version, m.Updated, m.UpdatedBy = 0, 0, time.Time{}, ""
	if a, ok := e.(*Approval); ok {
		// A request starts as requested; approving is the approver's act.
		if a.Status != "" && a.Status != StatusRequested {
			return Change{}, ValidationError{{Field: "status", Msg: "a new approval is requested; approve or deny it afterwards"}}
		}
		a.Status, a.Approver, a.Decided, a.Comment, a.Returned = StatusRequested, "", time.Time{}, "", time.Time{}
	} else if m.Status == "" {
		m.Status = StatusActive
	}
	if err := s.check(ctx, e); err != nil {
		return Change{}, err
	}
	ws := []write{{e: e, action: ActionCreated}}
	if d, err := s.disposing(ctx, e); err != nil {
		return Change{}, err
	} else if d != nil {
		ws = append(ws, *d)
	}
	cs, err := s.commit(ctx, who, ws)
	if err != nil {
		if errors.Is(err, ErrConflict) && len(ws) == 1 {
			return Change{}, fmt.Errorf("register: %s %s exists already: %w", e.kind(), m.ID, ErrConflict)
		}
		return Change{}, err
	}
	cs[0].Also = cs[1:]
	return cs[0], nil
}

// disposing is the write that makes the medium a disposal names 廃棄済 in
// the disposal's own transaction: a stick recorded as destroyed must not
// stay allowed on the PCs or be carried out. nil when e is no disposal of
// a medium still in use (or lost, then found and destroyed).
func (s *Service) disposing(ctx context.Context, e Entry) (*write, error) {
	d, ok := e.(*Disposal)
	if !ok || d.RegisterID == "" || d.Status == StatusRetired {
		return nil, nil
	}
	cur, err := s.Get(ctx, KindMedia, d.RegisterID)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	m := *cur.(*MediaEntry)
	if m.Status != StatusActive && m.Status != StatusLost {
		return nil, nil
	}
	before, err := encode(&m)
	if err != nil {
		return nil, err
	}
	m.Status = StatusDisposed
	return &write{e: &m, rev: m.Revision, before: before, action: ActionUpdated, cause: string(KindDisposals) + "/" + d.ID}, nil
}

// check validates e and its references to other entries.
func (s *Service) check(ctx context.Context, e Entry) error {
	// Every problem at once, references included: fixing the dates only to
	// learn next that the register number is wrong is a second round trip.
	var errs ValidationError
	if err := Validate(e, s.now()); err != nil && !errors.As(err, &errs) {
		return err
	}
	switch e := e.(type) {
	case *Disposal:
		// What was disposed of: the data (a PI entry) or the medium itself.
		if e.RegisterID != "" {
			found := false
			for _, k := range []Kind{KindPI, KindMedia} {
				if _, err := s.Get(ctx, k, e.RegisterID); err == nil {
					found = true
					break
				} else if !errors.Is(err, ErrNotFound) {
					return err
				}
			}
			if !found {
				errs = append(errs, FieldError{Field: "register_id", Msg: fmt.Sprintf("no register entry %s in the PI or media register", e.RegisterID)})
			}
		}
	case *MediaEntry:
		if e.Status == StatusActive {
			media, err := s.List(ctx, KindMedia, Filter{})
			if err != nil {
				return err
			}
			for _, m := range media {
				if fe, dup := sameSerial(e, m.(*MediaEntry)); dup {
					errs = append(errs, fe)
				}
			}
		}
	case *Approval:
		if openApproval(e) {
			refs, err := s.approvalRefs(ctx)
			if err != nil {
				return err
			}
			errs = append(errs, refs.check(e)...)
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// sameSerial reports whether active medium e would be a second active
// entry for other's device: the agent matches serials case-insensitively,
// so two entries would be one stick under two numbers.
func sameSerial(e, other *MediaEntry) (FieldError, bool) {
	if other.ID == e.ID || other.Status != StatusActive || e.Status != StatusActive || foldKey(other.Serial) != foldKey(e.Serial) {
		return FieldError{}, false
	}
	return FieldError{Field: "serial", Msg: fmt.Sprintf("serial %s is registered already as %s (active, serial %s)", e.Serial, other.ID, other.Serial)}, true
}

// openApproval says whether a's media and register entries must exist as
// it names them: a request may be approved and an approved window is what
// the compiler opens on the PC. A closed record (denied, returned, retired)
// is history: its stick may be disposed since and a migrated paper record
// may name register numbers Mamori never had.
func openApproval(a *Approval) bool { return a.Status == StatusRequested || a.Status == StatusApproved }

// approvalRefs is what an open approval may name: the media register by
// serial (folded, as the agent compares them) and the PI register's ids.
type approvalRefs struct {
	active map[string]bool        // folded serial of an active medium
	any    map[string]*MediaEntry // folded serial -> a medium of it, for the message
	pi     map[string]bool
}

func (s *Service) approvalRefs(ctx context.Context) (approvalRefs, error) {
	r := approvalRefs{active: map[string]bool{}, any: map[string]*MediaEntry{}, pi: map[string]bool{}}
	media, err := s.List(ctx, KindMedia, Filter{})
	if err != nil {
		return r, err
	}
	for _, e := range media {
		m := e.(*MediaEntry)
		k := foldKey(m.Serial)
		r.active[k] = r.active[k] || m.Status == StatusActive
		r.any[k] = m
	}
	pis, err := s.List(ctx, KindPI, Filter{})
	if err != nil {
		return r, err
	}
	for _, e := range pis {
		// A retired entry's data is no longer held: nothing of it can be
		// carried out.
		r.pi[e.meta().ID] = e.meta().Status != StatusRetired
	}
	return r, nil
}

// check lists what a names that cannot be: a medium the media register
// has as lost or disposed (and none active of that serial), register ids
// that do not exist. A serial the register does not know is allowed: a
// window that lets in a stick the office has not registered (a visitor's,
// one just bought) is what a carry-out approval is for where registered
// media are allowed anyway (allow_registered).
func (r approvalRefs) check(a *Approval) ValidationError {
	var errs ValidationError
	if k := foldKey(a.Serial); !r.active[k] && r.any[k] != nil {
		m := r.any[k]
		errs = append(errs, FieldError{Field: "serial", Msg: fmt.Sprintf("medium %s (serial %s) is %s: only an active medium can be carried out", m.ID, m.Serial, m.Status)})
	}
	for i, id := range a.RegisterIDs {
		active, ok := r.pi[id]
		switch {
		case !ok:
			errs = append(errs, FieldError{Field: fmt.Sprintf("register_ids[%d]", i), Msg: fmt.Sprintf("no register entry %s", id)})
		case !active:
			errs = append(errs, FieldError{Field: fmt.Sprintf("register_ids[%d]", i), Msg: fmt.Sprintf("register entry %s is retired", id)})
		}
	}
	return errs
}

// keepDecision carries into a, an update of stored approval c, what only
// the approve, deny and return actions set: the approver, the decision time
// and comment, and the return time (set now when an update returns it).
// A form shows them but cannot change or clear them (Import refuses a file
// that would).
func keepDecision(a, c *Approval, now time.Time) {
	a.Approver, a.Decided, a.Comment, a.Returned = c.Approver, c.Decided, c.Comment, c.Returned
	// Only a return records now: a returned record without a return time
	// (a migrated one) is saved as it is.
	if a.Status == StatusReturned && c.Status != StatusReturned && a.Returned.IsZero() {
		a.Returned = now.UTC()
	}
}

// approvalChange lists what is wrong with changing stored approval c into
// a by an update or import. The status only moves requested ->
// approved/denied (the approve/deny action), approved -> returned, or to
// retired; once decided, the terms are what the approver approved. Times
// in the same minute as the stored ones are the stored ones (a form or a
// CSV cell names whole minutes) and are set to them.
func approvalChange(c, a *Approval) ValidationError {
	for _, p := range []struct{ in, was *time.Time }{{&a.From, &c.From}, {&a.To, &c.To}, {&a.Decided, &c.Decided}, {&a.Returned, &c.Returned}} {
		if !p.in.IsZero() && (p.in.Equal(p.was.Truncate(time.Second)) || p.in.Second() == 0 && p.in.Equal(p.was.Truncate(time.Minute))) {
			*p.in = *p.was
		}
	}
	var errs ValidationError
	switch {
	case a.Status == c.Status, a.Status == StatusRetired, c.Status == StatusApproved && a.Status == StatusReturned:
	case c.Status == StatusRequested && (a.Status == StatusApproved || a.Status == StatusDenied):
		errs = append(errs, FieldError{Field: "status", Msg: fmt.Sprintf("%s is requested: approve or deny a request with the approve/deny action", a.ID)})
	default:
		errs = append(errs, FieldError{Field: "status", Msg: fmt.Sprintf("a %s approval cannot become %s (requested -> approved or denied by the approve/deny action, approved -> returned)", c.Status, a.Status)})
	}
	if c.Status == StatusRequested {
		return errs
	}
	fixed := func(field string, same bool) {
		if !same {
			errs = append(errs, FieldError{Field: field, Msg: fmt.Sprintf("fixed once the approval is %s (by %s): ask for a new approval instead", c.Status, c.Approver)})
		}
	}
	fixed("requester", a.Requester == c.Requester)
	fixed("serial", a.Serial == c.Serial)
	fixed("host", a.Host == c.Host)
	fixed("purpose", a.Purpose == c.Purpose)
	fixed("register_ids", slices.Equal(a.RegisterIDs, c.RegisterIDs))
	fixed("from", a.From.Equal(c.From))
	fixed("to", a.To.Equal(c.To))
	return errs
}

// Update replaces entry e.ID if it is still at revision rev (else
// ErrConflict, nothing written). An entry equal to the stored one writes
// nothing and answers ActionUnchanged: the history lists real changes only.
// Approval decisions go through Decide.
func (s *Service) Update(ctx context.Context, who string, e Entry, rev int64) (Change, error) {
	if rev <= 0 {
		return Change{}, ValidationError{{Field: "revision", Msg: "required (the entry's revision as read, or If-Match)"}}
	}
	cur, err := s.Get(ctx, e.kind(), e.meta().ID)
	if err != nil {
		return Change{}, err
	}
	if cur.meta().Revision != rev {
		return Change{}, fmt.Errorf("register: %s %s is at revision %d, not %d: %w", e.kind(), e.meta().ID, cur.meta().Revision, rev, ErrConflict)
	}
	m, cm := e.meta(), cur.meta()
	m.Version, m.Updated, m.UpdatedBy, m.Revision = cm.Version, cm.Updated, cm.UpdatedBy, rev
	if m.Status == "" {
		m.Status = cm.Status
	}
	if a, ok := e.(*Approval); ok {
		c := cur.(*Approval)
		if errs := approvalChange(c, a); len(errs) > 0 {
			return Change{}, errs
		}
		keepDecision(a, c, s.now())
	}
	if err := s.check(ctx, e); err != nil {
		return Change{}, err
	}
	if sameEntry(cur, e) {
		return Change{Kind: e.kind(), ID: m.ID, Version: cm.Version, Action: ActionUnchanged, By: cm.UpdatedBy, At: cm.Updated, Revision: rev}, nil
	}
	before, err := encode(cur)
	if err != nil {
		return Change{}, err
	}
	action := ActionUpdated
	if m.Status == StatusRetired && cm.Status != StatusRetired {
		action = ActionRetired
	}
	ws := []write{{e: e, rev: rev, before: before, action: action}}
	if d, err := s.disposing(ctx, e); err != nil {
		return Change{}, err
	} else if d != nil {
		ws = append(ws, *d)
	}
	cs, err := s.commit(ctx, who, ws)
	if err != nil {
		return Change{}, err
	}
	cs[0].Also = cs[1:]
	return cs[0], nil
}

// Retire records the deletion of an entry: it is kept with status retired.
// rev 0 retires whatever revision is current.
func (s *Service) Retire(ctx context.Context, who string, k Kind, id string, rev int64) (Change, error) {
	cur, err := s.Get(ctx, k, id)
	if err != nil {
		return Change{}, err
	}
	if rev != 0 && cur.meta().Revision != rev {
		return Change{}, fmt.Errorf("register: %s %s is at revision %d, not %d: %w", k, id, cur.meta().Revision, rev, ErrConflict)
	}
	if cur.meta().Status == StatusRetired {
		return Change{}, fmt.Errorf("register: %s %s is retired already: %w", k, id, ErrConflict)
	}
	before, err := encode(cur)
	if err != nil {
		return Change{}, err
	}
	cur.meta().Status = StatusRetired
	cs, err := s.commit(ctx, who, []write{{e: cur, rev: cur.meta().Revision, before: before, action: ActionRetired}})
	if err != nil {
		return Change{}, err
	}
	return cs[0], nil
}

// Decide approves or denies a requested carry-out approval; who becomes
// the approver. rev 0 decides whatever revision is current.
func (s *Service) Decide(ctx context.Context, who, id string, approve bool, rev int64) (Change, error) {
	return s.DecideWithComment(ctx, who, id, approve, rev, "")
}

// DecideWithComment is Decide with the approver's comment kept on the
// approval (and so in its history).
func (s *Service) DecideWithComment(ctx context.Context, who, id string, approve bool, rev int64, comment string) (Change, error) {
	if len(comment) > maxField {
		return Change{}, ValidationError{{Field: "comment", Msg: fmt.Sprintf("longer than %d bytes", maxField)}}
	}
	e, err := s.Get(ctx, KindApprovals, id)
	if err != nil {
		return Change{}, err
	}
	a := e.(*Approval)
	if rev != 0 && a.Revision != rev {
		return Change{}, fmt.Errorf("register: approval %s is at revision %d, not %d: %w", id, a.Revision, rev, ErrConflict)
	}
	if a.Status != StatusRequested {
		return Change{}, fmt.Errorf("register: approval %s is %s, not requested: %w", id, a.Status, ErrConflict)
	}
	if !a.To.After(s.now()) && approve {
		return Change{}, ValidationError{{Field: "to", Msg: "the window has ended already"}}
	}
	if approve {
		// The medium may have been lost or disposed since the request.
		refs, err := s.approvalRefs(ctx)
		if err != nil {
			return Change{}, err
		}
		if errs := refs.check(a); len(errs) > 0 {
			return Change{}, errs
		}
	}
	before, err := encode(a)
	if err != nil {
		return Change{}, err
	}
	a.Status, a.Approver, a.Decided, a.Comment = StatusDenied, who, s.now().UTC(), comment
	action := ActionDenied
	if approve {
		a.Status, action = StatusApproved, ActionApproved
	}
	cs, err := s.commit(ctx, who, []write{{e: a, rev: a.Revision, before: before, action: action}})
	if err != nil {
		return Change{}, err
	}
	return cs[0], nil
}

// ImportRow is one parsed row; Row is its spreadsheet row (the header is row 1).
type ImportRow struct {
	Row   int
	Entry Entry
	// absent lists the schema columns the file did not have (ParseCSV):
	// an existing entry keeps its stored values of those.
	absent []int
	// revision is the row's 改訂 cell (rowRevision of the entry as
	// exported); hasRevision says the file has that column, so that an
	// emptied cell of an existing entry is a mismatch, not a hand-typed row.
	revision    string
	hasRevision bool
}

// Import applies rows of register k in one transaction: a row whose id
// exists updates it, a new id creates it, an unchanged row is skipped. Any
// bad row fails the whole import with a ValidationError naming every bad
// row and field (errs, from parsing the cells, are reported with them);
// nothing is written.
//
// Columns the file does not have keep an existing entry's stored values
// (a file of a few columns updates those), new entries get the defaults.
// A row carrying the 改訂 of an export whose entry has changed since
// would undo that change: the import is refused, naming those rows.
//
// Imported carry-out approvals keep their status and approver (migrating a
// paper 持出し記録), with limits so that a file cannot stand in for an
// approver's act in Mamori: an approved row whose window has not ended is
// refused (import it as requested and approve it here), a returned one
// needs an approver, a decision time cannot lie ahead, and a stored
// approval's decision and, once decided, its terms cannot be changed by
// import (the rules of Update). A stored approval's comment and return time
// are the actions': a cell must say what is stored or be empty (kept). A
// new row's return time needs a returned (or retired) status, not ahead
// and not before the decision; its comment a decided one. A
// disposal's register_id must name a personal-information entry that
// exists; an active medium's serial may be registered once.
func (s *Service) Import(ctx context.Context, who string, k Kind, in []ImportRow, errs ValidationError) ([]Change, error) {
	if !validKind(k) {
		return nil, fmt.Errorf("register: unknown register %q: %w", k, ErrInvalid)
	}
	sc, err := schemaOf(k)
	if err != nil {
		return nil, err
	}
	now := s.now()
	rowErr := func(row int, field, format string, a ...any) {
		errs = append(errs, FieldError{Row: row, Field: field, Msg: fmt.Sprintf(format, a...)})
	}
	// A cell that could not be read is reported once, not again as empty.
	type cell struct {
		row   int
		field string
	}
	unread := map[cell]bool{}
	for _, fe := range errs {
		unread[cell{fe.Row, fe.Field}] = true
	}
	cur, err := s.List(ctx, k, Filter{})
	if err != nil {
		return nil, err
	}
	byID := map[string]Entry{}
	for _, e := range cur {
		byID[e.meta().ID] = e
	}
	seen := map[string]int{}
	for _, ir := range in {
		r := ir.Entry
		if r == nil || r.kind() != k {
			return nil, fmt.Errorf("register: import %s: row %d is not a %s entry: %w", k, ir.Row, k, ErrInvalid)
		}
		m := r.meta()
		if old, ok := byID[m.ID]; ok {
			for _, i := range ir.absent {
				sc.cols[i].keep(r, old)
			}
			if a, ok := r.(*Approval); ok {
				// An empty cell keeps what the actions recorded; another
				// value is refused (checkImportedApproval).
				oa := old.(*Approval)
				if a.Comment == "" {
					a.Comment = oa.Comment
				}
				if a.Returned.IsZero() {
					a.Returned = oa.Returned
				}
			}
		}
		if m.Status == "" {
			m.Status = StatusActive
			if k == KindApprovals {
				m.Status = StatusRequested
			}
		}
		if err := Validate(r, now); err != nil {
			for _, fe := range err.(ValidationError) {
				if fe.Row = ir.Row; !unread[cell{fe.Row, fe.Field}] {
					errs = append(errs, fe)
				}
			}
		}
		if j, dup := seen[m.ID]; dup && m.ID != "" {
			rowErr(ir.Row, "id", "%s repeats row %d", m.ID, j)
		}
		seen[m.ID] = ir.Row
	}
	// What a disposal may name: a PI entry or a medium (check's rule).
	var disposable map[string]bool
	if k == KindDisposals {
		disposable = map[string]bool{}
		for _, rk := range []Kind{KindPI, KindMedia} {
			es, err := s.List(ctx, rk, Filter{})
			if err != nil {
				return nil, err
			}
			for _, e := range es {
				disposable[e.meta().ID] = true
			}
		}
	}
	// The active media as they would stand after the import, by folded
	// serial, so a file can dispose of a stick and register its
	// replacement together.
	activeAfter := map[string][]*MediaEntry{}
	if k == KindMedia {
		after := map[string]*MediaEntry{}
		for id, e := range byID {
			after[id] = e.(*MediaEntry)
		}
		for _, ir := range in {
			after[ir.Entry.meta().ID] = ir.Entry.(*MediaEntry)
		}
		for _, m := range after {
			if m.Status == StatusActive {
				activeAfter[foldKey(m.Serial)] = append(activeAfter[foldKey(m.Serial)], m)
			}
		}
		for _, ms := range activeAfter {
			sort.Slice(ms, func(i, j int) bool { return ms[i].ID < ms[j].ID })
		}
	}
	for _, ir := range in {
		old := byID[ir.Entry.meta().ID]
		switch r := ir.Entry.(type) {
		case *Approval:
			var oa *Approval
			if old != nil {
				oa = old.(*Approval)
			}
			s.checkImportedApproval(ir.Row, r, oa, now, rowErr)
			// The media and register ids are not checked here: an open
			// window cannot be imported (checkImportedApproval), an ended
			// one is history, and a request is checked when approved. A
			// register as the API let it become (a request whose stick was
			// lost since) must import on another server.
		case *Disposal:
			if r.RegisterID != "" && !disposable[r.RegisterID] {
				rowErr(ir.Row, "register_id", "no register entry %s in the PI or media register", r.RegisterID)
			}
		case *MediaEntry:
			for _, m := range activeAfter[foldKey(r.Serial)] {
				if fe, dup := sameSerial(r, m); dup {
					rowErr(ir.Row, fe.Field, "%s", fe.Msg)
				}
			}
		}
		if old != nil && ir.hasRevision && !sameEntry(old, ir.Entry) {
			if now := rowRevision(sc, old); now != ir.revision {
				rowErr(ir.Row, "revision", "%s changed since this file was exported (revision %s, now %s); importing the row would undo that change: export again and make your edits in the new file",
					old.meta().ID, ir.revision, now)
			}
		}
	}
	if len(errs) > 0 {
		sort.SliceStable(errs, func(i, j int) bool { return errs[i].Row < errs[j].Row })
		return nil, errs
	}
	var ws []write
	for _, ir := range in {
		r := ir.Entry
		m := r.meta()
		old, ok := byID[m.ID]
		if !ok {
			ws = append(ws, write{e: r, action: ActionCreated})
			continue
		}
		om := old.meta()
		m.Version, m.Revision = om.Version, om.Revision
		if a, ok := r.(*Approval); ok {
			keepDecision(a, old.(*Approval), now) // as an update: returning records when
		}
		if sameEntry(old, r) {
			continue
		}
		before, err := encode(old)
		if err != nil {
			return nil, err
		}
		action := ActionUpdated
		if m.Status == StatusRetired && om.Status != StatusRetired {
			action = ActionRetired
		}
		ws = append(ws, write{e: r, rev: om.Revision, before: before, action: action})
	}
	// Media the imported disposals record as destroyed, once each.
	disposed := map[string]bool{}
	for _, w := range slices.Clone(ws) {
		d, err := s.disposing(ctx, w.e)
		if err != nil {
			return nil, err
		}
		if d != nil && !disposed[d.e.meta().ID] {
			disposed[d.e.meta().ID] = true
			ws = append(ws, *d)
		}
	}
	if len(ws) == 0 {
		return []Change{}, nil
	}
	return s.commit(ctx, who, ws)
}

// checkImportedApproval applies Import's approval rules to row a (old is
// the stored entry of that id, or nil).
func (s *Service) checkImportedApproval(row int, a, old *Approval, now time.Time, bad func(int, string, string, ...any)) {
	if !a.Decided.IsZero() && a.Decided.After(now) {
		bad(row, "decided", "%s is in the future", a.Decided.Format(time.RFC3339))
	}
	if old != nil {
		for _, fe := range approvalChange(old, a) {
			bad(row, fe.Field, "%s", fe.Msg)
		}
		switch {
		case a.Approver != old.Approver:
			bad(row, "approver", "%s was decided by %q; an import cannot change the approver", a.ID, old.Approver)
		case !a.Decided.Equal(old.Decided):
			bad(row, "decided", "%s was decided at %s; an import cannot change that", a.ID, old.Decided.Format(time.RFC3339))
		}
		// Import put the stored values in empty cells: a difference is a
		// value the file gives.
		if a.Comment != old.Comment {
			bad(row, "comment", "%s: the approver's comment is recorded by the approve/deny action; a file cannot set or change it (stored: %q)", a.ID, old.Comment)
		}
		if !a.Returned.Equal(old.Returned) {
			was := "none"
			if !old.Returned.IsZero() {
				was = old.Returned.Format(time.RFC3339)
			}
			bad(row, "returned", "%s: the return time is recorded by the return action; a file cannot set or change it (stored: %s)", a.ID, was)
		}
		return
	}
	// A migrated record. Returned before its window began is allowed: the
	// return action records a trip called off so, and its export must
	// import on another server.
	if !a.Returned.IsZero() {
		switch {
		case a.Status != StatusReturned && a.Status != StatusRetired:
			bad(row, "returned", "only a returned approval has a return time (this row is %s)", a.Status)
		case a.Returned.After(now):
			bad(row, "returned", "%s is in the future", a.Returned.Format(time.RFC3339))
		case !a.Decided.IsZero() && a.Returned.Before(a.Decided):
			bad(row, "returned", "returned at %s, before the decision at %s", a.Returned.Format(time.RFC3339), a.Decided.Format(time.RFC3339))
		}
	}
	if a.Comment != "" && a.Status == StatusRequested {
		bad(row, "comment", "a requested approval has no comment yet: the approver gives it with the decision")
	}
	switch a.Status {
	case StatusApproved:
		if a.To.After(now) {
			bad(row, "status", "approved window until %s has not ended: an imported approval would open it on %s without an approver's act in Mamori; import it as %s (申請中) and approve it here",
				a.To.Format(time.RFC3339), a.Host, StatusRequested)
		}
	case StatusRequested:
		if a.Approver != "" || !a.Decided.IsZero() {
			bad(row, "approver", "a requested approval has no approver or decision time yet")
		}
	}
}

// sameEntry compares the register fields, not the bookkeeping.
func sameEntry(a, b Entry) bool {
	strip := func(e Entry) []byte {
		m := e.meta()
		keep := *m
		*m = Meta{ID: keep.ID, Status: keep.Status}
		raw, _ := json.Marshal(e)
		*m = keep
		return raw
	}
	return bytes.Equal(strip(a), strip(b))
}
