package register

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/transform"

	"github.com/mamori/mamori/server/internal/state"
)

// fillOtherRegisters gives s media, approvals (closed, returned, denied and
// one open request) and disposals, through the same calls the API makes.
func fillOtherRegisters(t *testing.T, s *Service, clk *fakeClock) {
	t.Helper()
	ctx := context.Background()
	must := func(_ Change, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Create(ctx, "admin", samplePI("PI-0007", "PC-SALES01", `D:\顧客`)))
	must(s.Create(ctx, "admin", samplePI("PI-0008", "PC-SALES01", `D:\見積`)))
	must(s.Create(ctx, "admin", &MediaEntry{Meta: Meta{ID: "MD-0001"}, Registered: "2026-01-10", Product: "BUFFALO RUF3-K, 32GB \"黒\"",
		Serial: "AA00123456", VendorID: "0411", ProductID: "01F0", Owner: "山田 太郎", Encrypted: true}))
	lost := &MediaEntry{Meta: Meta{ID: "MD-0002"}, Registered: "2025-04-01", Product: "SanDisk", Serial: "4C530001", Owner: "総務部"}
	must(s.Create(ctx, "admin", lost))

	now := clk.Now()
	mk := func(id, serial string, from, to time.Time) *Approval {
		a := &Approval{Meta: Meta{ID: id}, Requester: "山田 太郎", Serial: serial, Host: "PC-SALES01",
			Purpose: "展示会, \"東京\"", RegisterIDs: []string{"PI-0007", "PI-0008"}, From: from, To: to}
		must(s.Create(ctx, "admin", a))
		return a
	}
	closed := mk("AP-0001", "AA00123456", now.Add(-time.Hour), now.Add(2*time.Hour))
	must(s.Decide(ctx, "部長 佐藤", closed.ID, true, 0))
	returned := mk("AP-0002", "AA00123456", now.Add(-time.Hour), now.Add(3*time.Hour))
	must(s.Decide(ctx, "部長 佐藤", returned.ID, true, 0))
	r, _ := s.Get(ctx, KindApprovals, returned.ID)
	ret := r.(*Approval)
	ret.Status, ret.Result = StatusReturned, "返却確認済\n書込み 12 件"
	must(s.Update(ctx, "admin", ret, ret.Revision))
	denied := mk("AP-0003", "4C530001", now, now.Add(time.Hour))
	must(s.Decide(ctx, "部長 佐藤", denied.ID, false, 0))
	// Lost after its (denied) request: a closed record of it still imports.
	lost.Status = StatusLost
	must(s.Update(ctx, "admin", lost, lost.Revision))
	mk("AP-0004", "AA00123456", now.Add(48*time.Hour), now.Add(50*time.Hour)) // requested, window ahead
	// AP-0001's window ends; the export holds no open approved window.
	clk.Add(2*time.Hour + time.Minute)

	must(s.Create(ctx, "admin", &Disposal{Meta: Meta{ID: "DS-0001"}, Date: "2026-10-01", Item: "顧客名簿(紙) 2019年度",
		RegisterID: "PI-0007", Method: "溶解処理", Responsible: "総務部 鈴木", Certificate: "証明書 No.123"}))
	must(s.Create(ctx, "admin", &Disposal{Meta: Meta{ID: "DS-0002"}, Date: "2026-10-02", Item: "旧PC HDD",
		Method: "物理破壊", Responsible: "情報システム"}))
	must(s.Retire(ctx, "admin", KindDisposals, "DS-0002", 0))
}

// Export, import into a fresh service, export again: identical bytes, for
// each register, header language and encoding; re-importing changes nothing.
func TestCSVRoundTripOtherRegisters(t *testing.T) {
	// Nanoseconds on the clock: decisions are stored finer than a CSV cell.
	clk := newClock(time.Date(2026, 11, 2, 9, 0, 0, 123456789, time.UTC))
	s1, _ := newService(t, clk)
	fillOtherRegisters(t, s1, clk)
	for _, tc := range []struct{ lang, enc string }{{LangJA, EncUTF8}, {LangEN, EncUTF8}, {LangJA, EncSJIS}} {
		s2, _ := newService(t, clk)
		// PI first: disposals refer to it.
		if _, err := importKind(s2, KindPI, exportKind(t, s1, KindPI, tc.lang, tc.enc)); err != nil {
			t.Fatal(err)
		}
		for _, k := range []Kind{KindMedia, KindApprovals, KindDisposals} {
			first := exportKind(t, s1, k, tc.lang, tc.enc)
			if tc.enc == EncUTF8 && !bytes.HasPrefix(first, []byte(utf8BOM)) {
				t.Fatalf("%s: UTF-8 export without BOM", k)
			}
			if tc.enc == EncSJIS && utf8.Valid(first) {
				t.Fatalf("%s: sjis export is not CP932", k)
			}
			want := map[Kind]int{KindMedia: 2, KindApprovals: 4, KindDisposals: 2}[k]
			cs, err := importKind(s2, k, first)
			if err != nil || len(cs) != want {
				t.Fatalf("%s %s/%s: %d changes, %v", k, tc.lang, tc.enc, len(cs), err)
			}
			second := exportKind(t, s2, k, tc.lang, tc.enc)
			if !bytes.Equal(first, second) {
				t.Fatalf("%s %s/%s round trip differs:\n%q\n%q", k, tc.lang, tc.enc, first, second)
			}
			if cs, err := importKind(s2, k, second); err != nil || len(cs) != 0 {
				t.Fatalf("%s re-import: %d changes, %v", k, len(cs), err)
			}
			// The source's own export too: stored sub-second decision times
			// are the same second as the cells.
			if cs, err := importKind(s1, k, first); err != nil || len(cs) != 0 {
				t.Fatalf("%s re-import at the source: %d changes, %v", k, len(cs), err)
			}
		}
	}
	// What the ja file says, so Excel users read their own words.
	ja := string(exportKind(t, s1, KindApprovals, LangJA, EncUTF8))
	for _, want := range []string{`"管理番号","状態","申請者","媒体シリアル番号","端末"`, "返却済", "却下", "申請中", "部長 佐藤", "\"PI-0007\r\nPI-0008\""} {
		if !strings.Contains(ja, want) {
			t.Errorf("approvals ja export lacks %q:\n%s", want, ja)
		}
	}
	got, _ := s1.Get(context.Background(), KindMedia, "MD-0002")
	if got.meta().Status != StatusLost || !strings.Contains(string(exportKind(t, s1, KindMedia, LangJA, EncUTF8)), "紛失") {
		t.Fatal("media status lost not exported as 紛失")
	}
}

func agentOn(host string) state.Agent { return state.Agent{ID: "ag-1", Hostname: host} }

func toSJIS(t *testing.T, s string) []byte {
	t.Helper()
	b, _, err := transform.Bytes(japanese.ShiftJIS.NewEncoder(), []byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// CP932 files as Japanese Excel saves them ("CSV (コンマ区切り)"),
// generated with the x/text encoder, Japanese headers in another order,
// and the date-time form Excel writes back for a cell it recognised.
func TestCSVImportCP932OtherRegisters(t *testing.T) {
	ctx := context.Background()
	clk := newClock(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC))
	s, _ := newService(t, clk)
	if _, err := s.Create(ctx, "admin", samplePI("PI-0001", "PC-01", `D:\顧客`)); err != nil {
		t.Fatal(err)
	}
	files := map[Kind]string{
		KindMedia: "シリアル番号,管理番号,製品名,登録日,管理責任者,暗号化,状態\r\n" +
			"AA00123456,MD-0100,ＵＳＢメモリ①,2026-01-10,高橋,有,有効\r\n" +
			"BB00123456,MD-0101,外付けHDD,2025-12-01,高橋,無,廃棄済\r\n",
		KindApprovals: "管理番号,状態,申請者,媒体シリアル番号,端末,持出し目的,持出し開始,持出し終了,承認者,承認日時,結果\r\n" +
			"AP-0100,返却済,高橋,AA00123456,PC-01,顧客訪問,2026/10/1 9:00,2026/10/1 18:00,部長 佐藤,2026/9/30 17:00,返却確認済\r\n",
		KindDisposals: "管理番号,廃棄日,廃棄対象,台帳番号,廃棄方法,廃棄責任者,廃棄証明書\r\n" +
			"DS-0100,2026-10-01,顧客名簿（紙）,PI-0001,溶解,鈴木,№123\r\n",
	}
	for k, src := range files {
		if cs, err := importKind(s, k, toSJIS(t, src)); err != nil || len(cs) == 0 {
			t.Fatalf("%s: %d changes, %v", k, len(cs), err)
		}
	}
	m, _ := s.Get(ctx, KindMedia, "MD-0100")
	if me := m.(*MediaEntry); me.Product != "ＵＳＢメモリ①" || !me.Encrypted || me.Status != StatusActive {
		t.Fatalf("media %+v", me)
	}
	if m, _ := s.Get(ctx, KindMedia, "MD-0101"); m.meta().Status != StatusDisposed {
		t.Fatalf("media 廃棄済: %s", m.meta().Status)
	}
	a, _ := s.Get(ctx, KindApprovals, "AP-0100")
	ap := a.(*Approval)
	wantFrom := time.Date(2026, 10, 1, 9, 0, 0, 0, DefaultLocation) // the office's time, not the server's
	if ap.Status != StatusReturned || ap.Approver != "部長 佐藤" || !ap.From.Equal(wantFrom) || ap.Decided.IsZero() {
		t.Fatalf("approval %+v", ap)
	}
	d, _ := s.Get(ctx, KindDisposals, "DS-0100")
	if ds := d.(*Disposal); ds.Item != "顧客名簿（紙）" || ds.Certificate != "№123" || ds.RegisterID != "PI-0001" {
		t.Fatalf("disposal %+v", ds)
	}
}

// One bad row: nothing of the file is stored, and the error names the
// row (spreadsheet numbering) and field.
func TestCSVBadRowImportsNothingOtherRegisters(t *testing.T) {
	clk := newClock(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC))
	s, _ := newService(t, clk)
	for _, tc := range []struct {
		k     Kind
		csv   string
		row   int
		field string
	}{
		{KindMedia, "id,registered,product,serial,vendor_id,owner,encrypted\r\n" +
			"MD-1,2026-01-10,USB,AA00123456,0411,山田,yes\r\n" +
			"MD-2,2026-01-10,USB,AA00123457,04x1,山田,yes\r\n", 3, "vendor_id"},
		{KindMedia, "id,registered,product,serial,owner,encrypted\r\n" +
			"MD-1,2026-01-10,USB,AA00123456,山田,maybe\r\n", 2, "encrypted"},
		{KindApprovals, "id,status,requester,serial,host,purpose,from,to,approver\r\n" +
			"AP-1,returned,山田,AA00123456,PC-01,訪問,2026-10-01T09:00:00+09:00,2026-10-01T18:00:00+09:00,佐藤\r\n" +
			"AP-2,returned,山田,AA00123456,PC-01,訪問,2026-10-02T18:00:00+09:00,2026-10-02T09:00:00+09:00,佐藤\r\n", 3, "to"},
		{KindApprovals, "id,requester,serial,host,purpose,from,to\r\n" +
			"AP-1,山田,AA00123456,PC-01,訪問,明日,2026-10-01T18:00:00+09:00\r\n", 2, "from"},
		{KindDisposals, "id,date,item,register_id,method,responsible\r\n" +
			"DS-1,2026-10-01,名簿,,溶解,鈴木\r\n" +
			"DS-2,2026-10-01,名簿,PI-404,溶解,鈴木\r\n", 3, "register_id"},
	} {
		if tc.k == KindApprovals {
			// Requests name a registered medium; media cases before store none.
			if _, err := s.Get(context.Background(), KindMedia, "MD-AA"); errors.Is(err, ErrNotFound) {
				if _, err := s.Create(context.Background(), "admin", medium("MD-AA", "AA00123456")); err != nil {
					t.Fatal(err)
				}
			}
		}
		_, err := importKind(s, tc.k, []byte(tc.csv))
		var ve ValidationError
		if !errors.As(err, &ve) || len(ve) != 1 || ve[0].Row != tc.row || ve[0].Field != tc.field {
			t.Errorf("%s: want one error at row %d %s, got %v", tc.k, tc.row, tc.field, err)
		}
		if l, _ := s.List(context.Background(), tc.k, Filter{}); len(l) != 0 {
			t.Errorf("%s: bad import stored %d entries", tc.k, len(l))
		}
	}
	if _, err := importKind(s, KindMedia, []byte("id,registered,product,serial,owner\r\nexport,2026-01-10,USB,AA00123456,山田\r\n")); fieldsOf(err)["id"] != 2 {
		t.Errorf("reserved id export: %v", err)
	}
	// A PI file offered as media says so first, then names the columns
	// media does not have.
	_, ce, err := ParseCSV(KindMedia, []byte("管理番号,個人情報の名称\r\nPI-1,名簿\r\n"))
	if err != nil || len(ce) < 2 || ce[0].Row != 1 || !strings.Contains(ce[0].Msg, "--kind pi") || !strings.Contains(ce[1].Msg, "個人情報の名称") {
		t.Fatalf("PI file as media: %v %v", ce, err)
	}
}

// Imported approvals: an approved window still open would let a file open
// a device on a PC without an approver's act in Mamori, so it is refused;
// as requested it imports and waits for approval. A stored decision cannot
// be changed by import; an ordinary update (returned, result) can.
func TestCSVImportedApprovalsCannotOpenWindows(t *testing.T) {
	ctx := context.Background()
	clk := newClock(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC))
	s, st := newService(t, clk)
	if err := st.PutAgent(ctx, agentOn("PC-01")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, "admin", medium("MD-1", "AA00123456")); err != nil {
		t.Fatal(err)
	}
	head := "id,status,requester,serial,host,purpose,from,to,approver,decided,result\r\n"
	row := func(id, status, to, approver, decided, result string) string {
		return id + "," + status + ",山田,AA00123456,PC-01,訪問,2026-11-01T09:00:00Z," + to + "," + approver + "," + decided + "," + result + "\r\n"
	}
	open := "2026-11-03T18:00:00Z" // ahead of the clock
	ended := "2026-11-01T18:00:00Z"
	_, err := importKind(s, KindApprovals, []byte(head+row("AP-1", "approved", ended, "佐藤", "2026-10-31T10:00:00Z", "")+
		row("AP-2", "approved", open, "佐藤", "2026-10-31T10:00:00Z", "")))
	if f := fieldsOf(err); len(f) != 1 || f["status"] != 3 || !strings.Contains(err.Error(), "has not ended") {
		t.Fatalf("open approved window imported: %v", err)
	}
	if l, _ := s.List(ctx, KindApprovals, Filter{}); len(l) != 0 {
		t.Fatalf("refused import stored %d", len(l))
	}
	if _, err := importKind(s, KindApprovals, []byte(head+row("AP-2", "requested", open, "佐藤", "", ""))); fieldsOf(err)["approver"] != 2 {
		t.Fatalf("requested row with an approver: %v", err)
	}
	if cs, err := importKind(s, KindApprovals, []byte(head+row("AP-1", "approved", ended, "佐藤", "2026-10-31T10:00:00Z", "")+
		row("AP-2", "requested", open, "", "", ""))); err != nil || len(cs) != 2 {
		t.Fatalf("closed approval + open request: %d %v", len(cs), err)
	}
	c, err := s.Effective(ctx, "ag-1")
	if err != nil || len(c.Policy.Controls.Media.Approvals) != 0 {
		t.Fatalf("imported rows opened a window: %+v %v", c.Policy.Controls.Media.Approvals, err)
	}
	// The request is approved in Mamori by a manager: only then it opens.
	if _, err := s.Decide(ctx, "部長", "AP-2", true, 0); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.Effective(ctx, "ag-1"); len(c.Policy.Controls.Media.Approvals) != 1 {
		t.Fatal("approved request not in the policy")
	}
	// Stored decisions stay the approver's.
	if _, err := importKind(s, KindApprovals, []byte(head+row("AP-2", "approved", open, "山田", "", ""))); fieldsOf(err)["approver"] != 2 {
		t.Fatalf("approver rewritten by import: %v", err)
	}
	if _, err := importKind(s, KindApprovals, []byte(head+row("AP-2", "denied", open, "部長", "", ""))); fieldsOf(err)["status"] != 2 {
		t.Fatalf("decision changed by import: %v", err)
	}
	a, _ := s.Get(ctx, KindApprovals, "AP-2")
	dec := a.(*Approval).Decided.Format(time.RFC3339)
	if cs, err := importKind(s, KindApprovals, []byte(head+row("AP-2", "returned", open, "部長", dec, "返却済"))); err != nil || len(cs) != 1 {
		t.Fatalf("approved -> returned by import: %d %v", len(cs), err)
	}
	if c, _ := s.Effective(ctx, "ag-1"); len(c.Policy.Controls.Media.Approvals) != 0 {
		t.Fatal("returned window still in the policy")
	}
}

// A register as a Japanese office's Excel writes it: dates re-saved as
// 2026/4/1 (what Excel does to an exported 2026-04-01 cell) or typed as
// 2026年4月1日, periods in Japanese, full-width digits, counts with 件.
// Each is stored in the form the export writes, and a second import of the
// same file changes nothing.
func TestCSVImportReadsExcelJapanese(t *testing.T) {
	ctx := context.Background()
	clk := newClock(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC))
	s, _ := newService(t, clk)
	pi := "管理番号,個人情報の名称,利用目的,件数,媒体,保管場所,管理責任者,部署,保管期間,廃棄方法,最終見直し日\r\n" +
		`PI-001,顧客名簿,発送,"1,200件",電子,PC-01:D:\顧客,山田,営業部,5年,シュレッダー,2026/4/1` + "\r\n" +
		`PI-002,従業員名簿,給与,５０,電子,PC-01:D:\人事,佐藤,総務部,１８ヶ月,溶解,２０２６年４月１日` + "\r\n" +
		`PI-003,株主名簿,株主総会,10,電子,PC-01:D:\株主,佐藤,総務部,無期限,,2026-04-01` + "\r\n" +
		`PI-004,応募者,採用,3,電子,PC-01:D:\採用,佐藤,総務部,6カ月,削除,2026/04/01` + "\r\n"
	media := "管理番号,登録日,製品名,シリアル番号,管理責任者\r\nMD-001,2026/1/10,USB,AA00123456,高橋\r\n"
	disposals := "管理番号,廃棄日,廃棄対象,廃棄方法,廃棄責任者\r\nDS-001,2026年10月1日,旧名簿,溶解,鈴木\r\n"
	for k, src := range map[Kind]string{KindPI: pi, KindMedia: media, KindDisposals: disposals} {
		if cs, err := importKind(s, k, toSJIS(t, src)); err != nil || len(cs) == 0 {
			t.Fatalf("%s: %d changes, %v", k, len(cs), err)
		}
		if cs, err := importKind(s, k, toSJIS(t, src)); err != nil || len(cs) != 0 {
			t.Fatalf("%s again: %d changes, %v", k, len(cs), err)
		}
	}
	want := map[string][3]string{ // record count, retention, last reviewed
		"PI-001": {"1200", "5y", "2026-04-01"},
		"PI-002": {"50", "18m", "2026-04-01"},
		"PI-003": {"10", "indefinite", "2026-04-01"},
		"PI-004": {"3", "6m", "2026-04-01"},
	}
	for id, w := range want {
		e, err := s.Get(ctx, KindPI, id)
		if err != nil {
			t.Fatal(err)
		}
		p := e.(*PIEntry)
		if got := [3]string{strconv.Itoa(p.RecordCount), p.Retention, p.LastReviewed}; got != w {
			t.Errorf("%s: %v, want %v", id, got, w)
		}
	}
	if m, _ := s.Get(ctx, KindMedia, "MD-001"); m.(*MediaEntry).Registered != "2026-01-10" {
		t.Errorf("media registered %q", m.(*MediaEntry).Registered)
	}
	if d, _ := s.Get(ctx, KindDisposals, "DS-001"); d.(*Disposal).Date != "2026-10-01" {
		t.Errorf("disposal date %q", d.(*Disposal).Date)
	}
	// What is still not a date or a period is named, not guessed.
	_, err := importKind(s, KindPI, toSJIS(t, "管理番号,個人情報の名称,利用目的,媒体,保管場所,管理責任者,部署,保管期間,廃棄方法,最終見直し日\r\n"+
		`PI-005,名簿,発送,電子,PC-01:D:\x,山田,営業部,しばらく,溶解,4月1日`+"\r\n"))
	if err == nil || !strings.Contains(err.Error(), `"しばらく" is not a period`) || !strings.Contains(err.Error(), `"4月1日" is not a date`) {
		t.Fatalf("bad cells: %v", err)
	}
}

// A paper record's place (a cabinet, a store room) has its own column; put
// in 保管場所, which agents watch, it is refused with where it goes. A
// network share is refused with what to write instead.
func TestCSVPaperPlacesAndShares(t *testing.T) {
	ctx := context.Background()
	clk := newClock(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC))
	s, _ := newService(t, clk)
	head := "管理番号,個人情報の名称,利用目的,媒体,保管場所,紙の保管場所,管理責任者,部署,保管期間,廃棄方法\r\n"
	good := head + "PI-001,従業員名簿,給与,紙・電子,PC-01:D:\\人事,\"本社2F 書庫\r\nキャビネットA\",佐藤,総務部,7年,溶解\r\n"
	if _, err := importKind(s, KindPI, toSJIS(t, good)); err != nil {
		t.Fatal(err)
	}
	e, _ := s.Get(ctx, KindPI, "PI-001")
	if p := e.(*PIEntry); !slices.Equal(p.PaperLocations, []string{"本社2F 書庫", "キャビネットA"}) || len(p.Locations) != 1 {
		t.Fatalf("stored %+v", p)
	}
	var out bytes.Buffer
	if err := ExportCSV(&out, KindPI, []Entry{e}, LangJA, EncUTF8); err != nil || !strings.Contains(out.String(), "\"本社2F 書庫\r\nキャビネットA\"") {
		t.Fatalf("export: %v\n%s", err, out.String())
	}
	bad := head + "PI-002,顧客名簿,発送,紙,キャビネットB,,山田,営業部,5年,溶解\r\n" +
		"PI-003,顧客名簿,発送,電子,\\\\fs01\\顧客データ,,山田,営業部,5年,溶解\r\n"
	_, err := importKind(s, KindPI, toSJIS(t, bad))
	if err == nil || !strings.Contains(err.Error(), `"キャビネットB" is not HOST:FOLDER (a paper record's place goes in paper_locations)`) ||
		!strings.Contains(err.Error(), `"\\fs01\顧客データ" is a network share: name the server that holds it and its folder there (FS01:D:\共有\顧客データ)`) {
		t.Fatalf("bad places: %v", err)
	}
	if MessageJA(`"キャビネットB" is not HOST:FOLDER (a paper record's place goes in paper_locations)`) == MessageJA(`"x" is not HOST:FOLDER`) {
		t.Error("the Japanese message does not say where a paper place goes")
	}
}

// A Shift_JIS export of a register holding a character CP932 lacks (𠮷, an
// emoji) is refused naming the row, the column and the character, and
// saying to export as UTF-8: not a server error, and nothing dropped.
func TestCSVExportSJISNamesWhatItCannotWrite(t *testing.T) {
	e := samplePI("PI-010", "PC-01", `D:\顧客`)
	e.Name, e.Owner = "𠮷野様 顧客", "髙橋 😀"
	var out bytes.Buffer
	err := ExportCSV(&out, KindPI, []Entry{samplePI("PI-009", "PC-01", `D:\x`), e}, LangJA, EncSJIS)
	var ve ValidationError
	if !errors.As(err, &ve) || !errors.Is(err, ErrInvalid) || out.Len() != 0 {
		t.Fatalf("export: %v, %d bytes written", err, out.Len())
	}
	got := strings.Join(ve.Lines(KindPI, LangJA), "\n")
	for _, want := range []string{`3 行目「個人情報の名称」: Shift_JIS`, `"𠮷" (PI-010)`, `3 行目「管理責任者」`, `"😀" (PI-010)`} {
		if !strings.Contains(got, want) {
			t.Errorf("refusal lacks %q:\n%s", want, got)
		}
	}
	if err := ExportCSV(&out, KindPI, []Entry{e}, LangJA, EncUTF8); err != nil || !strings.Contains(out.String(), "𠮷野様") {
		t.Fatalf("utf8 export: %v", err)
	}
}

// An auditor's export of the 持出し記録 shows when each stick came back
// (返却日時, set by the return action) and what the approver said
// (承認コメント, set by approve/deny); the export re-imports unchanged, here
// and on another server.
func TestApprovalsCSVExportsReturnAndComment(t *testing.T) {
	ctx := context.Background()
	// Nanoseconds on the clock: the actions store times finer than a cell.
	clk := newClock(time.Date(2026, 11, 2, 9, 0, 0, 123456789, time.UTC))
	s, _ := newService(t, clk)
	must := mustDo(t)
	must(s.Create(ctx, "admin", samplePI("PI-0007", "PC-01", `D:\顧客`)))
	must(s.Create(ctx, "admin", medium("MD-1", "ACTIVE0001")))
	mk := func(id string) {
		must(s.Create(ctx, "admin", &Approval{Meta: Meta{ID: id}, Requester: "山田", Serial: "ACTIVE0001", Host: "PC-01",
			Purpose: "展示会", RegisterIDs: []string{"PI-0007"}, From: clk.Now().Add(time.Hour), To: clk.Now().Add(3 * time.Hour)}))
	}
	mk("AP-1")
	must(s.DecideWithComment(ctx, "部長 佐藤", "AP-1", true, 0, "暗号化USBのみ可。\n返却時に消去を確認"))
	mk("AP-2")
	must(s.DecideWithComment(ctx, "部長 佐藤", "AP-2", false, 0, "私用のため却下"))
	clk.Add(90*time.Minute + 17*time.Second)
	must(s.Return(ctx, "admin", "AP-1", 0, "消去確認済"))
	e, _ := s.Get(ctx, KindApprovals, "AP-1")
	ap1 := e.(*Approval)

	ja := string(exportKind(t, s, KindApprovals, LangJA, EncUTF8))
	head, _, _ := strings.Cut(ja, "\r\n")
	for _, want := range []string{`"承認コメント"`, `"返却日時"`} {
		if !strings.Contains(head, want) {
			t.Errorf("ja header lacks %s: %s", want, head)
		}
	}
	for _, want := range []string{`"暗号化USBのみ可。` + "\r\n" + `返却時に消去を確認"`, `"私用のため却下"`,
		`"` + ap1.Returned.In(DefaultLocation).Format(csvTimeLayout) + `"`} {
		if !strings.Contains(ja, want) {
			t.Errorf("ja export lacks %s:\n%s", want, ja)
		}
	}
	if en := string(exportKind(t, s, KindApprovals, LangEN, EncUTF8)); !strings.Contains(en, `"comment"`) || !strings.Contains(en, `"returned"`) {
		t.Errorf("en header lacks comment/returned:\n%s", en)
	}
	// Re-imported as exported: nothing changes, nothing is lost.
	for _, lang := range []string{LangJA, LangEN} {
		if cs, err := importKind(s, KindApprovals, exportKind(t, s, KindApprovals, lang, EncUTF8)); err != nil || len(cs) != 0 {
			t.Fatalf("%s export re-imported: %d changes, %v", lang, len(cs), err)
		}
	}
	e, _ = s.Get(ctx, KindApprovals, "AP-1")
	if a := e.(*Approval); a.Comment != ap1.Comment || !a.Returned.Equal(ap1.Returned) || a.Revision != ap1.Revision {
		t.Fatalf("after re-import: comment %q returned %v rev %d, was %q %v %d", a.Comment, a.Returned, a.Revision, ap1.Comment, ap1.Returned, ap1.Revision)
	}
	// Another server takes the register and exports the same bytes.
	other, _ := newService(t, clk)
	for _, k := range []Kind{KindPI, KindMedia, KindApprovals} {
		if _, err := importKind(other, k, exportKind(t, s, k, LangJA, EncUTF8)); err != nil {
			t.Fatalf("%s to another server: %v", k, err)
		}
	}
	if again := string(exportKind(t, other, KindApprovals, LangJA, EncUTF8)); again != ja {
		t.Fatalf("another server's export differs:\n%s\n%s", ja, again)
	}
	if cs, err := importKind(other, KindApprovals, []byte(ja)); err != nil || len(cs) != 0 {
		t.Fatalf("re-import on another server: %d %v", len(cs), err)
	}

	// The form and the history have each field once, the time as a time.
	n := map[string]int{}
	for _, f := range FormFields(KindApprovals) {
		n[f.Name]++
		if f.Name == "returned" && f.Input != InputDateTime || f.Name == "comment" && f.Input != InputLong {
			t.Errorf("form field %s is %s", f.Name, f.Input)
		}
	}
	if n["returned"] != 1 || n["comment"] != 1 {
		t.Errorf("form fields %v", n)
	}
	h, _ := s.History(ctx, KindApprovals, "AP-1")
	n = map[string]int{}
	for _, fc := range Diff(KindApprovals, h[len(h)-1].Before, h[len(h)-1].After) {
		n[fc.Field]++
	}
	if n["returned"] != 1 || n["status"] != 1 {
		t.Errorf("return's history fields %v", n)
	}
}

// What only the approve/deny/return actions set cannot come from a file:
// a stored approval's comment and return time stay as recorded (an empty
// cell keeps them, another value is refused); a migrated paper record may
// carry them where its status says they happened.
func TestApprovalsCSVImportReturnAndCommentRules(t *testing.T) {
	ctx := context.Background()
	clk := newClock(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC))
	s, _ := newService(t, clk)
	must := mustDo(t)
	must(s.Create(ctx, "admin", medium("MD-1", "ACTIVE0001")))
	for _, id := range []string{"AP-1", "AP-2"} {
		must(s.Create(ctx, "admin", &Approval{Meta: Meta{ID: id}, Requester: "山田", Serial: "ACTIVE0001", Host: "PC-01",
			Purpose: "訪問", From: clk.Now().Add(time.Hour), To: clk.Now().Add(3 * time.Hour)}))
		must(s.DecideWithComment(ctx, "部長", id, true, 0, "可"))
	}
	clk.Add(time.Hour)
	must(s.Return(ctx, "admin", "AP-1", 0, "返却"))
	clk.Add(time.Hour)
	get := func(id string) *Approval {
		e, err := s.Get(ctx, KindApprovals, id)
		if err != nil {
			t.Fatal(err)
		}
		return e.(*Approval)
	}
	head := "id,status,requester,serial,host,purpose,from,to,approver,decided,result,comment,returned\r\n"
	rfc := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.Format(time.RFC3339)
	}
	stored := func(a *Approval, status, comment, returned string) string {
		return strings.Join([]string{a.ID, status, a.Requester, a.Serial, a.Host, a.Purpose, rfc(a.From), rfc(a.To),
			a.Approver, rfc(a.Decided), a.Result, comment, returned}, ",") + "\r\n"
	}
	ja := func(err error) string {
		ve, _ := errors.AsType[ValidationError](err)
		return strings.Join(ve.Lines(KindApprovals, LangJA), "\n")
	}
	ap1, ap2 := get("AP-1"), get("AP-2")
	retCell := ap1.Returned.In(DefaultLocation).Format(csvTimeLayout)

	// Stored approvals: as recorded (to the minute) or empty is unchanged.
	for name, row := range map[string]string{
		"as recorded": stored(ap1, "returned", "可", retCell) + stored(ap2, "approved", "可", ""),
		"emptied":     stored(ap1, "returned", "", "") + stored(ap2, "approved", "", ""),
	} {
		if cs, err := importKind(s, KindApprovals, []byte(head+row)); err != nil || len(cs) != 0 {
			t.Errorf("%s: %d changes, %v", name, len(cs), err)
		}
	}
	if a := get("AP-1"); a.Comment != "可" || !a.Returned.Equal(ap1.Returned) || a.Revision != ap1.Revision {
		t.Fatalf("stored AP-1 after unchanged imports: %+v", a)
	}
	for _, tc := range []struct{ name, row, field, ja string }{
		{"comment changed", stored(ap1, "returned", "不可", retCell), "comment", "承認コメントは承認・却下の操作で記録されます"},
		{"comment added", stored(ap2, "approved", "可。追記", ""), "comment", "承認コメントは承認・却下の操作で記録されます"},
		{"return time moved", stored(ap1, "returned", "可", ap1.Returned.Add(-time.Hour).Format(time.RFC3339)), "returned", "返却日時は返却の操作で記録されます"},
		{"return time of an approved one", stored(ap2, "approved", "", rfc(clk.Now().Add(-time.Minute))), "returned", "返却日時は返却の操作で記録されます"},
	} {
		_, err := importKind(s, KindApprovals, []byte(head+tc.row))
		if f := fieldsOf(err); len(f) != 1 || f[tc.field] != 2 {
			t.Errorf("%s: want one error on row 2 %s, got %v", tc.name, tc.field, err)
		} else if msg := ja(err); !strings.Contains(msg, "2 行目") || !strings.Contains(msg, tc.ja) {
			t.Errorf("%s: Japanese message %q", tc.name, msg)
		}
	}
	if a := get("AP-1"); a.Comment != "可" || !a.Returned.Equal(ap1.Returned) || a.Revision != ap1.Revision {
		t.Fatalf("refused imports changed AP-1: %+v", a)
	}
	// Returning by import, as an update does, records the time of it.
	if cs, err := importKind(s, KindApprovals, []byte(head+stored(ap2, "returned", "", ""))); err != nil || len(cs) != 1 {
		t.Fatalf("approved -> returned by import: %d %v", len(cs), err)
	}
	if a := get("AP-2"); !a.Returned.Equal(clk.Now()) || a.Comment != "可" {
		t.Fatalf("returned by import: returned %v comment %q", a.Returned, a.Comment)
	}

	// New rows, a paper record migrated: times in Japan, the window ended.
	row := func(id, status, approver, comment, returned string) string {
		decided := ""
		if approver != "" {
			decided = "2026/9/30 17:00"
		}
		return id + "," + status + ",山田,ACTIVE0001,PC-01,訪問,2026/10/1 9:00,2026/10/1 18:00," + approver + "," + decided + ",," + comment + "," + returned + "\r\n"
	}
	for _, tc := range []struct{ name, row, field string }{
		{"return time of a denied one", row("AP-10", "denied", "佐藤", "", "2026/10/1 17:30"), "returned"},
		{"return time of an approved one", row("AP-10", "approved", "佐藤", "", "2026/10/1 17:30"), "returned"},
		{"return time of a request", row("AP-10", "requested", "", "", "2026/10/1 17:30"), "returned"},
		{"return time ahead", row("AP-10", "returned", "佐藤", "", "2026/11/3 9:00"), "returned"},
		{"returned before the decision", row("AP-10", "returned", "佐藤", "", "2026/9/30 16:59"), "returned"},
		{"comment on a request", row("AP-10", "requested", "", "よろしく", ""), "comment"},
		{"comment too long", row("AP-10", "denied", "佐藤", strings.Repeat("却", 700), ""), "comment"},
	} {
		_, err := importKind(s, KindApprovals, []byte(head+tc.row))
		if f := fieldsOf(err); len(f) != 1 || f[tc.field] != 2 {
			t.Errorf("%s: want one error on row 2 %s, got %v", tc.name, tc.field, err)
		} else if msg := err.(ValidationError)[0].Msg; MessageJA(msg) == msg || !strings.Contains(ja(err), "2 行目「") {
			t.Errorf("%s: Japanese message %q", tc.name, msg)
		}
	}
	if _, err := s.Get(ctx, KindApprovals, "AP-10"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused row was stored: %v", err)
	}
	// Returned before the window began is a trip called off: the return
	// action records it so, and another server must take it.
	if cs, err := importKind(s, KindApprovals, []byte(head+row("AP-11", "returned", "佐藤", "消去確認", "2026/10/1 17:30")+
		row("AP-12", "denied", "佐藤", "私用のため", "")+row("AP-13", "returned", "佐藤", "", "2026/9/30 18:00"))); err != nil || len(cs) != 3 {
		t.Fatalf("paper records: %d %v", len(cs), err)
	}
	if a := get("AP-11"); a.Comment != "消去確認" || !a.Returned.Equal(time.Date(2026, 10, 1, 17, 30, 0, 0, DefaultLocation)) {
		t.Fatalf("migrated AP-11: %q %v", a.Comment, a.Returned)
	}
	if a := get("AP-12"); a.Comment != "私用のため" || !a.Returned.IsZero() {
		t.Fatalf("migrated AP-12: %q %v", a.Comment, a.Returned)
	}
	// A paper record returned at a time nobody wrote down stays so: the
	// register re-imports, and its form saves, unchanged.
	if cs, err := importKind(s, KindApprovals, []byte(head+row("AP-14", "returned", "佐藤", "", ""))); err != nil || len(cs) != 1 {
		t.Fatalf("returned record without a return time: %d %v", len(cs), err)
	}
	if cs, err := importKind(s, KindApprovals, exportKind(t, s, KindApprovals, LangJA, EncUTF8)); err != nil || len(cs) != 0 {
		t.Fatalf("register re-imported: %d changes, %v", len(cs), err)
	}
	if a := get("AP-14"); !a.Returned.IsZero() {
		t.Fatalf("AP-14 got a return time %v", a.Returned)
	} else if c, err := s.Update(ctx, "admin", a, a.Revision); err != nil || c.Action != ActionUnchanged {
		t.Fatalf("AP-14 saved as read: %s %v", c.Action, err)
	}

	// A new request, by form or API, has no decision yet.
	req := &Approval{Requester: "山田", Serial: "ACTIVE0001", Host: "PC-01", Purpose: "訪問", From: clk.Now().Add(time.Hour),
		To: clk.Now().Add(2 * time.Hour), Comment: "承認済みのはず", Returned: clk.Now()}
	must(s.Create(ctx, "admin", req))
	if a := get(req.ID); a.Comment != "" || !a.Returned.IsZero() {
		t.Fatalf("a new request carries %q %v", a.Comment, a.Returned)
	}
}

// Every message about the file as a whole (empty, too large, not text,
// broken quoting) is Japanese, as the header messages of a Japanese file
// are; nothing in English is left for a Japanese office to read.
func TestParseCSVFileMessagesJapanese(t *testing.T) {
	japanese := func(s string) bool { return strings.ContainsFunc(s, func(r rune) bool { return r >= 0x3000 }) }
	for name, b := range map[string][]byte{
		"empty":                 nil,
		"blank":                 []byte("\ufeff"),
		"too large":             bytes.Repeat([]byte("a"), MaxCSVBytes+1),
		"BOM but not UTF-8":     []byte("\ufeff\xff\xfe管理番号"),
		"quote in the header":   []byte("管理番号,製\"品名\r\n"),
		"unclosed quote":        []byte("管理番号,製品名,シリアル番号\r\nMD-1,\"USB,SERIAL0001\r\n"),
		"quote inside a cell":   []byte("管理番号,製品名,シリアル番号\r\nMD-1,US\"B,SERIAL0001\r\n"),
		"quote, English header": []byte("id,product,serial\r\nMD-1,US\"B,SERIAL0001\r\n"),
	} {
		_, _, err := ParseCSV(KindMedia, b)
		ve, ok := errors.AsType[ValidationError](err)
		if !ok || len(ve) != 1 || ve[0].Field != "file" {
			t.Errorf("%s: %v", name, err)
			continue
		}
		msg := ve[0].Msg
		if name == "quote, English header" { // an English file is answered in English
			if japanese(msg) || MessageJA(msg) == msg {
				t.Errorf("%s: %q", name, msg)
			}
			continue
		}
		if !japanese(msg) || strings.Contains(msg, "empty file") || strings.Contains(msg, "larger than") || strings.Contains(msg, "quote") {
			t.Errorf("%s: message %q is not Japanese", name, msg)
		}
		// Said once: Lines does not add an English detail to it.
		if l := ve.Lines(KindMedia, LangJA)[0]; !strings.HasSuffix(l, msg) || strings.Count(l, "。") != strings.Count(msg, "。") {
			t.Errorf("%s: Lines %q", name, l)
		}
	}
	_, _, err := ParseCSV(KindPI, nil)
	if ve, _ := errors.AsType[ValidationError](err); len(ve) != 1 || ve[0].Msg != "ファイルが空です（1行目に見出しの行が必要です）。" {
		t.Errorf("empty file: %v", err)
	}
}

// A row an Excel user added without its 管理番号 is refused with what to do,
// not as a malformed number.
func TestImportRowWithoutID(t *testing.T) {
	s, _ := newService(t, nil)
	_, err := importKind(s, KindMedia, []byte("管理番号,登録日,製品名,シリアル番号,管理責任者\r\n,2026-01-10,USB,BB00123456,高橋\r\n"))
	ve, _ := errors.AsType[ValidationError](err)
	msg := strings.Join(ve.Lines(KindMedia, LangJA), "\n")
	if len(ve) != 1 || ve[0].Row != 2 || !strings.Contains(msg, "管理番号を入力してください") || strings.Contains(msg, "英数字と") {
		t.Errorf("row without an id: %v\n%s", err, msg)
	}
}

// A media register file imported as the PI register (the CLI's --kind left
// at its default) says which register the file is, first.
func TestImportOfAnotherRegistersFile(t *testing.T) {
	s, _ := newService(t, nil)
	_, err := importKind(s, KindPI, []byte("管理番号,登録日,製品名,シリアル番号,管理責任者\r\nMD-1,2026-01-10,USB,BB00123456,高橋\r\n"))
	ve, _ := errors.AsType[ValidationError](err)
	msg := strings.Join(ve.Lines(KindPI, LangJA), "\n")
	if len(ve) == 0 || !strings.Contains(strings.SplitN(msg, "\n", 2)[0], "媒体管理台帳のものです") || !strings.Contains(msg, "--kind media") {
		t.Errorf("media file as pi:\n%s", msg)
	}
	// A PI file with one typo is not called another register's.
	_, err = importKind(s, KindPI, []byte("管理番号,個人情報の名称,利用目的X\r\nPI-1,名簿,発送\r\n"))
	ve, _ = errors.AsType[ValidationError](err)
	if msg := strings.Join(ve.Lines(KindPI, LangJA), "\n"); strings.Contains(msg, "のものです") {
		t.Errorf("a typo called another register:\n%s", msg)
	}
}
