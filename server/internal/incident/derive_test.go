package incident

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/register"
	"github.com/mamori/mamori/server/internal/state"
	"github.com/mamori/mamori/shared/event"
)

// The affected 台帳 entries come from what the events name: the medium's
// serial (媒体管理台帳), the carry-out approval the writes were made under
// and its entries, the registered folder of a file event, and the entries
// stored on the PC; the persons are their record counts. The encryption
// exemption makes a reportable incident not reportable, and says why.
func TestAffectedEntriesFromTheEvents(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store, err := eventlog.OpenSQLite(ctx, filepath.Join(dir, "events.db"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	st, err := state.Open(ctx, state.Config{DataDir: dir, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	regs, err := register.New(register.Config{State: st})
	if err != nil {
		t.Fatal(err)
	}
	create := func(e register.Entry) {
		t.Helper()
		if _, err := regs.Create(ctx, "admin", e); err != nil {
			t.Fatal(err)
		}
	}
	pi := func(id, host string, n int, sensitive bool) *register.PIEntry {
		return &register.PIEntry{Meta: register.Meta{ID: id}, Name: "台帳 " + id, Purpose: "業務", RecordCount: n, Sensitive: sensitive,
			Medium: "electronic", Owner: "山田", Locations: []register.Location{{Host: host, Folder: `D:\データ`}},
			Department: "営業部", Retention: "5y", DisposalMethod: "データ消去"}
	}
	create(pi("PI-0001", "PC-9", 300, false))  // a registered folder the bulk copy came from (on another PC)
	create(pi("PI-0002", "PC-8", 500, true))   // taken out under the approval
	create(pi("PI-0003", "PC-1", 40, false))   // kept on the PC
	create(pi("PI-0004", "PC-7", 9000, false)) // unrelated
	create(&register.MediaEntry{Meta: register.Meta{ID: "MD-0001", Status: register.StatusActive}, Registered: "2026-04-01",
		Product: "会社支給 USB メモリ 3 号", Serial: "SER-0001", Owner: "営業部"})
	now := time.Now().UTC()
	create(&register.Approval{Meta: register.Meta{ID: "AP-0001", Status: register.StatusRequested}, Requester: "佐藤", Serial: "SER-0001",
		Host: "PC-1", Purpose: "顧客訪問", RegisterIDs: []string{"PI-0002"}, From: now.Add(-2 * time.Hour), To: now.Add(6 * time.Hour)})

	var h eventlog.Head
	seal := func(e event.Event) int64 {
		t.Helper()
		if h, err = store.Head(ctx, "pc1"); err != nil {
			t.Fatal(err)
		}
		e.Agent, e.Seq, e.Time = "pc1", h.Seq+1, now.Add(-time.Duration(10-h.Seq)*time.Minute)
		if err := e.Seal(h.Hash); err != nil {
			t.Fatal(err)
		}
		if _, err := store.Append(ctx, "pc1", []event.Event{e}); err != nil {
			t.Fatal(err)
		}
		p, err := store.Query(ctx, eventlog.Filter{Agent: "pc1", Limit: eventlog.MaxLimit})
		if err != nil {
			t.Fatal(err)
		}
		return p.Events[len(p.Events)-1].Index
	}
	stick := event.Attrs{"serial": "SER-0001", "approval_id": "AP-0001"}
	seal(event.Event{Control: "media", Type: "media.inserted", Severity: event.Info, Object: "E:", Attrs: stick})
	written := seal(event.Event{Control: "media", Type: "media.file_written", Severity: event.Info, Object: `E:\見積.xlsx`, Attrs: stick})
	bulk := seal(event.Event{Control: "fileaccess", Type: "fileaccess.bulk", Severity: event.Warning, Object: `\\PC-9\データ`,
		RegisterID: "PI-0001", Attrs: event.Attrs{"files": 231}})

	s, err := New(Config{KV: st, Events: store, Registers: regs,
		Hostname:   func(_ context.Context, a string) string { return map[string]string{"pc1": "PC-1"}[a] },
		IsNotFound: func(err error) bool { return errors.Is(err, state.ErrNotFound) },
		IsConflict: func(err error) bool { return errors.Is(err, state.ErrConflict) }})
	if err != nil {
		t.Fatal(err)
	}
	// From an event (not an alert): the write to the approved stick.
	in, err := s.Open(ctx, "kanri", OpenRequest{Event: &written, DiscoveredAt: now})
	if err != nil {
		t.Fatal(err)
	}
	ids := func(in Incident) []string {
		var out []string
		for _, a := range in.Affected {
			out = append(out, string(a.Kind)+"/"+a.ID)
		}
		return out
	}
	if want := []string{"approvals/AP-0001", "media/MD-0001", "pi/PI-0002", "pi/PI-0003"}; !slices.Equal(ids(in), want) ||
		in.Source.Kind != "event" || len(in.Events) != 2 || in.Persons != 540 || !in.Sensitive || !slices.Equal(in.Hosts, []string{"PC-1"}) {
		t.Fatalf("from the write: affected %v source %+v events %v persons %d sensitive %v hosts %v",
			ids(in), in.Source, in.Events, in.Persons, in.Sensitive, in.Hosts)
	}
	if !in.Reportable {
		t.Errorf("要配慮 entry affected, not reportable: %q", in.ReportableReason)
	}
	// The bulk copy added: its registered folder's entry joins.
	u := Update{Revision: in.Revision, Status: in.Status, Title: in.Title, DiscoveredAt: in.DiscoveredAt, OccurredAt: in.OccurredAt,
		Sensitive: true, AddEvents: []int64{bulk}}
	if in, err = s.Update(ctx, "kanri", in.ID, u); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(ids(in), "pi/PI-0001") || slices.Contains(ids(in), "pi/PI-0004") || in.Persons != 840 {
		t.Fatalf("after the bulk copy: %v persons %d", ids(in), in.Persons)
	}
	// Encrypted with a key that did not leak: exempt, and the reason says so.
	u = Update{Revision: in.Revision, Status: in.Status, Title: in.Title, DiscoveredAt: in.DiscoveredAt, OccurredAt: in.OccurredAt,
		Sensitive: true, MyNumber: true, EncryptedKeySafe: true}
	if in, err = s.Update(ctx, "kanri", in.ID, u); err != nil {
		t.Fatal(err)
	}
	if in.Reportable || !in.MyNumber || in.ReportableReason != "高度な暗号化等の措置が講じられ、鍵が漏えいしていないため報告対象外 (要配慮個人情報)" {
		t.Errorf("exempt: reportable %v my_number %v %q", in.Reportable, in.MyNumber, in.ReportableReason)
	}
	// Bad input changes nothing: an unknown entry or event.
	u.Revision, u.AddEntries = in.Revision, []string{"PI-9999"}
	if _, err := s.Update(ctx, "kanri", in.ID, u); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown entry: %v", err)
	}
	u.AddEntries, u.AddEvents = nil, []int64{99999}
	if _, err := s.Update(ctx, "kanri", in.ID, u); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown event: %v", err)
	}
	if got, err := s.Get(ctx, in.ID); err != nil || got.Revision != in.Revision || len(got.Events) != 3 {
		t.Errorf("after refused updates: %v revision %d events %v", err, got.Revision, got.Events)
	}
}

// An incident opened from an alert is titled in the words of the UI, not
// with the control's code.
func TestTitleOfAlertInJapanese(t *testing.T) {
	e := eventlog.Stored{}
	e.Type = "compliance.alert"
	e.Attrs = map[string]any{"hostname": "PC-07", "control": "posture", "reason_ja": "システムドライブ(C:)が暗号化されていません"}
	if got, want := titleOf(e), "PC-07 の端末の状態: システムドライブ(C:)が暗号化されていません"; got != want {
		t.Errorf("title %q, want %q", got, want)
	}
	e = eventlog.Stored{}
	e.Type, e.Object = "fileaccess.bulk", `D:\顧客`
	if got := titleOf(e); got != `大量コピー・大量操作 D:\顧客` {
		t.Errorf("title %q", got)
	}
}
