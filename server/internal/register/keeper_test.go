package register

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Defects found by a register keeper's walkthrough: each test names what
// was let through.

func mustDo(t *testing.T) func(Change, error) {
	return func(_ Change, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}

func medium(id, serial string) *MediaEntry {
	return &MediaEntry{Meta: Meta{ID: id}, Registered: "2026-01-10", Product: "USB", Serial: serial, Owner: "総務部"}
}

func setMediaStatus(t *testing.T, s *Service, id, status string) {
	t.Helper()
	e, err := s.Get(context.Background(), KindMedia, id)
	if err != nil {
		t.Fatal(err)
	}
	e.meta().Status = status
	mustDo(t)(s.Update(context.Background(), "admin", e, e.meta().Revision))
}

// A carry-out names a medium that may leave the office: one that is
// disposed, lost or not in the media register at all, or register entries
// that do not exist, cannot be requested or approved, and a stick disposed
// after its approval stops working.
func TestApprovalNeedsActiveMediumAndExistingEntries(t *testing.T) {
	ctx := context.Background()
	clk := newClock(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC))
	s, st := newService(t, clk)
	if err := st.PutAgent(ctx, agentOn("PC-01")); err != nil {
		t.Fatal(err)
	}
	must := mustDo(t)
	must(s.Create(ctx, "admin", samplePI("PI-0007", "PC-01", `D:\顧客`)))
	for id, serial := range map[string]string{"MD-1": "ACTIVE0001", "MD-2": "DISPOSED01", "MD-3": "LOST000001", "MD-4": "LATER00001", "MD-5": "OPEN000001"} {
		must(s.Create(ctx, "admin", medium(id, serial)))
	}
	setMediaStatus(t, s, "MD-2", StatusDisposed)
	setMediaStatus(t, s, "MD-3", StatusLost)
	mk := func(serial string, ids ...string) *Approval {
		return &Approval{Requester: "山田", Serial: serial, Host: "PC-01", Purpose: "展示会", RegisterIDs: ids,
			From: clk.Now().Add(time.Hour), To: clk.Now().Add(3 * time.Hour)}
	}
	for _, tc := range []struct {
		a     *Approval
		field string
	}{
		{mk("DISPOSED01", "PI-0007"), "serial"},
		{mk("lost000001", "PI-0007"), "serial"},
		{mk("ACTIVE0001", "PI-0007", "USB-001"), "register_ids[1]"},
	} {
		if _, err := s.Create(ctx, "admin", tc.a); !errors.Is(err, ErrInvalid) || fieldsOf(err)[tc.field] != 0 {
			t.Errorf("request for %s %v: want an error on %s, got %v", tc.a.Serial, tc.a.RegisterIDs, tc.field, err)
		} else if ja := err.(ValidationError).Lines(KindApprovals, LangJA)[0]; !strings.Contains(ja, "「") || strings.HasPrefix(ja, "serial") {
			t.Errorf("Japanese message %q", ja)
		}
	}
	if l, _ := s.List(ctx, KindApprovals, Filter{}); len(l) != 0 {
		t.Fatalf("refused requests stored %d", len(l))
	}
	// The agent compares serials case-insensitively, so the register does.
	ok := mk("active0001", "PI-0007")
	must(s.Create(ctx, "admin", ok))
	// An update cannot move a request onto a disposed stick.
	upd := *ok
	upd.Serial = "DISPOSED01"
	if _, err := s.Update(ctx, "admin", &upd, ok.Revision); fieldsOf(err)["serial"] != 0 || err == nil {
		t.Fatalf("request moved to a disposed medium: %v", err)
	}
	// Lost between request and decision: it cannot be approved.
	setMediaStatus(t, s, "MD-1", StatusLost)
	if _, err := s.Decide(ctx, "部長", ok.ID, true, 0); fieldsOf(err)["serial"] != 0 || err == nil {
		t.Fatalf("approval of a lost medium: %v", err)
	}
	if e, _ := s.Get(ctx, KindApprovals, ok.ID); e.meta().Status != StatusRequested {
		t.Fatalf("refused approval is %s", e.meta().Status)
	}
	// It can still be denied.
	must(s.Decide(ctx, "部長", ok.ID, false, 0))

	// Disposed after approval: the window is no longer in the policy.
	later := mk("LATER00001", "PI-0007")
	must(s.Create(ctx, "admin", later))
	must(s.Decide(ctx, "部長", later.ID, true, 0))
	if c, _ := s.Effective(ctx, "ag-1"); len(c.Policy.Controls.Media.Approvals) != 1 {
		t.Fatalf("approved window missing: %+v", c.Policy.Controls.Media.Approvals)
	}
	setMediaStatus(t, s, "MD-4", StatusDisposed)
	if c, _ := s.Effective(ctx, "ag-1"); len(c.Policy.Controls.Media.Approvals) != 0 || !c.Until.IsZero() {
		t.Fatalf("disposed medium's window still in the policy: %+v", c.Policy.Controls.Media.Approvals)
	}
	if sp, err := s.Shared(ctx, "ag-1"); err != nil || len(sp.Policy.Controls.Media.Approvals) != 0 {
		t.Fatalf("shared policy keeps the disposed medium's window: %v", err)
	}
	// A stick the register does not know may be let in for a window.
	visitor := mk("NOTREGISTERED", "PI-0007")
	must(s.Create(ctx, "admin", visitor))
	must(s.Decide(ctx, "部長", visitor.ID, true, 0))
	if c, _ := s.Effective(ctx, "ag-1"); len(c.Policy.Controls.Media.Approvals) != 1 || c.Policy.Controls.Media.Approvals[0].Serial != "NOTREGISTERED" {
		t.Fatalf("window for an unregistered stick: %+v", c.Policy.Controls.Media.Approvals)
	}

	// Import: a request for a disposed medium imports (a register as the
	// API let it become, moved to another server) and cannot be approved;
	// a closed record of one (returned, denied) is history and imports.
	head := "id,status,requester,serial,host,purpose,register_ids,from,to,approver,decided\r\n"
	if _, err := importKind(s, KindApprovals, []byte(head+
		"AP-10,requested,山田,DISPOSED01,PC-01,訪問,PI-0007,2026-11-05T09:00:00Z,2026-11-05T18:00:00Z,,\r\n")); err != nil {
		t.Fatalf("import of a request for a disposed medium: %v", err)
	}
	if _, err := s.Decide(ctx, "部長", "AP-10", true, 0); fieldsOf(err)["serial"] != 0 || err == nil {
		t.Fatalf("an imported request for a disposed medium approved: %v", err)
	}
	if cs, err := importKind(s, KindApprovals, []byte(head+
		"AP-20,returned,山田,DISPOSED01,PC-01,訪問,PI-0404,2026-10-05T09:00:00Z,2026-10-05T18:00:00Z,佐藤,2026-10-04T10:00:00Z\r\n"+
		"AP-21,denied,山田,NOTREGISTERED,PC-01,訪問,,2026-10-06T09:00:00Z,2026-10-06T18:00:00Z,佐藤,2026-10-04T10:00:00Z\r\n")); err != nil || len(cs) != 2 {
		t.Fatalf("historical closed records: %d %v", len(cs), err)
	}
}

// Once decided, an approval's terms are the approver's; its status only
// goes requested -> approved/denied (Decide) and approved -> returned.
func TestDecidedApprovalCannotBeEdited(t *testing.T) {
	ctx := context.Background()
	clk := newClock(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC))
	s, _ := newService(t, clk)
	must := mustDo(t)
	must(s.Create(ctx, "admin", samplePI("PI-0007", "PC-01", `D:\顧客`)))
	must(s.Create(ctx, "admin", medium("MD-1", "ACTIVE0001")))
	must(s.Create(ctx, "admin", medium("MD-2", "ACTIVE0002")))
	mk := func() *Approval {
		a := &Approval{Requester: "山田", Serial: "ACTIVE0001", Host: "PC-01", Purpose: "展示会", RegisterIDs: []string{"PI-0007"},
			From: clk.Now().Add(time.Hour), To: clk.Now().Add(3 * time.Hour)}
		must(s.Create(ctx, "admin", a))
		return a
	}
	get := func(id string) *Approval {
		e, err := s.Get(ctx, KindApprovals, id)
		if err != nil {
			t.Fatal(err)
		}
		return e.(*Approval)
	}
	ap := mk()
	// A request can still be amended.
	req := get(ap.ID)
	req.Purpose = "展示会（大阪）"
	must(s.Update(ctx, "admin", req, req.Revision))
	must(s.Decide(ctx, "部長", ap.ID, true, 0))
	for name, edit := range map[string]func(a *Approval){
		"to":           func(a *Approval) { a.To = a.To.Add(24 * time.Hour) },
		"from":         func(a *Approval) { a.From = a.From.Add(-time.Hour) },
		"serial":       func(a *Approval) { a.Serial = "ACTIVE0002" },
		"host":         func(a *Approval) { a.Host = "PC-02" },
		"purpose":      func(a *Approval) { a.Purpose = "私用" },
		"register_ids": func(a *Approval) { a.RegisterIDs = nil },
		"requester":    func(a *Approval) { a.Requester = "佐藤" },
		"status":       func(a *Approval) { a.Status = StatusRequested },
	} {
		a := get(ap.ID)
		edit(a)
		if _, err := s.Update(ctx, "admin", a, a.Revision); !errors.Is(err, ErrInvalid) || fieldsOf(err)[name] != 0 {
			t.Errorf("approved approval, %s changed: %v", name, err)
		} else if ja := strings.Join(err.(ValidationError).Lines(KindApprovals, LangJA), ""); !strings.Contains(ja, "承認") {
			t.Errorf("%s: Japanese message %q", name, ja)
		}
	}
	if a := get(ap.ID); a.Status != StatusApproved || a.Purpose != "展示会（大阪）" || a.Version != 3 {
		t.Fatalf("refused edits changed the approval: %+v", a)
	}
	// approved -> returned with a result is an ordinary update.
	a := get(ap.ID)
	a.Status, a.Result = StatusReturned, "返却確認"
	must(s.Update(ctx, "admin", a, a.Revision))
	// returned -> approved and denied -> returned are refused.
	a = get(ap.ID)
	a.Status = StatusApproved
	if _, err := s.Update(ctx, "admin", a, a.Revision); fieldsOf(err)["status"] != 0 || err == nil {
		t.Fatalf("returned -> approved: %v", err)
	}
	dn := mk()
	must(s.Decide(ctx, "部長", dn.ID, false, 0))
	d := get(dn.ID)
	d.Status = StatusReturned
	if _, err := s.Update(ctx, "admin", d, d.Revision); fieldsOf(err)["status"] != 0 || err == nil {
		t.Fatalf("denied -> returned: %v", err)
	}
	// Import cannot rewrite a decided approval's terms either.
	a = get(ap.ID)
	head := "id,status,requester,serial,host,purpose,register_ids,from,to,approver,decided,result\r\n"
	row := func(to string) string {
		return a.ID + ",returned,山田,ACTIVE0001,PC-01,展示会（大阪）,PI-0007," + a.From.Format(time.RFC3339) + "," + to + ",部長," +
			a.Decided.Format(time.RFC3339) + ",返却確認\r\n"
	}
	if cs, err := importKind(s, KindApprovals, []byte(head+row(a.To.Format(time.RFC3339)))); err != nil || len(cs) != 0 {
		t.Fatalf("unchanged import: %d %v", len(cs), err)
	}
	if _, err := importKind(s, KindApprovals, []byte(head+row(a.To.Add(48*time.Hour).Format(time.RFC3339)))); fieldsOf(err)["to"] != 2 {
		t.Fatalf("import moved a decided window: %v", err)
	}
}

// A returned carry-out was approved: an import cannot record one with no
// approver. One returned before its window began imports, as the API and
// the web let an approver record it (a trip called off).
func TestImportedReturnedApprovalNeedsApproverAndPast(t *testing.T) {
	clk := newClock(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC))
	s, _ := newService(t, clk)
	mustDo(t)(s.Create(context.Background(), "admin", medium("MD-1", "ACTIVE0001")))
	head := "id,status,requester,serial,host,purpose,from,to,approver,decided\r\n"
	for _, tc := range []struct{ row, field string }{
		{"AP-1,returned,山田,ACTIVE0001,PC-01,訪問,2026-12-01T09:00:00Z,2026-12-01T18:00:00Z,,", "approver"},
		{"AP-1,approved,山田,ACTIVE0001,PC-01,訪問,2026-10-01T09:00:00Z,2026-10-01T18:00:00Z,佐藤,2026-12-01T09:00:00Z", "decided"},
		{"AP-1,denied,山田,ACTIVE0001,PC-01,訪問,2026-10-01T09:00:00Z,2026-10-01T18:00:00Z,,", "approver"},
	} {
		_, err := importKind(s, KindApprovals, []byte(head+tc.row+"\r\n"))
		if fieldsOf(err)[tc.field] != 2 {
			t.Errorf("%s: want an error on %s, got %v", tc.row, tc.field, err)
		}
	}
	if l, _ := s.List(context.Background(), KindApprovals, Filter{}); len(l) != 0 {
		t.Fatalf("refused rows stored %d", len(l))
	}
	if cs, err := importKind(s, KindApprovals, []byte(head+
		"AP-1,returned,山田,ACTIVE0001,PC-01,訪問,2026-10-01T09:00:00Z,2026-10-01T18:00:00Z,佐藤,2026-09-30T09:00:00Z\r\n")); err != nil || len(cs) != 1 {
		t.Fatalf("a real returned record: %d %v", len(cs), err)
	}
}

// One serial, one active medium: the agent matches serials
// case-insensitively, so two entries would be one stick.
func TestMediaSerialRegisteredOnce(t *testing.T) {
	ctx := context.Background()
	s, _ := newService(t, nil)
	must := mustDo(t)
	must(s.Create(ctx, "admin", medium("MD-S0", "DUP-SERIAL-1")))
	setMediaStatus(t, s, "MD-S0", StatusDisposed) // a disposed one does not count
	must(s.Create(ctx, "admin", medium("MD-S1", "DUP-SERIAL-1")))
	_, err := s.Create(ctx, "admin", medium("MD-S2", "dup-serial-1"))
	if fieldsOf(err)["serial"] != 0 || err == nil || !strings.Contains(err.Error(), "MD-S1") {
		t.Fatalf("second active medium with the serial: %v", err)
	}
	must(s.Create(ctx, "admin", medium("MD-S2", "OTHER-0001")))
	e, _ := s.Get(ctx, KindMedia, "MD-S2")
	e.(*MediaEntry).Serial = "Dup-Serial-1"
	if _, err := s.Update(ctx, "admin", e, e.meta().Revision); fieldsOf(err)["serial"] != 0 || err == nil {
		t.Fatalf("update onto another medium's serial: %v", err)
	}
	// Reactivating the disposed one would make two.
	setErr := func() error {
		e, _ := s.Get(ctx, KindMedia, "MD-S0")
		e.meta().Status = StatusActive
		_, err := s.Update(ctx, "admin", e, e.meta().Revision)
		return err
	}
	if err := setErr(); fieldsOf(err)["serial"] != 0 || err == nil {
		t.Fatalf("reactivated a duplicate: %v", err)
	}
	head := "id,status,registered,product,serial,owner\r\n"
	_, err = importKind(s, KindMedia, []byte(head+"MD-S3,active,2026-01-10,USB,DUP-SERIAL-1,総務\r\n"+
		"MD-S4,active,2026-01-10,USB,NEW-0001,総務\r\nMD-S5,active,2026-01-10,USB,new-0001,総務\r\n"))
	if f := fieldsOf(err); f["serial"] == 0 || !strings.Contains(err.Error(), "MD-S1") || !strings.Contains(err.Error(), "row 4") && !strings.Contains(err.Error(), "row 3") {
		t.Fatalf("import of duplicates: %v", err)
	}
	// Disposing the old stick and registering its replacement in one file is fine.
	if cs, err := importKind(s, KindMedia, []byte(head+"MD-S1,disposed,2026-01-10,USB,DUP-SERIAL-1,総務部\r\n"+
		"MD-S3,active,2026-01-10,USB,dup-serial-1,総務\r\n")); err != nil || len(cs) != 2 {
		t.Fatalf("dispose and replace: %d %v", len(cs), err)
	}
}

// Re-importing an export made before a change through the UI must not
// undo it: the export carries each row's revision and such rows conflict.
func TestImportOfOlderExportConflicts(t *testing.T) {
	ctx := context.Background()
	s, _ := newService(t, nil)
	must := mustDo(t)
	must(s.Create(ctx, "admin", medium("MD-1", "SERIAL0001")))
	must(s.Create(ctx, "admin", medium("MD-2", "SERIAL0002")))
	monday := exportKind(t, s, KindMedia, LangJA, EncUTF8)
	if !strings.Contains(string(monday), "改訂") {
		t.Fatalf("export has no revision column:\n%s", monday)
	}
	setMediaStatus(t, s, "MD-1", StatusLost) // Wednesday, in the UI
	// Re-importing Monday's file as it is: MD-1 would be active again.
	_, err := importKind(s, KindMedia, monday)
	if f := fieldsOf(err); f["revision"] != 2 || len(f) != 1 {
		t.Fatalf("stale row imported: %v", err)
	}
	if ja := strings.Join(err.(ValidationError).Lines(KindMedia, LangJA), "\n"); !strings.Contains(ja, "書き出し") {
		t.Fatalf("message does not say to export again: %s", ja)
	}
	if e, _ := s.Get(ctx, KindMedia, "MD-1"); e.meta().Status != StatusLost {
		t.Fatal("the lost stick is active again")
	}
	// A fresh export imports, edits included; a hand-typed file without the
	// column behaves as before.
	fresh := strings.Replace(string(exportKind(t, s, KindMedia, LangJA, EncUTF8)), "SERIAL0002\",\"", "SERIAL0002\",\"", 1)
	if cs, err := importKind(s, KindMedia, []byte(fresh)); err != nil || len(cs) != 0 {
		t.Fatalf("fresh export: %d %v", len(cs), err)
	}
	if cs, err := importKind(s, KindMedia, []byte("管理番号,状態,登録日,製品名,シリアル番号,管理責任者\r\nMD-1,有効,2026-01-10,USB,SERIAL0001,総務部\r\n")); err != nil || len(cs) != 1 {
		t.Fatalf("hand-typed file: %d %v", len(cs), err)
	}
}

// A file without some columns leaves those fields of existing entries as
// they are.
func TestImportMissingColumnsKeepStoredValues(t *testing.T) {
	ctx := context.Background()
	s, _ := newService(t, nil)
	p := samplePI("PI-1", "PC-01", `D:\顧客`)
	p.Sensitive = true
	mustDo(t)(s.Create(ctx, "admin", p))
	src := "管理番号,個人情報の名称,利用目的,媒体,保管場所,管理責任者,部署,保管期間,廃棄方法\r\n" +
		`PI-1,顧客名簿（新）,商品発送,電子,PC-01:D:\顧客,山田 太郎,営業部,5年,データ消去` + "\r\n" +
		`PI-2,新規名簿,連絡,電子,PC-01:D:\新規,山田 太郎,営業部,5年,データ消去` + "\r\n"
	if cs, err := importCSV(s, []byte(src)); err != nil || len(cs) != 2 {
		t.Fatalf("import: %d %v", len(cs), err)
	}
	e, _ := s.Get(ctx, KindPI, "PI-1")
	got := e.(*PIEntry)
	if got.Name != "顧客名簿（新）" || got.RecordCount != 1200 || !got.Sensitive || got.Contents != "氏名、住所" ||
		len(got.Access) != 2 || got.LastReviewed != "2026-04-01" || got.Status != StatusActive {
		t.Fatalf("absent columns wiped: %+v", got)
	}
	n, _ := s.Get(ctx, KindPI, "PI-2")
	if np := n.(*PIEntry); np.RecordCount != 0 || np.Sensitive || np.Status != StatusActive {
		t.Fatalf("new entry: %+v", np)
	}
	// A retired entry stays retired when the file has no status column.
	mustDo(t)(s.Retire(ctx, "admin", KindPI, "PI-2", 0))
	if _, err := importCSV(s, []byte(src)); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Get(ctx, KindPI, "PI-2"); n.meta().Status != StatusRetired {
		t.Fatal("a file without a status column made a retired entry active")
	}
}

// Cells right of the last header are refused unless empty.
func TestCSVCellsBeyondHeader(t *testing.T) {
	head := "管理番号,状態,登録日,製品名,シリアル番号,ベンダーID,製品ID,管理責任者,暗号化\r\n"
	_, ce, err := ParseCSV(KindMedia, []byte(head+"MD-1,有効,2026-01-10,USB,SERIAL0001,,,総務部,有,備考,x\r\n"))
	if err != nil || len(ce) != 2 || ce[0].Row != 2 || !strings.Contains(strings.Join(ce.Lines(KindMedia, LangJA), ""), "10 列目") {
		t.Fatalf("extra cells: %v %v", ce, err)
	}
	if rows, ce, err := ParseCSV(KindMedia, []byte(head+"MD-1,有効,2026-01-10,USB,SERIAL0001,,,総務部,有,,\r\n")); err != nil || len(ce) != 0 || len(rows) != 1 {
		t.Fatalf("trailing empty cells: %v %v", ce, err)
	}
}

// Times without a zone are the office's (JST by default), not the
// server's; export writes them as Excel reads them.
func TestCSVTimesInConfiguredLocation(t *testing.T) {
	ctx := context.Background()
	clk := newClock(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
	s, _ := newService(t, clk)
	mustDo(t)(s.Create(ctx, "admin", medium("MD-1", "ACTIVE0001")))
	head := "管理番号,状態,申請者,媒体シリアル番号,端末,持出し目的,持出し開始,持出し終了\r\n"
	rows, ce, err := s.ParseCSV(KindApprovals, []byte(head+"AP-1,申請中,山田,ACTIVE0001,PC-01,訪問,2026/11/2 9:00,2026/11/2 18:00\r\n"))
	if err != nil || len(ce) != 0 {
		t.Fatal(err, ce)
	}
	if _, err := s.Import(ctx, "admin", KindApprovals, rows, ce); err != nil {
		t.Fatal(err)
	}
	e, _ := s.Get(ctx, KindApprovals, "AP-1")
	if from := e.(*Approval).From; !from.Equal(time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("9:00 in Japan read as %s", from.UTC())
	}
	var b strings.Builder
	l, _ := s.List(ctx, KindApprovals, Filter{})
	if err := s.ExportCSV(&b, KindApprovals, l, LangJA, EncUTF8); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"2026/11/02 09:00"`) || strings.Contains(b.String(), "T00:00:00Z") {
		t.Fatalf("export times:\n%s", b.String())
	}
	// The export imports back unchanged, and RFC 3339 still reads.
	if cs, err := importKind(s, KindApprovals, []byte(b.String())); err != nil || len(cs) != 0 {
		t.Fatalf("re-import: %d %v", len(cs), err)
	}
	if _, ce, _ := ParseCSV(KindApprovals, []byte(head+"AP-2,申請中,山田,ACTIVE0001,PC-01,訪問,2026-11-02T09:00:00+09:00,2026-11-02 18:00\r\n")); len(ce) != 0 {
		t.Fatal(ce)
	}
}

// Too many rows for one transaction: Japanese, once prefixed, with what to do.
func TestImportTooBigSaysSplitInJapanese(t *testing.T) {
	s, _ := newService(t, nil)
	s.maxOps = 128
	var rows []ImportRow
	for i := range 70 {
		rows = append(rows, ImportRow{Row: i + 2, Entry: samplePI("PI-"+strconv.Itoa(i+1), "PC-01", `D:\x`)})
	}
	_, err := s.Import(context.Background(), "admin", KindPI, rows, nil)
	if !errors.Is(err, ErrInvalid) || strings.Count(err.Error(), "register:") > 1 || !strings.Contains(err.Error(), "64 行以下") ||
		!strings.Contains(err.Error(), "分けて") {
		t.Fatalf("oversize import: %v", err)
	}
}

// CSV messages in Japanese for a Japanese file, naming its own headers.
func TestCSVMessagesJapanese(t *testing.T) {
	ja := func(k Kind, ve ValidationError) string { return strings.Join(ve.Lines(k, LangJA), "\n") }
	_, ce, _ := ParseCSV(KindPI, []byte("管理番号,個人情報の名称,備考\r\n"))
	if msg := ja(KindPI, ce); strings.Contains(msg, "header") || strings.Contains(msg, "unknown column") || !strings.Contains(msg, "備考") || !strings.Contains(msg, "3 列目") {
		t.Errorf("unknown column: %s", msg)
	}
	_, ce, _ = ParseCSV(KindMedia, []byte("管理番号,製品名\r\n"))
	if msg := ja(KindMedia, ce); !strings.Contains(msg, "シリアル番号") || strings.Contains(msg, "missing column serial") {
		t.Errorf("missing column: %s", msg)
	}
	for name, b := range map[string]string{"empty": "", "quote": "管理番号,製品名,シリアル番号\r\nMD-1,US\"B,SERIAL0001\r\n"} {
		_, _, err := ParseCSV(KindMedia, []byte(b))
		var ve ValidationError
		if !errors.As(err, &ve) || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if msg := ja(KindMedia, ve); strings.Contains(msg, "register: register") || !strings.ContainsAny(msg, "ファイル引用符") {
			t.Errorf("%s: %s", name, msg)
		}
		if name == "quote" && ve[0].Row != 2 {
			t.Errorf("quote error row %d", ve[0].Row)
		}
	}
	s, _ := newService(t, nil)
	_, err := importCSV(s, []byte("管理番号,個人情報の名称,利用目的,媒体,保管場所,管理責任者,部署,保管期間,廃棄方法\r\n"+
		`PI-1,名簿,発送,USB,PC-01:D:\x,山田,営業部,5年,消去`+"\r\n"))
	var ve ValidationError
	if !errors.As(err, &ve) || !strings.Contains(ja(KindPI, ve), "紙・電子") || strings.Contains(ja(KindPI, ve), "paper") {
		t.Errorf("medium: %v", err)
	}
	_, err = importKind(s, KindDisposals, []byte("管理番号,廃棄日,廃棄対象,台帳番号,廃棄方法,廃棄責任者\r\nDS-1,2026-10-01,名簿,USB-001,溶解,鈴木\r\n"))
	if !errors.As(err, &ve) || strings.Contains(ja(KindDisposals, ve), "no register entry") && !strings.Contains(ja(KindDisposals, ve), "台帳番号") {
		t.Errorf("register id: %v", err)
	} else if m := ja(KindDisposals, ve); !strings.Contains(m, "ありません") && !strings.Contains(m, "登録されていません") {
		t.Errorf("register id: %s", m)
	}
}

// A re-test of the fixes above found three more:
//   - the approver's comment (not a CSV column nor a form field) was wiped
//     by re-importing an unchanged export and by saving the entry form;
//   - records the API accepts (returned before the window began, a request
//     whose stick was lost since, an ended approval of a stick lost since)
//     could not be imported on another server;
//   - an emptied 改訂 cell of an existing entry skipped the stale check.
func TestRetestOfKeeperFixes(t *testing.T) {
	ctx := context.Background()
	clk := newClock(time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC))
	s, st := newService(t, clk)
	if err := st.PutAgent(ctx, agentOn("PC-01")); err != nil {
		t.Fatal(err)
	}
	must := mustDo(t)
	must(s.Create(ctx, "admin", samplePI("PI-0007", "PC-01", `D:\顧客`)))
	must(s.Create(ctx, "admin", medium("MD-1", "ACTIVE0001")))
	must(s.Create(ctx, "admin", medium("MD-2", "LATERLOST1")))
	mk := func(serial string, from time.Time) *Approval {
		return &Approval{Requester: "山田", Serial: serial, Host: "PC-01", Purpose: "展示会", RegisterIDs: []string{"PI-0007"},
			From: from, To: from.Add(2 * time.Hour)}
	}
	denied := mk("ACTIVE0001", clk.Now().Add(time.Hour))
	must(s.Create(ctx, "admin", denied))
	must(s.DecideWithComment(ctx, "部長", denied.ID, false, 0, "私用目的のため却下"))
	early := mk("ACTIVE0001", clk.Now().Add(24*time.Hour)) // returned before its window began
	must(s.Create(ctx, "admin", early))
	must(s.Decide(ctx, "部長", early.ID, true, 0))
	must(s.Return(ctx, "admin", early.ID, 0, "中止・返却"))
	pending := mk("LATERLOST1", clk.Now().Add(time.Hour))
	must(s.Create(ctx, "admin", pending))
	setMediaStatus(t, s, "MD-2", StatusLost)

	out := exportKind(t, s, KindApprovals, LangJA, EncUTF8)
	if cs, err := importKind(s, KindApprovals, out); err != nil || len(cs) != 0 {
		t.Fatalf("unchanged export re-imported: %d changes, %v", len(cs), err)
	}
	if e, _ := s.Get(ctx, KindApprovals, denied.ID); e.(*Approval).Comment != "私用目的のため却下" {
		t.Fatalf("the approver's comment after a re-import: %q", e.(*Approval).Comment)
	}
	// The form posts what it shows, which has no comment.
	cur, _ := s.Get(ctx, KindApprovals, denied.ID)
	form := *cur.(*Approval)
	form.Comment, form.Result = "", "記録のみ"
	must(s.Update(ctx, "admin", &form, cur.meta().Revision))
	if e, _ := s.Get(ctx, KindApprovals, denied.ID); e.(*Approval).Comment != "私用目的のため却下" {
		t.Fatalf("the approver's comment after the form: %q", e.(*Approval).Comment)
	}

	// Another server takes the whole register as this one holds it.
	other, _ := newService(t, clk)
	for _, k := range []Kind{KindPI, KindMedia} {
		if _, err := importKind(other, k, exportKind(t, s, k, LangJA, EncUTF8)); err != nil {
			t.Fatalf("%s to another server: %v", k, err)
		}
	}
	if _, err := importKind(other, KindApprovals, exportKind(t, s, KindApprovals, LangJA, EncUTF8)); err != nil {
		t.Fatalf("approvals the API accepted, to another server: %v", err)
	}

	// An emptied 改訂 cell of an entry changed since the export.
	old := exportKind(t, s, KindPI, LangJA, EncUTF8)
	p, _ := s.Get(ctx, KindPI, "PI-0007")
	pe := *p.(*PIEntry)
	pe.Purpose = "営業・請求"
	must(s.Update(ctx, "admin", &pe, p.meta().Revision))
	emptied := regexp.MustCompile(`,"r[0-9a-f]+"\r\n`).ReplaceAllString(string(old), ",\"\"\r\n")
	if emptied == string(old) {
		t.Fatalf("no 改訂 cell found:\n%s", old)
	}
	if _, err := importKind(s, KindPI, []byte(emptied)); fieldsOf(err)["revision"] != 2 {
		t.Fatalf("an emptied 改訂 cell let a stale row in: %v", err)
	}
}

// A carry-out cannot name a retired (廃止) PI entry: its data is no longer
// held, so nothing of it can be taken out.
func TestApprovalCannotNameRetiredEntry(t *testing.T) {
	ctx := context.Background()
	clk := newClock(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC))
	s, _ := newService(t, clk)
	must := mustDo(t)
	must(s.Create(ctx, "admin", samplePI("PI-R", "PC-01", `D:\旧`)))
	must(s.Retire(ctx, "admin", KindPI, "PI-R", 0))
	a := &Approval{Requester: "山田", Serial: "NEWSTICK", Host: "PC-01", Purpose: "訪問", RegisterIDs: []string{"PI-R"},
		From: clk.Now().Add(time.Hour), To: clk.Now().Add(3 * time.Hour)}
	if _, err := s.Create(ctx, "admin", a); fieldsOf(err)["register_ids[0]"] != 0 || err == nil {
		t.Fatalf("a request naming a retired entry: %v", err)
	}
}
