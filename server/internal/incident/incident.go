// Package incident keeps the record of personal-data incidents (事故・漏えい
// 等の記録) that the Privacy Mark asks for and the APPI report to the PPC
// (漏えい等報告) draws on: opened from an alert, an event or by hand, with
// the 台帳 entries the events touch, the number of persons from the
// register's record counts, the report-exemption conditions, 速報/確報
// deadlines (overdue ones become alerts), and a worksheet following the
// PPC report form's items in Japanese (HTML to print, CSV) with the
// evidence bundle of its events.
package incident

import (
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

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/register"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/labels"
)

// Event vocabulary (server stream, control "incident").
const (
	Control     = "incident"
	TypeOpened  = "incident.opened"
	TypeUpdated = "incident.updated"
	TypeOverdue = "incident.overdue"
)

// Statuses.
const (
	StatusOpen        = "open"
	StatusPreliminary = "preliminary_reported" // 速報済み
	StatusFinal       = "final_reported"       // 確報済み
	StatusClosed      = "closed"
)

var statuses = []string{StatusOpen, StatusPreliminary, StatusFinal, StatusClosed}

const dir = "incidents/"

// Limits.
const (
	maxText   = 8000
	maxEvents = 500
)

// Errors mapped to HTTP statuses.
var (
	ErrNotFound = errors.New("incident: not found")
	ErrInvalid  = errors.New("incident: invalid")
	ErrConflict = errors.New("incident: changed since that revision")
)

// Source says what an incident was opened from.
type Source struct {
	Kind  string `json:"kind"` // alert | event | manual
	Index *int64 `json:"index,omitempty"`
}

// Affected is one register entry the incident touches.
type Affected struct {
	Kind        register.Kind `json:"kind"` // pi | media | approvals
	ID          string        `json:"id"`
	Name        string        `json:"name"`
	RecordCount int           `json:"record_count,omitempty"`
	Sensitive   bool          `json:"sensitive,omitempty"`
	Why         string        `json:"why"` // how it was found (Japanese)
}

// Incident is one record.
type Incident struct {
	ID       string `json:"id"`
	Revision int64  `json:"revision,omitempty"` // etcd revision; send back to update
	Status   string `json:"status"`
	Title    string `json:"title"`
	Source   Source `json:"source"`

	DiscoveredAt time.Time  `json:"discovered_at"` // 発覚日時 (知った時点)
	OccurredAt   *time.Time `json:"occurred_at,omitempty"`
	Summary      string     `json:"summary"`    // 概要
	DataItems    string     `json:"data_items"` // 漏えい等した個人データの項目

	Events   []int64    `json:"events"`   // log indexes of the incident's events
	Affected []Affected `json:"affected"` // derived from the events (and added by hand)
	Hosts    []string   `json:"hosts,omitempty"`

	Persons       int  `json:"persons"`        // 本人の数
	PersonsEdited bool `json:"persons_edited"` // set by hand rather than from the record counts

	Sensitive        bool `json:"sensitive"`          // 要配慮個人情報
	MyNumber         bool `json:"my_number"`          // 特定個人情報 (マイナンバー)
	PropertyDamage   bool `json:"property_damage"`    // 財産的被害のおそれ
	Intent           bool `json:"intent"`             // 不正の目的 (60-day 確報)
	EncryptedKeySafe bool `json:"encrypted_key_safe"` // 高度な暗号化で鍵は漏えいしていない (exemption)

	Cause           string `json:"cause"`            // 原因
	SecondaryDamage string `json:"secondary_damage"` // 二次被害又はそのおそれ
	Measures        string `json:"measures"`         // 講じた措置
	PeopleInformed  string `json:"people_informed"`  // 本人への対応
	Publication     string `json:"publication"`      // 公表
	Recurrence      string `json:"recurrence"`       // 再発防止のための措置
	Notes           string `json:"notes"`            // その他参考となる事項

	PreliminaryReportedAt *time.Time `json:"preliminary_reported_at,omitempty"`
	FinalReportedAt       *time.Time `json:"final_reported_at,omitempty"`
	OverdueRaised         []string   `json:"overdue_raised,omitempty"` // preliminary | final

	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by"`
	Updated   time.Time `json:"updated"`
	UpdatedBy string    `json:"updated_by"`

	// Deadlines are computed on every read, never stored.
	Deadlines Deadlines `json:"deadlines"`
	// Reportable says whether a PPC report is required, and why (Japanese).
	Reportable       bool   `json:"reportable"`
	ReportableReason string `json:"reportable_reason"`
}

// KV is the control-plane store (state.State).
type KV interface {
	GetJSON(ctx context.Context, key string, v any) (int64, error)
	PutJSON(ctx context.Context, key string, v any, ifRev int64) (int64, error)
	ListJSON(ctx context.Context, dir string) ([]string, [][]byte, error)
}

// Events is the part of the event store incidents use.
type Events interface {
	Query(ctx context.Context, f eventlog.Filter) (eventlog.Page, error)
	AppendServer(ctx context.Context, e event.Event) (event.Event, error)
}

// Registers reads register entries (register.Service).
type Registers interface {
	Get(ctx context.Context, k register.Kind, id string) (register.Entry, error)
	List(ctx context.Context, k register.Kind, f register.Filter) ([]register.Entry, error)
}

// Config configures New.
type Config struct {
	KV        KV
	Events    Events
	Registers Registers
	// Hostname names an agent (for register locations); "" if unknown.
	Hostname func(ctx context.Context, agent string) string
	// IsNotFound and IsConflict read KV errors.
	IsNotFound, IsConflict func(error) bool
	Now                    func() time.Time
	Log                    zerolog.Logger
}

// Service keeps incidents.
type Service struct {
	cfg Config
	log zerolog.Logger
	mu  sync.Mutex // serialises overdue checks
}

// New returns a service.
func New(cfg Config) (*Service, error) {
	if cfg.KV == nil || cfg.Events == nil || cfg.Registers == nil || cfg.IsNotFound == nil || cfg.IsConflict == nil {
		return nil, errors.New("incident: Config.KV, Events, Registers, IsNotFound and IsConflict are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Hostname == nil {
		cfg.Hostname = func(context.Context, string) string { return "" }
	}
	return &Service{cfg: cfg, log: cfg.Log.With().Str("component", "incident").Logger()}, nil
}

// OpenRequest is the body of POST /api/v1/incidents. Alert or Event names
// the log index the incident comes from; neither means by hand.
type OpenRequest struct {
	Alert        *int64     `json:"alert,omitempty"`
	Event        *int64     `json:"event,omitempty"`
	Title        string     `json:"title"`
	DiscoveredAt time.Time  `json:"discovered_at"`
	OccurredAt   *time.Time `json:"occurred_at,omitempty"`
	Summary      string     `json:"summary"`
	Intent       bool       `json:"intent"`
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Open records a new incident.
func (s *Service) Open(ctx context.Context, who string, req OpenRequest) (Incident, error) {
	now := s.cfg.Now().UTC()
	if req.Alert != nil && req.Event != nil {
		return Incident{}, invalid("give alert or event, not both")
	}
	if req.DiscoveredAt.IsZero() {
		req.DiscoveredAt = now
	}
	in := Incident{Status: StatusOpen, Title: strings.TrimSpace(req.Title), DiscoveredAt: req.DiscoveredAt.UTC(),
		OccurredAt: req.OccurredAt, Summary: req.Summary, Intent: req.Intent, Source: Source{Kind: "manual"},
		Events: []int64{}, Affected: []Affected{}, Created: now, CreatedBy: who, Updated: now, UpdatedBy: who}
	if err := in.validate(now); err != nil {
		return Incident{}, err
	}
	idx := req.Alert
	kind := "alert"
	if req.Event != nil {
		idx, kind = req.Event, "event"
	}
	if idx != nil {
		src, err := s.eventAt(ctx, *idx)
		if err != nil {
			return Incident{}, err
		}
		if kind == "alert" && src.Type != "compliance.alert" && src.Severity != event.Violation && src.Severity != event.Warning {
			return Incident{}, invalid("event %d is not an alert (a compliance alert or a warning/violation event)", *idx)
		}
		in.Source = Source{Kind: kind, Index: idx}
		related, err := s.related(ctx, src)
		if err != nil {
			return Incident{}, err
		}
		in.Events = related
		if in.Title == "" {
			in.Title = titleOf(src)
		}
		if in.OccurredAt == nil {
			t := src.Time.UTC()
			in.OccurredAt = &t
		}
	}
	if in.Title == "" {
		return Incident{}, invalid("title is required when opening by hand")
	}
	if err := in.validate(now); err != nil {
		return Incident{}, err
	}
	if err := s.derive(ctx, &in); err != nil {
		return Incident{}, err
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	in.ID = "INC-" + in.DiscoveredAt.In(JST).Format("20060102") + "-" + hex.EncodeToString(b)
	rev, err := s.cfg.KV.PutJSON(ctx, dir+in.ID, in, 0)
	if err != nil {
		return Incident{}, fmt.Errorf("incident: storing %s: %w", in.ID, err)
	}
	in.Revision = rev
	s.record(ctx, who, TypeOpened, in, event.Attrs{"source": in.Source.Kind, "events": len(in.Events),
		"affected": affectedIDs(in.Affected), "persons": in.Persons})
	s.fill(&in)
	return in, nil
}

func affectedIDs(as []Affected) []any {
	out := make([]any, 0, len(as))
	for _, a := range as {
		out = append(out, string(a.Kind)+"/"+a.ID)
	}
	return out
}

// titleOf names an incident after the event it comes from.
func titleOf(e eventlog.Stored) string {
	str := func(k string) string { s, _ := e.Attrs[k].(string); return s }
	switch {
	case e.Type == "compliance.alert":
		return fmt.Sprintf("%s の%s: %s", str("hostname"), labels.Of(labels.Control, labels.JA, str("control")), str("reason_ja"))
	case strings.HasPrefix(e.Type, "media."):
		return fmt.Sprintf("未登録・未承認の媒体 (%s %s)", str("vendor"), str("product"))
	default:
		return labels.Of(labels.EventType, labels.JA, e.Type) + " " + e.Object
	}
}

// eventAt reads the event at a log index.
func (s *Service) eventAt(ctx context.Context, idx int64) (eventlog.Stored, error) {
	if idx < 0 {
		return eventlog.Stored{}, invalid("index %d", idx)
	}
	p, err := s.cfg.Events.Query(ctx, eventlog.Filter{Cursor: eventlog.CursorAfter(idx - 1), Limit: 1})
	if err != nil {
		return eventlog.Stored{}, fmt.Errorf("incident: reading event %d: %w", idx, err)
	}
	if len(p.Events) == 0 || p.Events[0].Index != idx {
		return eventlog.Stored{}, fmt.Errorf("%w: no event at index %d", ErrNotFound, idx)
	}
	return p.Events[0], nil
}

// related lists the incident's events: the source, and the same agent's
// events of the same control around it (an hour before the alert's start,
// up to the source), at most maxEvents.
func (s *Service) related(ctx context.Context, src eventlog.Stored) ([]int64, error) {
	agent, control, from := src.Agent, src.Control, src.Time.Add(-time.Hour)
	if src.Type == "compliance.alert" {
		agent, _ = src.Attrs["agent"].(string)
		control, _ = src.Attrs["control"].(string)
		if since, err := time.Parse(time.RFC3339, fmt.Sprint(src.Attrs["since"])); err == nil {
			from = since.Add(-time.Hour)
		}
	}
	out := []int64{src.Index}
	if agent == "" || agent == event.ServerStream {
		return out, nil
	}
	f := eventlog.Filter{Agent: agent, Control: control, From: from, To: src.Time.Add(time.Second), Limit: eventlog.MaxLimit}
	for len(out) < maxEvents {
		p, err := s.cfg.Events.Query(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("incident: related events: %w", err)
		}
		for _, e := range p.Events {
			if len(out) < maxEvents && e.Index != src.Index && !strings.HasSuffix(e.Type, ".status") {
				out = append(out, e.Index)
			}
		}
		if p.Next == "" {
			break
		}
		f.Cursor = p.Next
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// derive fills Affected, Hosts and (unless edited) Persons from the events.
func (s *Service) derive(ctx context.Context, in *Incident) error {
	manual := []Affected{}
	for _, a := range in.Affected {
		if strings.HasPrefix(a.Why, "手動") {
			manual = append(manual, a)
		}
	}
	found := map[string]Affected{}
	add := func(a Affected) {
		k := string(a.Kind) + "/" + a.ID
		if _, ok := found[k]; !ok {
			found[k] = a
		}
	}
	pis, err := s.cfg.Registers.List(ctx, register.KindPI, register.Filter{})
	if err != nil {
		return fmt.Errorf("incident: reading the register: %w", err)
	}
	hosts := map[string]bool{}
	for _, idx := range in.Events {
		e, err := s.eventAt(ctx, idx)
		if err != nil {
			return err
		}
		str := func(k string) string { s, _ := e.Attrs[k].(string); return s }
		agent := e.Agent
		if e.Type == "compliance.alert" {
			agent = str("agent")
		}
		host := str("hostname")
		if host == "" && agent != "" && agent != event.ServerStream {
			host = s.cfg.Hostname(ctx, agent)
		}
		if host != "" {
			hosts[host] = true
		}
		if e.RegisterID != "" {
			if en, err := s.cfg.Registers.Get(ctx, register.KindPI, e.RegisterID); err == nil {
				p := en.(*register.PIEntry)
				add(Affected{Kind: register.KindPI, ID: p.ID, Name: p.Name, RecordCount: p.RecordCount, Sensitive: p.Sensitive,
					Why: fmt.Sprintf("イベント #%d の登録フォルダ", e.Index)})
			}
		}
		if id := str("approval_id"); id != "" {
			if en, err := s.cfg.Registers.Get(ctx, register.KindApprovals, id); err == nil {
				ap := en.(*register.Approval)
				add(Affected{Kind: register.KindApprovals, ID: ap.ID, Name: ap.Purpose,
					Why: fmt.Sprintf("イベント #%d の持出し承認 (%s から %s)", e.Index, ap.From.In(JST).Format("2006-01-02 15:04"), ap.To.In(JST).Format("2006-01-02 15:04"))})
				for _, rid := range ap.RegisterIDs {
					if en, err := s.cfg.Registers.Get(ctx, register.KindPI, rid); err == nil {
						p := en.(*register.PIEntry)
						add(Affected{Kind: register.KindPI, ID: p.ID, Name: p.Name, RecordCount: p.RecordCount, Sensitive: p.Sensitive,
							Why: fmt.Sprintf("持出し承認 %s の対象", ap.ID)})
					}
				}
			}
		}
		if serial := str("serial"); serial != "" {
			ms, err := s.cfg.Registers.List(ctx, register.KindMedia, register.Filter{})
			if err == nil {
				for _, en := range ms {
					if m := en.(*register.MediaEntry); m.Serial == serial {
						add(Affected{Kind: register.KindMedia, ID: m.ID, Name: m.Product,
							Why: fmt.Sprintf("イベント #%d の媒体 (シリアル %s)", e.Index, serial)})
					}
				}
			}
		}
		// Data kept on the PC could have gone to the medium or out: every
		// entry with a storage location on it.
		if host != "" && (strings.HasPrefix(e.Type, "media.") || e.Type == "compliance.alert" || e.Type == "fileaccess.bulk") {
			for _, en := range pis {
				p := en.(*register.PIEntry)
				if p.Status != register.StatusActive {
					continue
				}
				for _, l := range p.Locations {
					if strings.EqualFold(l.Host, host) {
						add(Affected{Kind: register.KindPI, ID: p.ID, Name: p.Name, RecordCount: p.RecordCount, Sensitive: p.Sensitive,
							Why: fmt.Sprintf("PC %s の保管場所 %s", host, l.Folder)})
						break
					}
				}
			}
		}
	}
	for _, a := range manual {
		add(a)
	}
	in.Affected = make([]Affected, 0, len(found))
	for _, a := range found {
		in.Affected = append(in.Affected, a)
	}
	sort.Slice(in.Affected, func(i, j int) bool {
		if in.Affected[i].Kind != in.Affected[j].Kind {
			return in.Affected[i].Kind < in.Affected[j].Kind
		}
		return in.Affected[i].ID < in.Affected[j].ID
	})
	in.Hosts = in.Hosts[:0]
	for h := range hosts {
		in.Hosts = append(in.Hosts, h)
	}
	sort.Strings(in.Hosts)
	if !in.PersonsEdited {
		in.Persons = 0
		for _, a := range in.Affected {
			if a.Kind == register.KindPI {
				in.Persons += a.RecordCount
			}
		}
	}
	for _, a := range in.Affected {
		if a.Sensitive {
			in.Sensitive = true // 要配慮 entries make it so; clearing it is a conscious edit afterwards
		}
	}
	return nil
}

// validate checks an incident's own fields.
func (in *Incident) validate(now time.Time) error {
	if !slices.Contains(statuses, in.Status) {
		return invalid("status must be one of %s", strings.Join(statuses, ", "))
	}
	if len(in.Title) > 200 {
		return invalid("title longer than 200 bytes")
	}
	for name, v := range map[string]string{"summary": in.Summary, "data_items": in.DataItems, "cause": in.Cause,
		"secondary_damage": in.SecondaryDamage, "measures": in.Measures, "people_informed": in.PeopleInformed,
		"publication": in.Publication, "recurrence": in.Recurrence, "notes": in.Notes} {
		if len(v) > maxText {
			return invalid("%s longer than %d bytes", name, maxText)
		}
	}
	if in.DiscoveredAt.After(now.Add(time.Hour)) {
		return invalid("discovered_at is in the future")
	}
	if in.DiscoveredAt.Before(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)) {
		return invalid("discovered_at is missing or before 2000")
	}
	if in.OccurredAt != nil && in.OccurredAt.After(in.DiscoveredAt.Add(time.Minute)) {
		return invalid("occurred_at is after discovered_at")
	}
	if in.Persons < 0 || in.Persons > 1_000_000_000 {
		return invalid("persons must be 0..1000000000")
	}
	if len(in.Events) > maxEvents {
		return invalid("at most %d events", maxEvents)
	}
	return nil
}

// fill computes the derived, unstored fields.
func (s *Service) fill(in *Incident) {
	in.Deadlines = Compute(in.DiscoveredAt, in.Intent, s.cfg.Now(), in.PreliminaryReportedAt != nil, in.FinalReportedAt != nil)
	var why []string
	if in.Sensitive {
		why = append(why, "要配慮個人情報")
	}
	if in.PropertyDamage {
		why = append(why, "財産的被害のおそれ")
	}
	if in.Intent {
		why = append(why, "不正の目的のおそれ")
	}
	switch {
	case in.Persons > 1000 && in.PersonsEdited:
		why = append(why, fmt.Sprintf("本人の数が1,000人超 (%d人)", in.Persons))
	case in.Persons > 1000:
		// Counted from whole register entries: the safe side while the
		// facts are gathered, but a guess until someone confirms it.
		why = append(why, fmt.Sprintf("本人の数が1,000人超の見込み (関係する台帳の件数の合計 %d人。実際の数を確認して「本人の数」に入力してください)", in.Persons))
	}
	switch {
	case len(why) == 0:
		in.Reportable, in.ReportableReason = false, "報告対象事態に該当しません (規則第7条各号のいずれにも当たらない)"
	case in.EncryptedKeySafe:
		in.Reportable, in.ReportableReason = false, "高度な暗号化等の措置が講じられ、鍵が漏えいしていないため報告対象外 ("+strings.Join(why, "、")+")"
	default:
		in.Reportable, in.ReportableReason = true, "報告対象: "+strings.Join(why, "、")
	}
	if in.Events == nil {
		in.Events = []int64{}
	}
	if in.Affected == nil {
		in.Affected = []Affected{}
	}
}

// Get reads one incident.
func (s *Service) Get(ctx context.Context, id string) (Incident, error) {
	if !validID(id) {
		return Incident{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	var in Incident
	rev, err := s.cfg.KV.GetJSON(ctx, dir+id, &in)
	if err != nil {
		if s.cfg.IsNotFound(err) {
			return Incident{}, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return Incident{}, fmt.Errorf("incident: reading %s: %w", id, err)
	}
	in.Revision = rev
	s.fill(&in)
	return in, nil
}

func validID(id string) bool {
	if len(id) < 5 || len(id) > 40 || !strings.HasPrefix(id, "INC-") {
		return false
	}
	for _, r := range id {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'Z' || r == '-') {
			return false
		}
	}
	return true
}

// List reads every incident, newest discovery first.
func (s *Service) List(ctx context.Context) ([]Incident, error) {
	_, vals, err := s.cfg.KV.ListJSON(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("incident: listing: %w", err)
	}
	out := make([]Incident, 0, len(vals))
	for _, b := range vals {
		var in Incident
		if err := json.Unmarshal(b, &in); err != nil {
			return nil, fmt.Errorf("incident: decoding: %w", err)
		}
		s.fill(&in)
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].DiscoveredAt.After(out[j].DiscoveredAt) })
	return out, nil
}

// Update is the body of PUT /api/v1/incidents/{id}: the editable fields.
// Revision must be the one read. AddEvents attaches more log indexes and
// AddEntries PI register ids by hand; both re-derive the affected entries.
type Update struct {
	Revision              int64      `json:"revision"`
	Status                string     `json:"status"`
	Title                 string     `json:"title"`
	DiscoveredAt          time.Time  `json:"discovered_at"`
	OccurredAt            *time.Time `json:"occurred_at"`
	Summary               string     `json:"summary"`
	DataItems             string     `json:"data_items"`
	Persons               *int       `json:"persons"` // nil: from the record counts again
	Sensitive             bool       `json:"sensitive"`
	MyNumber              bool       `json:"my_number"`
	PropertyDamage        bool       `json:"property_damage"`
	Intent                bool       `json:"intent"`
	EncryptedKeySafe      bool       `json:"encrypted_key_safe"`
	Cause                 string     `json:"cause"`
	SecondaryDamage       string     `json:"secondary_damage"`
	Measures              string     `json:"measures"`
	PeopleInformed        string     `json:"people_informed"`
	Publication           string     `json:"publication"`
	Recurrence            string     `json:"recurrence"`
	Notes                 string     `json:"notes"`
	PreliminaryReportedAt *time.Time `json:"preliminary_reported_at"`
	FinalReportedAt       *time.Time `json:"final_reported_at"`
	AddEvents             []int64    `json:"add_events"`
	AddEntries            []string   `json:"add_entries"`
}

// Update applies u; bad input changes nothing.
func (s *Service) Update(ctx context.Context, who, id string, u Update) (Incident, error) {
	old, err := s.Get(ctx, id)
	if err != nil {
		return Incident{}, err
	}
	if u.Revision != old.Revision {
		return Incident{}, fmt.Errorf("%w: revision %d, now %d", ErrConflict, u.Revision, old.Revision)
	}
	in := old
	in.Status, in.Title, in.DiscoveredAt, in.OccurredAt = u.Status, strings.TrimSpace(u.Title), u.DiscoveredAt.UTC(), u.OccurredAt
	in.Summary, in.DataItems, in.Cause, in.SecondaryDamage = u.Summary, u.DataItems, u.Cause, u.SecondaryDamage
	in.Measures, in.PeopleInformed, in.Publication, in.Recurrence, in.Notes = u.Measures, u.PeopleInformed, u.Publication, u.Recurrence, u.Notes
	in.Sensitive, in.MyNumber, in.PropertyDamage, in.Intent, in.EncryptedKeySafe = u.Sensitive, u.MyNumber, u.PropertyDamage, u.Intent, u.EncryptedKeySafe
	in.PreliminaryReportedAt, in.FinalReportedAt = u.PreliminaryReportedAt, u.FinalReportedAt
	// A form names whole minutes: a time in the stored one's minute is it,
	// not a change of a few seconds in the history.
	if u.DiscoveredAt.Second() == 0 && u.DiscoveredAt.Equal(old.DiscoveredAt.Truncate(time.Minute)) {
		in.DiscoveredAt = old.DiscoveredAt
	}
	for _, p := range []struct {
		in  *(*time.Time)
		was *time.Time
	}{{&in.OccurredAt, old.OccurredAt},
		{&in.PreliminaryReportedAt, old.PreliminaryReportedAt}, {&in.FinalReportedAt, old.FinalReportedAt}} {
		if *p.in != nil && p.was != nil && (*p.in).Second() == 0 && (*p.in).Equal(p.was.Truncate(time.Minute)) {
			*p.in = p.was
		}
	}
	if u.Persons != nil {
		in.Persons, in.PersonsEdited = *u.Persons, true
	} else {
		in.PersonsEdited = false
	}
	if in.Title == "" {
		return Incident{}, invalid("title is required")
	}
	now := s.cfg.Now().UTC()
	if len(u.AddEvents) > 0 {
		in.Events = append(slices.Clone(in.Events), u.AddEvents...)
		slices.Sort(in.Events)
		in.Events = slices.Compact(in.Events)
	}
	if err := in.validate(now); err != nil {
		return Incident{}, err
	}
	in.Affected = slices.Clone(in.Affected)
	for _, rid := range u.AddEntries {
		en, err := s.cfg.Registers.Get(ctx, register.KindPI, rid)
		if err != nil {
			return Incident{}, invalid("add_entries: no 個人情報管理台帳 entry %q", rid)
		}
		p := en.(*register.PIEntry)
		in.Affected = append(in.Affected, Affected{Kind: register.KindPI, ID: p.ID, Name: p.Name, RecordCount: p.RecordCount,
			Sensitive: p.Sensitive, Why: "手動で追加"})
	}
	sensitive := in.Sensitive
	if err := s.derive(ctx, &in); err != nil {
		return Incident{}, err
	}
	if len(u.AddEvents) == 0 && len(u.AddEntries) == 0 {
		in.Sensitive = sensitive // an explicit edit of the flag stands
	}
	if err := s.checkClose(in); err != nil {
		return Incident{}, err
	}
	in.Updated, in.UpdatedBy = now, who
	rev, err := s.cfg.KV.PutJSON(ctx, dir+id, in, old.Revision)
	if err != nil {
		if s.cfg.IsConflict(err) {
			return Incident{}, fmt.Errorf("%w: %v", ErrConflict, err)
		}
		return Incident{}, fmt.Errorf("incident: storing %s: %w", id, err)
	}
	in.Revision = rev
	s.record(ctx, who, TypeUpdated, in, changes(old, in))
	s.fill(&in)
	return in, nil
}

// checkClose refuses to close a reportable incident before both reports
// to the PPC are recorded: the law asks for them, and a closed incident
// raises no overdue alert. One found not reportable after all is closed
// once the facts that made it so (persons, flags) are corrected.
func (s *Service) checkClose(in Incident) error {
	if in.Status != StatusClosed {
		return nil
	}
	s.fill(&in)
	var missing []string
	if in.Reportable && in.PreliminaryReportedAt == nil {
		missing = append(missing, "preliminary_reported_at")
	}
	if in.Reportable && in.FinalReportedAt == nil {
		missing = append(missing, "final_reported_at")
	}
	if len(missing) > 0 {
		return invalid("a reportable incident is closed once its reports are recorded: give %s (%s)", strings.Join(missing, " and "), in.ReportableReason)
	}
	return nil
}

// changes names the fields that differ and their values before and after,
// for the event: the incident's history is read from its events. Long
// texts are cut; the record itself keeps them whole.
func changes(a, b Incident) event.Attrs {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	var ma, mb map[string]any
	_ = json.Unmarshal(ja, &ma)
	_ = json.Unmarshal(jb, &mb)
	keys := make([]string, 0, len(mb))
	for k := range mb {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	names := []any{}
	before, after := map[string]any{}, map[string]any{}
	for _, k := range keys {
		switch k {
		case "revision", "updated", "updated_by", "deadlines", "reportable", "reportable_reason", "overdue_raised":
			continue
		}
		x, _ := json.Marshal(ma[k])
		y, _ := json.Marshal(mb[k])
		if string(x) == string(y) {
			continue
		}
		names = append(names, k)
		if v := historyValue(ma[k]); v != nil {
			before[k] = v
		}
		if v := historyValue(mb[k]); v != nil {
			after[k] = v
		}
	}
	return event.Attrs{"changed": names, "before": before, "after": after}
}

// historyValue is v as an incident's history shows it: a text cut at 200
// characters, the register entries it touches by id; nil for nothing.
func historyValue(v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		if x == "" {
			return nil
		}
		if r := []rune(x); len(r) > 200 {
			return string(r[:200]) + "…"
		}
		return x
	case []any:
		if len(x) == 0 {
			return nil
		}
		ids := make([]any, 0, len(x))
		for _, e := range x {
			if m, ok := e.(map[string]any); ok {
				ids = append(ids, m["id"])
			} else {
				ids = append(ids, e)
			}
		}
		return ids
	}
	return v
}

// record appends an incident change to the server stream.
func (s *Service) record(ctx context.Context, who, typ string, in Incident, attrs event.Attrs) {
	attrs["status"] = in.Status
	attrs["title"] = in.Title
	sev := event.Info
	if typ == TypeOverdue {
		sev = event.Violation
	}
	e := event.Event{Agent: event.ServerStream, Control: Control, Type: typ, Severity: sev, Object: in.ID, User: who,
		Time: s.cfg.Now().UTC(), Attrs: attrs}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if _, err := s.cfg.Events.AppendServer(rctx, e); err != nil {
		s.log.Error().Err(err).Str("type", typ).Str("incident", in.ID).Msg("incident: change NOT recorded in the server stream")
	}
}

// CheckOverdue raises an incident.overdue alert, once per report, for
// every incident whose 速報 or 確報 is overdue.
func (s *Service) CheckOverdue(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	all, err := s.List(ctx)
	if err != nil {
		return err
	}
	for _, in := range all {
		if in.Status == StatusClosed || !in.Reportable {
			continue
		}
		var due []string
		if in.Deadlines.PreliminaryOverdue && !slices.Contains(in.OverdueRaised, "preliminary") {
			due = append(due, "preliminary")
		}
		if in.Deadlines.FinalOverdue && !slices.Contains(in.OverdueRaised, "final") {
			due = append(due, "final")
		}
		if len(due) == 0 {
			continue
		}
		var cur Incident
		rev, err := s.cfg.KV.GetJSON(ctx, dir+in.ID, &cur)
		if err != nil {
			return fmt.Errorf("incident: reading %s: %w", in.ID, err)
		}
		cur.OverdueRaised = append(cur.OverdueRaised, due...)
		if _, err := s.cfg.KV.PutJSON(ctx, dir+in.ID, cur, rev); err != nil {
			if s.cfg.IsConflict(err) {
				continue // changed meanwhile: next round
			}
			return fmt.Errorf("incident: storing %s: %w", in.ID, err)
		}
		for _, d := range due {
			by := in.Deadlines.PreliminaryBy
			what := "速報"
			if d == "final" {
				by, what = in.Deadlines.FinalBy, "確報"
			}
			s.record(ctx, "", TypeOverdue, in, event.Attrs{"report": d, "reason": what + "の期限 " + by + " を過ぎています", "deadline": by})
		}
	}
	return nil
}

// Run checks for overdue reports every interval until ctx ends.
func (s *Service) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := s.CheckOverdue(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn().Err(err).Msg("incident: overdue check")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
