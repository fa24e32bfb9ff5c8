// Package report builds the audit report for a period and scope (all
// departments or one): per control and clause (PPC 通則編 §10, JIS Q
// 15001) the pass rate per month, the exceptions with their reasons and
// durations, the 台帳 review status, carry-outs with approvals, disposals,
// incidents, the period's alerts and their handling, access-log figures
// per 台帳 entry, and a log-integrity statement (signed checkpoints at the
// start and end of the period and the consistency proof between them,
// verified). It renders as a printable A4
// HTML report in Japanese, as CSV, and the events behind it export as an
// evidence bundle.
//
// The figures come from aggregate queries of the event store
// (eventlog.Count and Scan), so a year of a few hundred PCs reads in
// seconds.
package report

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
	"golang.org/x/sync/errgroup"

	"github.com/mamori/mamori/policies"
	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/incident"
	"github.com/mamori/mamori/server/internal/register"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/evidence"
)

// JST is Japan time; periods are Japan dates.
var JST = incident.JST

// Controls reported, in order, with their Japanese names.
var Controls = []string{"screenlock", "media", "fileaccess", "backup", "posture"}

var controlJA = map[string]string{"screenlock": "離席時の画面ロック", "media": "電子媒体の持ち運び・持込み制限",
	"fileaccess": "個人データ取扱状況の記録", "backup": "滅失・毀損の防止 (バックアップ)", "posture": "不正アクセス・漏えい防止"}

// ErrInvalid is wrapped by errors for bad parameters.
var ErrInvalid = errors.New("report: invalid")

// ErrFuture is ErrInvalid for a period that starts in the future: nothing
// of it has happened, and a report would certify an empty log.
var ErrFuture = fmt.Errorf("%w: the period starts in the future (期間の開始日が未来です)", ErrInvalid)

// Store is the part of the event store the report reads.
type Store interface {
	Count(ctx context.Context, q eventlog.CountQuery) ([]eventlog.Group, error)
	Scan(ctx context.Context, q eventlog.CountQuery, attrsFor []string, fn func(*eventlog.ScanRow) error) error
	CheckpointBefore(ctx context.Context, t time.Time) (eventlog.Checkpoint, error)
	ReadHashes(indexes []int64) ([]tlog.Hash, error)
	// Query reads the bulk summaries, whose attrs say what they fold in.
	Query(ctx context.Context, f eventlog.Filter) (eventlog.Page, error)
}

// Agent is an enrolled PC.
type Agent struct {
	ID, Hostname, Department string
	// Enrolled is when the PC was enrolled; zero: the log's agent.enrolled
	// record says, and without one the PC counts from the period's start.
	Enrolled time.Time
	// Off lists the controls the PC's effective policy turns off, as 概要
	// reads them. Nil: not known; a control the PC never said was off
	// (an "off" status) then counts as running.
	Off []string
}

// Config configures New.
type Config struct {
	Store     Store
	Registers interface {
		List(ctx context.Context, k register.Kind, f register.Filter) ([]register.Entry, error)
	}
	Incidents interface {
		List(ctx context.Context) ([]incident.Incident, error)
	}
	Agents func(ctx context.Context) ([]Agent, error)
	// Verifier checks the checkpoints' signatures (the log key).
	Verifier note.Verifier
	Now      func() time.Time
	Log      zerolog.Logger
}

// Service builds reports.
type Service struct{ cfg Config }

func (s *Service) log(err error) { s.cfg.Log.Error().Err(err).Msg("report: failed") }

// New returns a service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Registers == nil || cfg.Incidents == nil || cfg.Agents == nil || cfg.Verifier == nil {
		return nil, errors.New("report: Config.Store, Registers, Incidents, Agents and Verifier are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{cfg: cfg}, nil
}

// Params choose the period (Japan dates, both inclusive) and scope.
type Params struct {
	From, To   time.Time // midnight JST of the first and the last day
	Department string    // "" for all
}

// Month is the pass rate of one control in one month.
type Month struct {
	Month   string  `json:"month"`   // YYYY-MM
	Hosts   int     `json:"hosts"`   // PCs where the control ran: a pass, fail or unknown status
	Failing int     `json:"failing"` // of those, PCs with at least one failing status
	Unknown int     `json:"unknown"` // PCs that neither failed nor passed: the control could not tell
	Rate    float64 `json:"rate"`    // (Hosts-Failing-Unknown)/Hosts, 0..1; 0 without hosts
}

// ControlRow is one control's figures.
type ControlRow struct {
	Control      string   `json:"control"`
	Name         string   `json:"name"`
	Clauses      []string `json:"clauses"`
	StatusEvents int64    `json:"status_events"`
	FailEvents   int64    `json:"fail_events"`
	Months       []Month  `json:"months"`
	Hosts        int      `json:"hosts"` // host-months where the control ran; Rate means nothing without
	Rate         float64  `json:"rate"`  // over the whole period, host-months
	Exceptions   int      `json:"exceptions"`
}

// Exception is one run of a failing control on one PC.
type Exception struct {
	Agent      string     `json:"agent"`
	Hostname   string     `json:"hostname"`
	Department string     `json:"department"`
	Control    string     `json:"control"`
	Reason     string     `json:"reason"`
	From       time.Time  `json:"from"`
	To         *time.Time `json:"to,omitempty"` // nil: still failing at the end of the period
	Duration   string     `json:"duration"`
	Seconds    int64      `json:"seconds"`
}

// Review is the review status of one 個人情報管理台帳 entry.
type Review struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	Department   string `json:"department"`
	LastReviewed string `json:"last_reviewed"`
	Overdue      bool   `json:"overdue"` // not reviewed in the 12 months before the period's end
}

// Access is the access-log figures of one 台帳 entry.
type Access struct {
	RegisterID string           `json:"register_id"`
	Name       string           `json:"name"`
	Events     int64            `json:"events"`
	Users      int64            `json:"users"`
	ByType     map[string]int64 `json:"by_type"`
	// Summarised counts the file events the agent folded into bulk
	// summaries (fileaccess.bulk) instead of sending them one by one; they
	// are in Events, and in ByType under their types where the summary
	// says them. Untyped are those whose summary does not (older agents).
	// Summaries counts the summary events themselves.
	Summarised int64 `json:"summarised,omitempty"`
	Untyped    int64 `json:"summarised_untyped,omitempty"`
	Summaries  int64 `json:"summaries,omitempty"`
}

// Integrity is the log-integrity statement.
type Integrity struct {
	StartSize   int64     `json:"start_size"`
	StartRoot   string    `json:"start_root"`
	StartSigned time.Time `json:"start_signed,omitzero"`
	EndSize     int64     `json:"end_size"`
	EndRoot     string    `json:"end_root"`
	EndSigned   time.Time `json:"end_signed,omitzero"`
	StartNote   string    `json:"start_note,omitempty"`
	EndNote     string    `json:"end_note,omitempty"`
	// Key is the log key the checkpoints were verified with (name+hash),
	// to compare with the one the auditor was handed.
	Key   string   `json:"key,omitempty"`
	Proof []string `json:"proof"`
	// Problems counts the integrity events the server recorded in the
	// period, by type (see integrityTypes).
	Problems  map[string]int64 `json:"problems"`
	Verified  bool             `json:"verified"`
	Statement string           `json:"statement"` // Japanese
}

// integrityTypes are the server's own records of integrity problems, in
// the order the statement names them: the stored log no longer matching
// its tree (the scrubber), acked events lost to a restored backup, and
// events an agent never delivered (a gap in its chain), and a server that
// stopped without recording it (its agents' events of the time arrive
// later from their spools). The first two mean the period's records are
// not intact.
var integrityTypes = []struct {
	typ, ja string
	broken  bool
}{
	{"server.scrub_failed", "ログの再検証で不一致", true},
	{"server.event_loss_accepted", "受け入れたイベントの欠損 (バックアップからの復元)", true},
	{eventlog.GapType, "エージェントの記録の連番の欠落", false},
	{"server.unclean_stop", "停止の記録がないサーバーの停止 (強制終了・電源断など)", false},
	{"server.checkpoint_copy_missing", "etcd にチェックポイントの控えがない起動 (巻き戻しを照合できず)", false},
}

// CarryOut is one 持出し of the period; NotInRegister marks a serial
// 媒体管理台帳 does not have.
type CarryOut struct {
	register.Approval
	NotInRegister bool `json:"not_in_register"`
}

// UnregisteredMedium is a medium not in 媒体管理台帳 used on one PC in the
// period (media events by serial with no register id).
type UnregisteredMedium struct {
	Agent        string    `json:"agent"`
	Host         string    `json:"host"`
	Serial       string    `json:"serial"`
	Vendor       string    `json:"vendor,omitempty"`
	Product      string    `json:"product,omitempty"`
	First        time.Time `json:"first"`
	Last         time.Time `json:"last"`
	Events       int       `json:"events"`
	FilesWritten int       `json:"files_written"`
	Blocked      bool      `json:"blocked,omitempty"`
	// Approval names the approved carry-out that covered its use, "" none.
	Approval string `json:"approval,omitempty"`
}

// Report is the audit report.
type Report struct {
	From, To   string    `json:"-"`
	Period     string    `json:"period"`
	Department string    `json:"department"`
	Generated  time.Time `json:"generated"`
	// Provisional: the period had not ended when the report was made;
	// its figures are those up to AsOf.
	Provisional bool      `json:"provisional"`
	AsOf        time.Time `json:"as_of,omitzero"`
	Hosts       int       `json:"hosts"`
	TotalEvents int64     `json:"total_events"`
	// Summarised counts the file events folded into Summaries bulk
	// summaries: not in TotalEvents, which counts the log's records.
	Summarised int64 `json:"summarised"`
	Summaries  int64 `json:"summaries"`
	// EventsByControl counts every event of the period per control.
	EventsByControl map[string]int64 `json:"events_by_control"`
	Controls        []ControlRow     `json:"controls"`
	Exceptions      []Exception      `json:"exceptions"`
	Reviews         []Review         `json:"reviews"`
	CarryOuts       []CarryOut       `json:"carry_outs"`
	MediaEvents     map[string]int64 `json:"media_events"`
	// UnregisteredMedia are the media used in the period that are not in
	// 媒体管理台帳, by PC and serial.
	UnregisteredMedia []UnregisteredMedium `json:"unregistered_media"`
	Disposals         []register.Disposal  `json:"disposals"`
	Incidents         []incident.Incident  `json:"incidents"`
	// Alerts is what alerted in the period and how it was handled.
	Alerts    Alerts    `json:"alerts"`
	Access    []Access  `json:"access"`
	Integrity Integrity `json:"integrity"`
}

// Build computes the report.
func (s *Service) Build(ctx context.Context, p Params) (*Report, error) {
	if p.From.IsZero() || p.To.IsZero() || p.To.Before(p.From) {
		return nil, fmt.Errorf("%w: from must not be after to", ErrInvalid)
	}
	if p.To.Sub(p.From) > 3*366*24*time.Hour {
		return nil, fmt.Errorf("%w: at most three years in one report", ErrInvalid)
	}
	now := s.cfg.Now()
	if p.From.After(now) {
		return nil, ErrFuture
	}
	from, end := p.From, p.To.AddDate(0, 0, 1) // [from, end)
	r := &Report{From: from.In(JST).Format(time.DateOnly), To: p.To.In(JST).Format(time.DateOnly), Department: p.Department,
		Generated: now.UTC(), EventsByControl: map[string]int64{}, MediaEvents: map[string]int64{}}
	r.Period = r.From + " から " + r.To + " まで"
	if end.After(now) {
		r.Provisional, r.AsOf = true, r.Generated
	}

	agents, err := s.cfg.Agents(ctx)
	if err != nil {
		return nil, fmt.Errorf("report: agents: %w", err)
	}
	later, err := s.enrolledAfter(ctx, end)
	if err != nil {
		return nil, err
	}
	byID := map[string]Agent{}
	var scope []string         // nil: every stream (the server's own too)
	hosts := map[string]bool{} // the department's PCs by hostname (lower case)
	var counted []Agent        // the PCs the header counts
	for _, a := range agents {
		byID[a.ID] = a
		inScope := p.Department == "" || a.Department == p.Department
		if p.Department != "" && inScope {
			scope = append(scope, a.ID)
			hosts[strings.ToLower(a.Hostname)] = true
		}
		if inScope && !later[a.ID] {
			r.Hosts++
			counted = append(counted, a)
		}
	}
	if p.Department != "" && len(scope) == 0 {
		scope = []string{"\x00none"} // no PC in the department: nothing matches
	}
	base := eventlog.CountQuery{From: from, To: end, Agents: scope}

	// Three passes over the period, run side by side (the read pool has a
	// connection each): every event by control and type; the access log by
	// register entry, type and user; the status events, for rates and
	// exceptions. The alerts, few, are read beside them.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.totals(gctx, r, base) })
	g.Go(func() error { return s.access(gctx, r, base) })
	g.Go(func() error { return s.controls(gctx, r, base, byID, counted) })
	g.Go(func() error { return s.media(gctx, r, base, byID) })
	g.Go(func() error { return s.alerts(gctx, r, base, byID) })
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := s.names(ctx, r); err != nil {
		return nil, err
	}
	sc := deptScope{dept: p.Department, hosts: hosts}
	if err := s.registers(ctx, r, from, end, &sc); err != nil {
		return nil, err
	}
	incs, err := s.cfg.Incidents.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("report: incidents: %w", err)
	}
	r.Incidents = []incident.Incident{}
	for _, in := range incs {
		if !in.DiscoveredAt.Before(from) && in.DiscoveredAt.Before(end) && sc.incident(in) {
			r.Incidents = append(r.Incidents, in)
		}
	}
	if err := s.integrity(ctx, r, from, end); err != nil {
		return nil, err
	}
	return r, nil
}

// enrolledAfter returns the PCs whose enrollment the log records after
// end: they did not exist in the period, so the scope does not count them.
// A PC without such a record (enrolled before the event was kept) counts.
func (s *Service) enrolledAfter(ctx context.Context, end time.Time) (map[string]bool, error) {
	until := s.cfg.Now().Add(time.Hour) // past any enrollment recorded yet
	out := map[string]bool{}
	if !end.Before(until) {
		return out, nil
	}
	gs, err := s.cfg.Store.Count(ctx, eventlog.CountQuery{From: end, To: until, Types: []string{enrolledType}, GroupBy: []string{"object"}})
	if err != nil {
		return nil, fmt.Errorf("report: enrollments: %w", err)
	}
	for _, g := range gs {
		out[g.Keys[0]] = true
	}
	return out, nil
}

// enrollments reads when each PC was enrolled, from the log's records
// before end (the first record of each).
func (s *Service) enrollments(ctx context.Context, end time.Time) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	f := eventlog.Filter{Type: enrolledType, To: end, Limit: eventlog.MaxLimit}
	for {
		page, err := s.cfg.Store.Query(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("report: enrollments: %w", err)
		}
		for _, e := range page.Events {
			if t, ok := out[e.Object]; e.Agent == event.ServerStream && (!ok || e.Time.Before(t)) {
				out[e.Object] = e.Time
			}
		}
		if page.Next == "" || len(page.Events) == 0 {
			return out, nil
		}
		f.Cursor = page.Next
	}
}

// enrolledType is the server's record of an enrollment (object: the agent id).
const enrolledType = "agent.enrolled"

// Departments lists the departments a report can be made for: those of
// enrolled PCs and of 個人情報管理台帳 entries, sorted. Another names
// nothing, and its report would be empty yet say the log is intact.
func (s *Service) Departments(ctx context.Context) ([]string, error) {
	agents, err := s.cfg.Agents(ctx)
	if err != nil {
		return nil, fmt.Errorf("report: agents: %w", err)
	}
	pis, err := s.cfg.Registers.List(ctx, register.KindPI, register.Filter{})
	if err != nil {
		return nil, fmt.Errorf("report: register: %w", err)
	}
	seen := map[string]bool{}
	for _, a := range agents {
		seen[a.Department] = true
	}
	for _, e := range pis {
		if p, ok := e.(*register.PIEntry); ok {
			seen[p.Department] = true
		}
	}
	delete(seen, "")
	return slices.Sorted(maps.Keys(seen)), nil
}

// months returns the month edges covering [from, end) in Japan time.
func months(from, end time.Time) ([]time.Time, []string) {
	var edges []time.Time
	var names []string
	f := from.In(JST)
	for t := f; t.Before(end); {
		edges = append(edges, t)
		names = append(names, t.Format("2006-01"))
		t = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, JST)
	}
	return append(edges, end), names
}

func statusTypes() []string {
	out := make([]string, len(Controls))
	for i, c := range Controls {
		out[i] = c + ".status"
	}
	return out
}

// controls fills the pass rates per month (from the severity of status
// events: violation = fail) and the exceptions (runs of failing status
// per PC and control, within the period).
func (s *Service) controls(ctx context.Context, r *Report, base eventlog.CountQuery, byID map[string]Agent, counted []Agent) error {
	edges, names := months(base.From, base.To)
	type hm struct {
		control, agent string
		month          int
	}
	type status struct {
		t     time.Time
		fail  bool
		attrs []byte
	}
	type key struct{ agent, control string }
	// A host-month counts where the control ran: a status of pass, fail or
	// unknown. An agent says "off" in an info status when its policy turns
	// the control off; counted as passing, it made a control nobody ran
	// 100% compliant. A month passes with a pass and no fail; one of only
	// unknowns does not (the dashboard counts unknown as not passing too).
	reported, failing, passed := map[hm]bool{}, map[hm]bool{}, map[hm]bool{}
	// The last status of each host-month, to tell a month without a
	// status whether the PC said its control was off.
	type lastSt struct {
		t   time.Time
		off bool
	}
	lastOf := map[hm]lastSt{}
	runs := map[key][]status{}
	rows := map[string]*ControlRow{}
	for _, c := range Controls {
		rows[c] = &ControlRow{Control: c, Name: controlJA[c], Clauses: policies.Clauses()[c]}
	}
	q := base
	q.Types = statusTypes()
	err := s.cfg.Store.Scan(ctx, q, []string{"info", "violation"}, func(row *eventlog.ScanRow) error {
		cr := rows[row.Control]
		if cr == nil {
			return nil
		}
		m := sort.Search(len(edges), func(i int) bool { return edges[i].After(row.Time) }) - 1
		k := hm{row.Control, row.Agent, m}
		if l, ok := lastOf[k]; !ok || !row.Time.Before(l.t) {
			lastOf[k] = lastSt{row.Time, row.Severity == "info" && statusOf(row.Attrs) == "off"}
		}
		cr.StatusEvents++
		fail := row.Severity == "violation"
		switch {
		case fail:
			failing[k] = true
			cr.FailEvents++
		case row.Severity == "info":
			switch statusOf(row.Attrs) {
			case "off":
				// Ends a run of failures (below), counts for nothing else.
				rk := key{row.Agent, row.Control}
				runs[rk] = append(runs[rk], status{t: row.Time})
				return nil
			case "pass":
				passed[k] = true
			}
		}
		reported[k] = true
		rk := key{row.Agent, row.Control}
		var attrs []byte
		if fail {
			attrs = bytes.Clone(row.Attrs)
		}
		runs[rk] = append(runs[rk], status{row.Time, fail, attrs})
		return nil
	})
	if err != nil {
		return fmt.Errorf("report: status: %w", err)
	}
	for _, c := range Controls {
		row := rows[c]
		row.Months = make([]Month, len(names))
		for i, n := range names {
			row.Months[i].Month = n
		}
	}
	// Every PC the header counts is counted, as 概要 counts it: a month
	// it was enrolled by, without a status of a control its policy runs,
	// is unknown (never reported, or silent). Whether the policy runs the
	// control: Agent.Off, else the PC's own nearest status of it.
	enrolled, err := s.enrollments(ctx, base.To)
	if err != nil {
		return err
	}
	offNear := func(agent, control string, month int) bool {
		for d := 1; d < len(names); d++ {
			for _, m := range []int{month - d, month + d} {
				if l, ok := lastOf[hm{control, agent, m}]; ok {
					return l.off
				}
			}
		}
		return false
	}
	for _, a := range counted {
		since := a.Enrolled
		if since.IsZero() {
			since = enrolled[a.ID]
		}
		for i := range names {
			if !since.Before(edges[i+1]) {
				continue // not enrolled yet
			}
			for _, c := range Controls {
				k := hm{c, a.ID, i}
				if reported[k] || slices.Contains(a.Off, c) {
					continue
				}
				if _, said := lastOf[k]; said || (a.Off == nil && offNear(a.ID, c, i)) {
					continue // said off this month, or nearest
				}
				reported[k] = true
			}
		}
	}
	for k := range reported {
		m := &rows[k.control].Months[k.month]
		m.Hosts++
		switch {
		case failing[k]:
			m.Failing++
		case !passed[k]:
			m.Unknown++
		}
	}
	for _, c := range Controls {
		row := rows[c]
		var fails, unknown int
		for i := range row.Months {
			m := &row.Months[i]
			if m.Hosts > 0 {
				m.Rate = float64(m.Hosts-m.Failing-m.Unknown) / float64(m.Hosts)
			}
			row.Hosts, fails, unknown = row.Hosts+m.Hosts, fails+m.Failing, unknown+m.Unknown
		}
		if row.Hosts > 0 {
			row.Rate = float64(row.Hosts-fails-unknown) / float64(row.Hosts)
		}
	}

	// A run starts at a failing status after a passing (or unknown) one,
	// or at the first status of the period, and ends at the next status
	// that is not failing.
	exs := []Exception{}
	for k, sts := range runs {
		sort.Slice(sts, func(i, j int) bool { return sts[i].t.Before(sts[j].t) })
		var cur *Exception
		for _, st := range sts {
			switch {
			case st.fail && cur == nil:
				var a struct {
					ReasonJA string `json:"reason_ja"`
					Reason   string `json:"reason"`
				}
				_ = json.Unmarshal(st.attrs, &a)
				reason := a.ReasonJA
				if reason == "" {
					reason = a.Reason
				}
				ag := byID[k.agent]
				cur = &Exception{Agent: k.agent, Hostname: ag.Hostname, Department: ag.Department, Control: k.control, Reason: reason, From: st.t}
			case !st.fail && cur != nil:
				t := st.t
				cur.To = &t
				exs = append(exs, *cur)
				cur = nil
			}
		}
		if cur != nil {
			exs = append(exs, *cur)
		}
	}
	// An open run lasts to the period's end, or to the report's making when
	// that comes first: a report made today does not count hours to come.
	open, openTo := "期間末時点で継続中", base.To
	if r.Generated.Before(base.To) {
		open, openTo = "作成時点で継続中", r.Generated
	}
	for i := range exs {
		ex := &exs[i]
		until, note := openTo, open
		if ex.To != nil {
			until, note = *ex.To, ""
		}
		d := max(until.Sub(ex.From), 0)
		ex.Seconds = int64(d / time.Second)
		ex.Duration = durationJA(d, note)
		rows[ex.Control].Exceptions++
	}
	sort.Slice(exs, func(i, j int) bool {
		a, b := exs[i], exs[j]
		if !a.From.Equal(b.From) {
			return a.From.Before(b.From)
		}
		return a.Agent+a.Control < b.Agent+b.Control
	})
	r.Exceptions = exs
	r.Controls = nil
	for _, c := range Controls {
		r.Controls = append(r.Controls, *rows[c])
	}
	return nil
}

// durationJA writes a duration as 日・時間・分.
// note, if any, follows in brackets.
func durationJA(d time.Duration, note string) string {
	days := int(d / (24 * time.Hour))
	h := int(d % (24 * time.Hour) / time.Hour)
	m := int(d % time.Hour / time.Minute)
	s := fmt.Sprintf("%d日 %d時間 %d分", days, h, m)
	if note != "" {
		s += " (" + note + ")"
	}
	return s
}

// statusOf reads a status event's "status" attribute; "" if it has none.
func statusOf(attrs []byte) string {
	var a struct {
		Status string `json:"status"`
	}
	if json.Unmarshal(attrs, &a) != nil {
		return ""
	}
	return a.Status
}

// totals counts the period's events per control and type.
func (s *Service) totals(ctx context.Context, r *Report, base eventlog.CountQuery) error {
	q := base
	q.GroupBy = []string{"control", "type"}
	gs, err := s.cfg.Store.Count(ctx, q)
	if err != nil {
		return fmt.Errorf("report: totals: %w", err)
	}
	for _, g := range gs {
		r.EventsByControl[g.Keys[0]] += g.Events
		r.TotalEvents += g.Events
		if g.Keys[0] == "media" {
			r.MediaEvents[g.Keys[1]] += g.Events
		}
	}
	return nil
}

// access counts the access log per 台帳 entry: events per type and
// distinct users.
func (s *Service) access(ctx context.Context, r *Report, base eventlog.CountQuery) error {
	q := base
	q.Controls, q.HasRegister, q.GroupBy = []string{"fileaccess"}, true, []string{"register_id", "type", "user"}
	gs, err := s.cfg.Store.Count(ctx, q)
	if err != nil {
		return fmt.Errorf("report: access: %w", err)
	}
	by := map[string]*Access{}
	row := func(id string) *Access {
		a := by[id]
		if a == nil {
			a = &Access{RegisterID: id, ByType: map[string]int64{}}
			by[id] = a
		}
		return a
	}
	for _, g := range gs {
		a := row(g.Keys[0])
		if g.Keys[1] == bulkType {
			continue // counted below as the file events it stands for
		}
		a.Events += g.Events
		a.ByType[g.Keys[1]] += g.Events
	}
	if err := s.bulk(ctx, r, base, row); err != nil {
		return err
	}
	users := map[[2]string]bool{}
	for _, g := range gs {
		if g.Keys[2] != "" {
			users[[2]string{g.Keys[0], g.Keys[2]}] = true
		}
	}
	for k := range users {
		by[k[0]].Users++
	}
	r.Access = make([]Access, 0, len(by))
	for _, a := range by {
		r.Access = append(r.Access, *a)
	}
	sort.Slice(r.Access, func(i, j int) bool { return r.Access[i].RegisterID < r.Access[j].RegisterID })
	return nil
}

// bulkType is the agent's summary of a burst of file events in a folder:
// the first "individually" were sent one by one, the "suppressed" rest
// only counted, per type ("created", ...) in "counts".
const bulkType = "fileaccess.bulk"

// bulk adds the file events folded into bulk summaries to the report's
// figures (Summarised) and, for a 台帳 entry's folder, to its access row,
// under their types where the summary gives them. Summaries are a few per
// burst, so reading them one by one is cheap.
func (s *Service) bulk(ctx context.Context, r *Report, base eventlog.CountQuery, row func(id string) *Access) error {
	inScope := scopeOf(base)
	f := eventlog.Filter{Type: bulkType, From: base.From, To: base.To, Limit: eventlog.MaxLimit}
	for {
		page, err := s.cfg.Store.Query(ctx, f)
		if err != nil {
			return fmt.Errorf("report: bulk summaries: %w", err)
		}
		for _, e := range page.Events {
			if e.Pruned || !inScope(e.Agent) {
				continue
			}
			var a struct {
				Suppressed int64            `json:"suppressed"`
				Counts     map[string]int64 `json:"counts"`
			}
			b, _ := json.Marshal(e.Attrs)
			if err := json.Unmarshal(b, &a); err != nil {
				return fmt.Errorf("report: bulk summary %d: %w", e.Index, err)
			}
			r.Summaries++
			r.Summarised += a.Suppressed
			if e.RegisterID == "" {
				continue
			}
			acc := row(e.RegisterID)
			acc.Summaries++
			acc.Summarised += a.Suppressed
			acc.Events += a.Suppressed
			typed := int64(0)
			for k, n := range a.Counts {
				acc.ByType["file."+k] += n
				typed += n
			}
			acc.Untyped += max(a.Suppressed-typed, 0)
		}
		if page.Next == "" {
			return nil
		}
		f.Cursor = page.Next
	}
}

// names puts the 台帳 names on the access rows.
func (s *Service) names(ctx context.Context, r *Report) error {
	pis, err := s.cfg.Registers.List(ctx, register.KindPI, register.Filter{})
	if err != nil {
		return fmt.Errorf("report: register: %w", err)
	}
	name := map[string]string{}
	for _, e := range pis {
		p := e.(*register.PIEntry)
		name[p.ID] = p.Name
	}
	for i := range r.Access {
		r.Access[i].Name = name[r.Access[i].RegisterID]
	}
	return nil
}

// deptScope says what of the registers and incidents belongs to a
// department's report: what happened on its PCs or concerns its 台帳
// entries. An empty dept takes everything.
type deptScope struct {
	dept    string
	hosts   map[string]bool   // its PCs' hostnames, lower case
	entries map[string]string // 個人情報管理台帳 id -> department
}

func (d *deptScope) host(h string) bool { return d.hosts[strings.ToLower(h)] }

func (d *deptScope) entry(id string) bool { return id != "" && d.entries[id] == d.dept }

func (d *deptScope) approval(a *register.Approval) bool {
	return d.dept == "" || d.host(a.Host) || slices.ContainsFunc(a.RegisterIDs, d.entry)
}

func (d *deptScope) disposal(x *register.Disposal) bool { return d.dept == "" || d.entry(x.RegisterID) }

func (d *deptScope) incident(in incident.Incident) bool {
	return d.dept == "" || slices.ContainsFunc(in.Hosts, d.host) ||
		slices.ContainsFunc(in.Affected, func(a incident.Affected) bool { return a.Kind == register.KindPI && d.entry(a.ID) })
}

// registers fills review status, carry-outs and disposals.
func (s *Service) registers(ctx context.Context, r *Report, from, end time.Time, sc *deptScope) error {
	pis, err := s.cfg.Registers.List(ctx, register.KindPI, register.Filter{})
	if err != nil {
		return fmt.Errorf("report: register: %w", err)
	}
	dept := sc.dept
	sc.entries = make(map[string]string, len(pis))
	for _, e := range pis {
		p := e.(*register.PIEntry)
		sc.entries[p.ID] = p.Department
	}
	limit := end.AddDate(-1, 0, 0).In(JST).Format(time.DateOnly)
	r.Reviews = []Review{}
	for _, e := range pis {
		p := e.(*register.PIEntry)
		if p.Status != register.StatusActive || (dept != "" && p.Department != dept) {
			continue
		}
		r.Reviews = append(r.Reviews, Review{ID: p.ID, Name: p.Name, Department: p.Department, LastReviewed: p.LastReviewed,
			Overdue: p.LastReviewed == "" || p.LastReviewed < limit})
	}
	aps, err := s.cfg.Registers.List(ctx, register.KindApprovals, register.Filter{})
	if err != nil {
		return fmt.Errorf("report: approvals: %w", err)
	}
	media, err := s.mediaEntries(ctx)
	if err != nil {
		return err
	}
	r.CarryOuts = []CarryOut{}
	for _, e := range aps {
		a := e.(*register.Approval)
		if a.From.Before(end) && !a.To.Before(from) && sc.approval(a) {
			r.CarryOuts = append(r.CarryOuts, CarryOut{Approval: *a, NotInRegister: !registered(media, a.Serial, "", "")})
		}
	}
	ds, err := s.cfg.Registers.List(ctx, register.KindDisposals, register.Filter{})
	if err != nil {
		return fmt.Errorf("report: disposals: %w", err)
	}
	r.Disposals = []register.Disposal{}
	f, t := from.In(JST).Format(time.DateOnly), end.In(JST).Format(time.DateOnly)
	for _, e := range ds {
		d := e.(*register.Disposal)
		if d.Date >= f && d.Date < t && sc.disposal(d) {
			r.Disposals = append(r.Disposals, *d)
		}
	}
	return nil
}

// integrity states what the signed log proves about the period, and what
// integrity problems the server recorded in it.
func (s *Service) integrity(ctx context.Context, r *Report, from, end time.Time) error {
	in := &r.Integrity
	in.Proof = []string{}
	in.Problems = map[string]int64{}
	q := eventlog.CountQuery{From: from, To: end, GroupBy: []string{"type"}} // read through the type index: these are rare
	for _, it := range integrityTypes {
		q.Types = append(q.Types, it.typ)
	}
	gs, err := s.cfg.Store.Count(ctx, q)
	if err != nil {
		return fmt.Errorf("report: integrity events: %w", err)
	}
	for _, g := range gs {
		in.Problems[g.Keys[0]] += g.Events
	}
	if err := s.proveIntegrity(ctx, in, from, end); err != nil {
		return err
	}
	if note := r.ProvisionalNote(); note != "" {
		// The end checkpoint is the latest one: it says nothing of the rest.
		defer func() { in.Statement = note + ": " + in.Statement }()
	}
	var found []string
	for _, it := range integrityTypes {
		if n := in.Problems[it.typ]; n > 0 {
			found = append(found, fmt.Sprintf("%s %d 件", it.ja, n))
			if it.broken && in.Verified {
				in.Verified = false
				in.Statement = fmt.Sprintf("期間開始時と期間末のチェックポイント (%d 件、%d 件) の検証は通りましたが、"+
					"期間中にサーバーがログの問題を記録しているため、期間中の記録がすべて残っているとは言えません。", in.StartSize, in.EndSize)
			}
		}
	}
	if len(found) > 0 {
		in.Statement += " 期間中に記録された完全性の問題: " + strings.Join(found, "、") + "。"
	}
	return nil
}

// proveIntegrity checks the checkpoints at the start and end of the period.
func (s *Service) proveIntegrity(ctx context.Context, in *Integrity, from, end time.Time) error {
	start, err := s.cfg.Store.CheckpointBefore(ctx, from)
	switch {
	case errors.Is(err, eventlog.ErrNoCheckpoint):
		start = eventlog.Checkpoint{} // the empty log: every log extends it
	case err != nil:
		return fmt.Errorf("report: start checkpoint: %w", err)
	}
	last, err := s.cfg.Store.CheckpointBefore(ctx, end)
	if errors.Is(err, eventlog.ErrNoCheckpoint) {
		in.Statement = "期間末までに署名されたチェックポイントがないため、ログの完全性を確認できません。"
		return nil
	}
	if err != nil {
		return fmt.Errorf("report: end checkpoint: %w", err)
	}
	in.StartSize, in.StartRoot, in.StartSigned, in.StartNote = start.Size, start.Root.String(), start.Created, start.Note
	in.EndSize, in.EndRoot, in.EndSigned, in.EndNote = last.Size, last.Root.String(), last.Created, last.Note
	if s.cfg.Verifier != nil {
		in.Key = fmt.Sprintf("%s+%08x", s.cfg.Verifier.Name(), s.cfg.Verifier.KeyHash())
	}
	for _, c := range []eventlog.Checkpoint{start, last} {
		if c.Note == "" {
			continue
		}
		ck, err := evidence.Open([]byte(c.Note), s.cfg.Verifier)
		if err != nil || ck.Size != c.Size || ck.Root != c.Root {
			in.Statement = fmt.Sprintf("サイズ %d のチェックポイントの署名を検証できません: %v", c.Size, err)
			return nil
		}
	}
	if start.Size == last.Size && start.Root != last.Root {
		in.Statement = "期間の開始時と終了時のチェックポイントは同じ件数で根が異なります (ログが書き換えられた可能性があります)。"
		return nil
	}
	if start.Size > 0 && start.Size < last.Size {
		proof, err := tlog.ProveTree(last.Size, start.Size, s.cfg.Store)
		if err != nil {
			return fmt.Errorf("report: consistency proof: %w", err)
		}
		for _, h := range proof {
			in.Proof = append(in.Proof, h.String())
		}
		if err := tlog.CheckTree(proof, last.Size, last.Root, start.Size, start.Root); err != nil {
			in.Statement = "期間の開始時と終了時のチェックポイントが整合しません (ログが書き換えられた可能性があります): " + err.Error()
			return nil
		}
	}
	in.Verified = true
	// Say what was checked: a proof exists only between two non-empty,
	// different logs (the HTML's 整合性証明 row tells the same cases).
	switch {
	case start.Size == 0:
		in.Statement = fmt.Sprintf("期間の開始時にはまだ記録がなかったため、期間の途中で記録が書き換えられていないかは、"+
			"期間末の記録の要約 (チェックポイント、%d 件分) に付けた電子署名で確かめました。署名は有効です。", last.Size)
	case start.Size == last.Size:
		in.Statement = fmt.Sprintf("期間開始時と期間末のチェックポイント (%d 件) はいずれもログ鍵の署名が有効で、期間中にログは増えていません (整合性証明は不要)。", last.Size)
	default:
		in.Statement = fmt.Sprintf("期間開始時のチェックポイント (%d 件) と期間末のチェックポイント (%d 件) はいずれもログ鍵の署名が有効で、"+
			"後者は前者の追記のみによる拡張であることを整合性証明で確認しました。", start.Size, last.Size)
	}
	in.Statement += "期間中の記録は削除・改ざんされていません。"
	return nil
}

// ParseDates reads from and to as Japan dates (YYYY-MM-DD).
func ParseDates(from, to string) (time.Time, time.Time, error) {
	f, err := time.ParseInLocation(time.DateOnly, from, JST)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("%w: from must be YYYY-MM-DD", ErrInvalid)
	}
	t, err := time.ParseInLocation(time.DateOnly, to, JST)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("%w: to must be YYYY-MM-DD", ErrInvalid)
	}
	if t.Before(f) {
		return time.Time{}, time.Time{}, fmt.Errorf("%w: from is after to", ErrInvalid)
	}
	return f, t, nil
}
