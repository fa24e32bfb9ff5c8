package register

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/transform"

	"github.com/mamori/mamori/server/internal/state"
	"github.com/mamori/mamori/shared/policy"
)

// fakeClock is a settable clock for approval windows.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) Now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fakeClock) Set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *fakeClock) Add(d time.Duration) { c.ns.Add(int64(d)) }
func newClock(t time.Time) *fakeClock    { c := &fakeClock{}; c.Set(t); return c }
func openState(t *testing.T) *state.State {
	t.Helper()
	st, err := state.Open(context.Background(), state.Config{DataDir: t.TempDir(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newService(t *testing.T, clk *fakeClock) (*Service, *state.State) {
	t.Helper()
	st := openState(t)
	cfg := Config{State: st}
	if clk != nil {
		cfg.Now = clk.Now
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, st
}

func samplePI(id, host, folder string) *PIEntry {
	return &PIEntry{Meta: Meta{ID: id}, Name: "顧客名簿 " + id, Contents: "氏名、住所", Purpose: "商品発送",
		RecordCount: 1200, Medium: "electronic", Locations: []Location{{Host: host, Folder: folder}},
		Owner: "山田 太郎", Department: "営業部", Access: []string{"山田 太郎", "佐藤 花子"}, Acquisition: "申込書",
		Retention: "5y", DisposalMethod: "データ消去", LastReviewed: "2026-04-01"}
}

func fieldsOf(err error) map[string]int {
	var ve ValidationError
	out := map[string]int{}
	if errors.As(err, &ve) {
		for _, fe := range ve {
			out[fe.Field] = fe.Row
		}
	}
	return out
}

func TestCreateUpdateRetireHistory(t *testing.T) {
	ctx := context.Background()
	s, _ := newService(t, nil)
	e := samplePI("PI-0007", "PC-01", `D:\顧客`)
	c, err := s.Create(ctx, "admin", e)
	if err != nil {
		t.Fatal(err)
	}
	if c.Action != ActionCreated || c.Revision == 0 || c.Before != nil || e.Revision != c.Revision {
		t.Fatalf("create change %+v (entry rev %d)", c, e.Revision)
	}
	if _, err := s.Create(ctx, "admin", samplePI("PI-0007", "PC-02", `D:\x`)); !errors.Is(err, ErrConflict) {
		t.Fatalf("duplicate id: %v", err)
	}
	got, err := s.Get(ctx, KindPI, "PI-0007")
	if err != nil {
		t.Fatal(err)
	}
	upd := *got.(*PIEntry)
	upd.RecordCount = 1300
	c2, err := s.Update(ctx, "yamada", &upd, got.meta().Revision)
	if err != nil {
		t.Fatal(err)
	}
	if c2.Action != ActionUpdated || !strings.Contains(string(c2.Before), `"record_count":1200`) || !strings.Contains(string(c2.After), `"record_count":1300`) {
		t.Fatalf("update change %s -> %s", c2.Before, c2.After)
	}
	c3, err := s.Retire(ctx, "admin", KindPI, "PI-0007", 0)
	if err != nil {
		t.Fatal(err)
	}
	if c3.Action != ActionRetired {
		t.Fatalf("retire action %s", c3.Action)
	}
	kept, err := s.Get(ctx, KindPI, "PI-0007")
	if err != nil || kept.meta().Status != StatusRetired || kept.(*PIEntry).RecordCount != 1300 {
		t.Fatalf("retired entry not kept: %+v %v", kept, err)
	}
	h, err := s.History(ctx, KindPI, "PI-0007")
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 3 || h[0].By != "admin" || h[1].By != "yamada" || h[2].Action != ActionRetired ||
		!(h[0].Revision < h[1].Revision && h[1].Revision < h[2].Revision) || h[2].Version != 3 {
		t.Fatalf("history %+v", h)
	}
	if l, _ := s.List(ctx, KindPI, Filter{Status: StatusActive}); len(l) != 0 {
		t.Fatalf("active list has the retired entry: %v", l)
	}
	if l, _ := s.List(ctx, KindPI, Filter{Host: "pc-01"}); len(l) != 1 {
		t.Fatalf("host filter (case-insensitive) found %d", len(l))
	}
}

func TestStaleRevisionConflictsAndOverwritesNothing(t *testing.T) {
	ctx := context.Background()
	s, _ := newService(t, nil)
	e := samplePI("PI-1", "PC-01", `D:\顧客`)
	if _, err := s.Create(ctx, "admin", e); err != nil {
		t.Fatal(err)
	}
	rev := e.Revision
	// Ten editors hold the same revision; exactly one wins.
	var wins, conflicts atomic.Int32
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := *samplePI("PI-1", "PC-01", `D:\顧客`)
			mine.RecordCount = 5000 + i
			_, err := s.Update(ctx, "editor", &mine, rev)
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, ErrConflict):
				conflicts.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 || conflicts.Load() != 9 {
		t.Fatalf("wins %d conflicts %d", wins.Load(), conflicts.Load())
	}
	got, _ := s.Get(ctx, KindPI, "PI-1")
	h, _ := s.History(ctx, KindPI, "PI-1")
	if len(h) != 2 || !strings.Contains(string(h[1].After), `"record_count":`+strconv.Itoa(got.(*PIEntry).RecordCount)) {
		t.Fatalf("history %d entries, stored %d", len(h), got.(*PIEntry).RecordCount)
	}
	stale := *samplePI("PI-1", "PC-01", `D:\顧客`)
	if _, err := s.Update(ctx, "late", &stale, rev); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale update: %v", err)
	}
	if _, err := s.Update(ctx, "late", &stale, 0); fieldsOf(err)["revision"] != 0 || err == nil {
		t.Fatalf("update without revision: %v", err)
	}
	again, _ := s.Get(ctx, KindPI, "PI-1")
	if again.meta().Revision != got.meta().Revision {
		t.Fatal("a refused update changed the entry")
	}
}

func TestValidationNamesFields(t *testing.T) {
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	bad := &PIEntry{Meta: Meta{ID: "bad id", Status: StatusActive}, Medium: "electronic", Retention: "5y",
		Locations: []Location{{Host: "", Folder: "relative"}}, LastReviewed: "2027-01-01", RecordCount: -1}
	f := fieldsOf(Validate(bad, now))
	for _, want := range []string{"id", "name", "purpose", "owner", "department", "record_count",
		"locations[0].host", "locations[0].folder", "disposal_method", "last_reviewed"} {
		if _, ok := f[want]; !ok {
			t.Errorf("no error for %s in %v", want, f)
		}
	}
	m := &MediaEntry{Meta: Meta{ID: "MD-1", Status: StatusActive}, Registered: "2026-13-01", Product: "USB",
		Serial: "ab", VendorID: "xyz", Owner: "x"}
	f = fieldsOf(Validate(m, now))
	for _, want := range []string{"registered", "serial", "vendor_id"} {
		if _, ok := f[want]; !ok {
			t.Errorf("media: no error for %s in %v", want, f)
		}
	}
	a := &Approval{Meta: Meta{ID: "AP-1", Status: StatusRequested}, Requester: "r", Serial: "SER12345", Host: "PC-01",
		Purpose: "p", From: now, To: now.Add(-time.Hour)}
	if _, ok := fieldsOf(Validate(a, now))["to"]; !ok {
		t.Error("approval: to before from accepted")
	}
	good := samplePI("PI-1", "PC-01", `D:\x`)
	good.Status = StatusActive
	if err := Validate(good, now); err != nil {
		t.Errorf("good entry refused: %v", err)
	}
	if !errors.Is(Validate(bad, now), ErrInvalid) {
		t.Error("validation error does not wrap ErrInvalid")
	}
}

func TestDisposalMustReferenceExistingEntry(t *testing.T) {
	ctx := context.Background()
	s, _ := newService(t, nil)
	d := &Disposal{Date: "2026-10-01", Item: "顧客名簿(紙)", RegisterID: "PI-404", Method: "溶解", Responsible: "山田"}
	if _, err := s.Create(ctx, "admin", d); fieldsOf(err)["register_id"] != 0 || err == nil {
		t.Fatalf("dangling register_id: %v", err)
	}
	if _, err := s.Create(ctx, "admin", samplePI("PI-404", "PC-01", `D:\x`)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, "admin", d); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(d.ID, "DS-") {
		t.Fatalf("generated id %q", d.ID)
	}
}

func exportAll(t *testing.T, s *Service, lang, enc string) []byte {
	t.Helper()
	return exportKind(t, s, KindPI, lang, enc)
}

func exportKind(t *testing.T, s *Service, k Kind, lang, enc string) []byte {
	t.Helper()
	l, err := s.List(context.Background(), k, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := ExportCSV(&b, k, l, lang, enc); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func importCSV(s *Service, b []byte) ([]Change, error) { return importKind(s, KindPI, b) }

func importKind(s *Service, k Kind, b []byte) ([]Change, error) {
	rows, cellErrs, err := ParseCSV(k, b)
	if err != nil {
		return nil, err
	}
	return s.Import(context.Background(), "admin", k, rows, cellErrs)
}

func TestCSVRoundTrip(t *testing.T) {
	ctx := context.Background()
	s1, _ := newService(t, nil)
	a := samplePI("PI-0001", "PC-01", `D:\顧客\名簿, "A"`)
	a.Locations = append(a.Locations, Location{Host: "FS-01", Folder: `\\fs01\share\顧客`})
	a.RiskNotes = "持出し時の紛失\n二行目"
	b := samplePI("PI-0002", "PC-02", "/srv/hr")
	b.Sensitive, b.Medium, b.Retention, b.DisposalMethod, b.Outsourcee = true, "both", "indefinite", "", "○○健診センター"
	for _, e := range []*PIEntry{a, b} {
		if _, err := s1.Create(ctx, "admin", e); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s1.Retire(ctx, "admin", KindPI, "PI-0002", 0); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ lang, enc string }{{LangJA, EncUTF8}, {LangEN, EncUTF8}, {LangJA, EncSJIS}} {
		first := exportAll(t, s1, tc.lang, tc.enc)
		if tc.enc == EncUTF8 && !bytes.HasPrefix(first, []byte(utf8BOM)) {
			t.Fatal("UTF-8 export without BOM")
		}
		if !bytes.Contains(first, []byte("\r\n")) {
			t.Fatal("export without CRLF")
		}
		s2, _ := newService(t, nil)
		cs, err := importCSV(s2, first)
		if err != nil {
			t.Fatalf("%s/%s: %v", tc.lang, tc.enc, err)
		}
		if len(cs) != 2 {
			t.Fatalf("imported %d", len(cs))
		}
		second := exportAll(t, s2, tc.lang, tc.enc)
		if !bytes.Equal(first, second) {
			t.Fatalf("%s/%s round trip differs:\n%q\n%q", tc.lang, tc.enc, first, second)
		}
		// Importing the same file again changes nothing.
		if cs, err := importCSV(s2, second); err != nil || len(cs) != 0 {
			t.Fatalf("re-import: %d changes, %v", len(cs), err)
		}
	}
}

func TestCSVImportCP932(t *testing.T) {
	s, _ := newService(t, nil)
	// Generated with the x/text encoder, as Japanese Excel saves "CSV (コンマ区切り)".
	src := "管理番号,個人情報の名称,利用目的,件数,媒体,保管場所,管理責任者,部署,保管期間,廃棄方法\r\n" +
		"PI-0100,見積顧客一覧,見積送付,\"1,200\",電子,PC-01:D:\\顧客\\見積,高橋,営業部,3y,データ消去\r\n"
	sj, _, err := transform.Bytes(japanese.ShiftJIS.NewEncoder(), []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if cs, err := importCSV(s, sj); err != nil || len(cs) != 1 {
		t.Fatalf("generated CP932: %d, %v", len(cs), err)
	}
	e, err := s.Get(context.Background(), KindPI, "PI-0100")
	if err != nil || e.(*PIEntry).Name != "見積顧客一覧" || e.(*PIEntry).RecordCount != 1200 || e.(*PIEntry).Locations[0].Folder != `D:\顧客\見積` {
		t.Fatalf("decoded %+v %v", e, err)
	}
	fixture, err := os.ReadFile("testdata/pi-cp932.csv")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := importCSV(s, fixture)
	if err != nil || len(cs) != 2 {
		t.Fatalf("fixture: %d, %v", len(cs), err)
	}
	hr, _ := s.Get(context.Background(), KindPI, "PI-0002")
	p := hr.(*PIEntry)
	if !p.Sensitive || p.Medium != "both" || p.Outsourcee != "○○健診センター" || len(p.Access) != 1 {
		t.Fatalf("fixture row 3: %+v", p)
	}
	sales, _ := s.Get(context.Background(), KindPI, "PI-0001")
	if a := sales.(*PIEntry).Access; len(a) != 2 || a[1] != "佐藤 花子" {
		t.Fatalf("multi-line access cell: %q", a)
	}
}

func TestCSVBadRowsImportNothing(t *testing.T) {
	s, _ := newService(t, nil)
	csvText := "\ufeffid,name,purpose,record_count,medium,locations,owner,department,retention,disposal_method,last_reviewed\r\n" +
		"PI-1,顧客名簿,発送,10,electronic,PC-01:D:\\a,山田,営業部,5y,消去,2026-01-01\r\n" +
		"PI-2,社員名簿,人事,many,electronic,PC-01:D:\\b,鈴木,総務部,5y,消去,2026-01-01\r\n" +
		"PI-3,取引先,連絡,5,electronic,PC-01:D:\\c,佐藤,営業部,5y,,2026-02-30\r\n"
	_, err := importCSV(s, []byte(csvText))
	var ve ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("bad rows accepted: %v", err)
	}
	want := map[string]int{"record_count": 3, "disposal_method": 4, "last_reviewed": 4}
	for field, row := range want {
		found := false
		for _, fe := range ve {
			found = found || fe.Field == field && fe.Row == row
		}
		if !found {
			t.Errorf("no error for row %d %s in %v", row, field, ve)
		}
	}
	if !strings.Contains(err.Error(), "row 3: record_count") {
		t.Errorf("message %q does not name row and field", err)
	}
	if l, _ := s.List(context.Background(), KindPI, Filter{}); len(l) != 0 {
		t.Fatalf("bad import stored %d entries", len(l))
	}
	if _, _, err := ParseCSV(KindPI, []byte("id,name,colour\r\n")); err != nil {
		t.Fatal(err)
	} else if _, ce, _ := ParseCSV(KindPI, []byte("id,name,colour\r\n")); len(ce) != 1 || ce[0].Field != "header" {
		t.Fatalf("unknown column: %v", ce)
	}
}

func TestImportTooBigForOneTransaction(t *testing.T) {
	s, _ := newService(t, nil)
	var rows []ImportRow
	for i := range 1000 {
		rows = append(rows, ImportRow{Row: i + 2, Entry: samplePI("PI-"+strconv.Itoa(i+1), "PC-01", `D:\x`)})
	}
	// The embedded etcd takes a first import of a real register whole.
	if _, err := s.Import(context.Background(), "admin", KindPI, rows, nil); err != nil {
		t.Fatalf("1,000-row import on the embedded etcd: %v", err)
	}
	if l, _ := s.List(context.Background(), KindPI, Filter{}); len(l) != 1000 {
		t.Fatalf("stored %d of 1000", len(l))
	}

	// An external cluster with etcd's default 128 operations refuses a
	// 70-row import whole, before etcd does.
	s, _ = newService(t, nil)
	s.maxOps = 128
	rows = rows[:70]
	if _, err := s.Import(context.Background(), "admin", KindPI, rows, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("oversize import: %v", err)
	}
	if l, _ := s.List(context.Background(), KindPI, Filter{}); len(l) != 0 {
		t.Fatalf("oversize import stored %d", len(l))
	}
	// Few rows but too many bytes for one etcd request: refused whole as well.
	s.maxBytes = 20 << 10
	rows = rows[:40]
	for _, r := range rows {
		r.Entry.(*PIEntry).RiskNotes = strings.Repeat("リスク", 100)
	}
	if _, err := s.Import(context.Background(), "admin", KindPI, rows, nil); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "bytes") {
		t.Fatalf("oversize import (bytes): %v", err)
	}
	if l, _ := s.List(context.Background(), KindPI, Filter{}); len(l) != 0 {
		t.Fatalf("oversize import stored %d", len(l))
	}
}

func TestEffectivePolicy(t *testing.T) {
	ctx := context.Background()
	clk := newClock(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC))
	s, st := newService(t, clk)
	for _, a := range []state.Agent{{ID: "ag-x", Hostname: "pc-sales01", Department: "営業部"}, {ID: "ag-y", Hostname: "PC-OTHER"}} {
		if err := st.PutAgent(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	c, err := s.Effective(ctx, "ag-x")
	if err != nil {
		t.Fatal(err)
	}
	if c.Policy.Name != "pmark-baseline" || len(c.Policy.Controls.FileAccess.Folders) != 0 {
		t.Fatalf("empty registers: %s %+v", c.Source, c.Policy.Controls.FileAccess)
	}
	v0 := c.Policy.Version()

	if _, err := s.Create(ctx, "admin", samplePI("PI-0007", "PC-SALES01", `D:\顧客`)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, "admin", &MediaEntry{Meta: Meta{ID: "MD-1"}, Registered: "2026-01-10", Product: "BUFFALO RUF3",
		Serial: "AA00123456", VendorID: "0411", ProductID: "01F0", Owner: "山田"}); err != nil {
		t.Fatal(err)
	}
	ap := &Approval{Requester: "山田", Serial: "B9", Host: "pc-sales01", Purpose: "展示会",
		RegisterIDs: []string{"PI-0007"}, From: clk.Now().Add(time.Hour), To: clk.Now().Add(3 * time.Hour)}
	if _, err := s.Create(ctx, "admin", ap); err == nil {
		t.Fatal("2-character serial accepted")
	}
	ap.Serial = "aa00123456" // a registered medium, matched case-insensitively
	if _, err := s.Create(ctx, "admin", ap); err != nil {
		t.Fatal(err)
	}
	c, _ = s.Effective(ctx, "ag-x")
	fa := c.Policy.Controls.FileAccess.Folders
	if len(fa) != 1 || fa[0] != (policy.Folder{Path: `D:\顧客`, RegisterID: "PI-0007"}) || len(c.Policy.Controls.Backup.Folders) != 1 {
		t.Fatalf("folders %+v", c.Policy.Controls)
	}
	if r := c.Policy.Controls.Media.Registered; len(r) != 1 || r[0].Serial != "AA00123456" || r[0].VendorID != "0411" || r[0].ProductID != "01f0" {
		t.Fatalf("media %+v", r)
	}
	if len(c.Policy.Controls.Media.Approvals) != 0 {
		t.Fatal("a requested (not approved) window is in the policy")
	}
	if c.Policy.Version() == v0 {
		t.Fatal("version unchanged")
	}
	if _, err := s.Decide(ctx, "manager1", ap.ID, true, 0); err != nil {
		t.Fatal(err)
	}
	c, _ = s.Effective(ctx, "ag-x")
	if a := c.Policy.Controls.Media.Approvals; len(a) != 1 || a[0].Serial != "aa00123456" || !c.Until.Equal(ap.To) {
		t.Fatalf("approved window: %+v until %v", a, c.Until)
	}
	if err := c.Policy.Validate(); err != nil {
		t.Fatalf("compiled policy invalid: %v", err)
	}
	other, _ := s.Effective(ctx, "ag-y")
	if len(other.Policy.Controls.FileAccess.Folders) != 0 || len(other.Policy.Controls.Media.Approvals) != 0 {
		t.Fatal("another host got this host's folders or approvals")
	}
	clk.Add(3*time.Hour + time.Second)
	c, _ = s.Effective(ctx, "ag-x")
	if len(c.Policy.Controls.Media.Approvals) != 0 || !c.Until.IsZero() {
		t.Fatalf("ended window still there: %+v", c.Policy.Controls.Media.Approvals)
	}

	// Pack precedence: agent > department > default > built-in.
	if err := s.EnsureBuiltinPacks(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.AssignDepartment(ctx, "営業部", "strict"); err != nil {
		t.Fatal(err)
	}
	if err := s.AssignDepartment(ctx, "営業部", "nope"); fieldsOf(err)["policy"] != 0 || err == nil {
		t.Fatalf("assign missing policy: %v", err)
	}
	c, _ = s.Effective(ctx, "ag-x")
	if c.Source != "strict" || len(c.Policy.Controls.FileAccess.Folders) != 1 {
		t.Fatalf("department assignment: %s", c.Source)
	}
	if err := st.Assign(ctx, "ag-x", "pmark-baseline"); err != nil {
		t.Fatal(err)
	}
	if c, _ = s.Effective(ctx, "ag-x"); c.Source != "pmark-baseline" {
		t.Fatalf("agent assignment: %s", c.Source)
	}
	if err := s.SetAgentDepartment(ctx, "ag-y", "営業部"); err != nil {
		t.Fatal(err)
	}
	if c, _ = s.Effective(ctx, "ag-y"); c.Source != "strict" {
		t.Fatalf("admin-set department: %s", c.Source)
	}
}

// Saving a form or PUTting an entry as read changes nothing: no new
// version, no history entry, so the register's history (audit evidence)
// lists only real changes.
func TestUpdateThatChangesNothingWritesNothing(t *testing.T) {
	ctx := context.Background()
	s, _ := newService(t, nil)
	e := samplePI("PI-0009", "PC-01", `D:\顧客`)
	if _, err := s.Create(ctx, "admin", e); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Get(ctx, KindPI, "PI-0009")
	same := *got.(*PIEntry)
	c, err := s.Update(ctx, "yamada", &same, got.meta().Revision)
	if err != nil {
		t.Fatal(err)
	}
	if c.Action != ActionUnchanged || c.Revision != got.meta().Revision || c.Version != 1 {
		t.Fatalf("unchanged update reported %+v", c)
	}
	if same.Revision != got.meta().Revision || same.Version != 1 || same.UpdatedBy != got.meta().UpdatedBy {
		t.Fatalf("unchanged entry's meta %+v, stored %+v", same.Meta, *got.meta())
	}
	h, _ := s.History(ctx, KindPI, "PI-0009")
	again, _ := s.Get(ctx, KindPI, "PI-0009")
	if len(h) != 1 || again.meta().Revision != got.meta().Revision {
		t.Fatalf("history %d entries, revision %d -> %d", len(h), got.meta().Revision, again.meta().Revision)
	}
	// A stale revision is still a conflict, changed or not.
	upd := *got.(*PIEntry)
	upd.RecordCount++
	if _, err := s.Update(ctx, "yamada", &upd, got.meta().Revision); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, "late", &same, got.meta().Revision); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale no-op update: %v", err)
	}
}

// A disposal names what was disposed of: a 個人情報管理台帳 entry (the data)
// or a 媒体管理台帳 entry (the USB stick or disk shredded); a number in
// neither register is refused, naming both.
func TestDisposalMayNameAMediaEntry(t *testing.T) {
	ctx := context.Background()
	s, _ := newService(t, nil)
	if _, err := s.Create(ctx, "admin", &MediaEntry{Meta: Meta{ID: "MD-0007"}, Registered: "2026-01-10", Product: "USB",
		Serial: "AA01", Owner: "総務部"}); err != nil {
		t.Fatal(err)
	}
	d := &Disposal{Date: "2026-10-01", Item: "USB メモリ (AA01)", RegisterID: "MD-0007", Method: "物理破壊", Responsible: "山田"}
	c, err := s.Create(ctx, "admin", d)
	if err != nil {
		t.Fatalf("disposal of a registered medium refused: %v", err)
	}
	// The medium is 廃棄済 in the same write: no PC allows a shredded
	// stick and no one carries it out; the change is said with its cause.
	m, err := s.Get(ctx, KindMedia, "MD-0007")
	if err != nil || m.(*MediaEntry).Status != StatusDisposed {
		t.Fatalf("medium after its disposal: %+v %v", m, err)
	}
	if len(c.Also) != 1 || c.Also[0].ID != "MD-0007" || c.Also[0].Cause != "disposals/"+d.ID || c.Also[0].Revision != c.Revision ||
		ChangeAttrs(c.Also[0])["cause"] != "disposals/"+d.ID {
		t.Errorf("the medium's change: %+v", c.Also)
	}
	h, err := s.History(ctx, KindMedia, "MD-0007")
	if err != nil || len(h) != 2 || h[1].Cause != "disposals/"+d.ID {
		t.Errorf("medium history %+v %v", h, err)
	}
	now := s.Now()
	_, err = s.Create(ctx, "kanri", &Approval{Requester: "鈴木", Serial: "AA01", Host: "PC-01", Purpose: "x",
		From: now.Add(time.Minute), To: now.Add(48 * time.Hour)})
	if err == nil {
		t.Error("a carry-out of the disposed stick was accepted")
	}
	// A second disposal record of the same stick changes it no more.
	c2, err := s.Create(ctx, "admin", &Disposal{Date: "2026-10-02", Item: "USB", RegisterID: "MD-0007", Method: "溶解", Responsible: "山田"})
	if err != nil || len(c2.Also) != 0 {
		t.Errorf("second disposal: %+v %v", c2.Also, err)
	}
	bad := &Disposal{Date: "2026-10-01", Item: "USB", RegisterID: "MD-0404", Method: "物理破壊", Responsible: "山田"}
	_, err = s.Create(ctx, "admin", bad)
	var ve ValidationError
	ja := strings.Join(ve.Lines(KindDisposals, LangJA), "\n")
	if errors.As(err, &ve) {
		ja = strings.Join(ve.Lines(KindDisposals, LangJA), "\n")
	}
	if len(ve) != 1 || ve[0].Field != "register_id" || !strings.Contains(ja, "個人情報管理台帳にも媒体管理台帳にも") {
		t.Errorf("disposal of an unknown number: %v (%s)", err, ja)
	}
}

// Every problem of an entry is named at once: a bad window and a register
// number that does not exist; a malformed retention is one problem, not
// also a missing disposal method.
func TestEveryProblemNamedAtOnce(t *testing.T) {
	ctx := context.Background()
	s, _ := newService(t, nil)
	now := s.Now()
	_, err := s.Create(ctx, "kanri", &Approval{Requester: "鈴木", Serial: "AA0001", Host: "PC-01", Purpose: "x",
		RegisterIDs: []string{"PI-NOPE"}, From: now.Add(48 * time.Hour), To: now.Add(time.Hour)})
	f := fieldsOf(err)
	_, to := f["to"]
	_, ids0 := f["register_ids[0]"]
	_, ids := f["register_ids"]
	if !to || !ids0 && !ids {
		t.Errorf("approval problems: %v (fields %v)", err, f)
	}
	pi := samplePI("PI-9", "PC-01", `D:\x`)
	pi.Retention, pi.DisposalMethod = "forever", ""
	_, err = s.Create(ctx, "admin", pi)
	f = fieldsOf(err)
	_, ret := f["retention"]
	_, dm := f["disposal_method"]
	if !ret || dm {
		t.Errorf("retention forever: %v (fields %v)", err, f)
	}
}

// An import of disposals marks each medium it names 廃棄済 once, in the
// import's transaction, whatever number of rows name it.
func TestImportedDisposalsDisposeTheirMedia(t *testing.T) {
	ctx := context.Background()
	s, _ := newService(t, nil)
	for _, m := range []*MediaEntry{medium("MD-1", "AA0001"), medium("MD-2", "AA0002")} {
		if _, err := s.Create(ctx, "admin", m); err != nil {
			t.Fatal(err)
		}
	}
	cs, err := importKind(s, KindDisposals, []byte("管理番号,廃棄日,廃棄対象,台帳番号,廃棄方法,廃棄責任者\r\n"+
		"DS-1,2026-10-01,USB 本体,MD-1,物理破壊,鈴木\r\nDS-2,2026-10-01,USB ケース,MD-1,溶解,鈴木\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	var media []string
	for _, c := range cs {
		if c.Kind == KindMedia {
			media = append(media, c.ID+" "+c.Cause)
		}
	}
	if len(cs) != 3 || len(media) != 1 || !strings.HasPrefix(media[0], "MD-1 disposals/DS-") {
		t.Errorf("changes %d, media %v", len(cs), media)
	}
	for id, want := range map[string]string{"MD-1": StatusDisposed, "MD-2": StatusActive} {
		if m, err := s.Get(ctx, KindMedia, id); err != nil || m.(*MediaEntry).Status != want {
			t.Errorf("%s: %+v %v, want %s", id, m, err, want)
		}
	}
}
