package web_test

import (
	"bytes"
	"html"
	"io"
	"mime/multipart"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// upload posts file as the register page's import form does (multipart,
// with the page's CSRF token).
func (b *browser) upload(path, csrf string, file []byte) answer {
	b.tb.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("csrf", csrf)
	fw, _ := mw.CreateFormFile("file", "register.csv")
	_, _ = fw.Write(file)
	_ = mw.Close()
	req, err := http.NewRequest("POST", b.base+path, &body)
	if err != nil {
		b.tb.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := b.c.Do(req)
	if err != nil {
		b.tb.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: string(raw), header: resp.Header}
}

// TestRegisterPagesImportExportCSV: every register's page has export and
// (for admins) import; the button's export re-imports on a fresh server
// unchanged; a bad file changes nothing and names the row and field.
func TestRegisterPagesImportExportCSV(t *testing.T) {
	a := startServer(t, t.TempDir())
	addUser(t, a, "kanri", "admin")
	addUser(t, a, "kansa", "auditor")
	adm := newBrowser(t, a)
	adm.login("kanri", testPassword)
	files := map[string]string{
		"pi": "\ufeff管理番号,個人情報の名称,利用目的,媒体,管理責任者,部署,保管期間,廃棄方法\r\n" +
			"PI-0001,顧客名簿,商品発送,紙,山田,営業部,5y,シュレッダー\r\n",
		"media": "\ufeff管理番号,登録日,製品名,シリアル番号,管理責任者,暗号化\r\nMD-0001,2026-01-10,USBメモリ,AA00123456,山田,有\r\n",
		"approvals": "\ufeff管理番号,状態,申請者,媒体シリアル番号,端末,持出し目的,持出し開始,持出し終了,承認者,承認日時\r\n" +
			"AP-0001,返却済,山田,AA00123456,PC-01,展示会,2026-10-01T09:00:00+09:00,2026-10-01T18:00:00+09:00,部長,2026-09-30T17:00:00+09:00\r\n",
		"disposals": "\ufeff管理番号,廃棄日,廃棄対象,台帳番号,廃棄方法,廃棄責任者\r\nDS-0001,2026-10-01,顧客名簿(紙),PI-0001,溶解,鈴木\r\n",
	}
	exports := map[string][]byte{}
	for _, k := range []string{"pi", "media", "approvals", "disposals"} {
		pg := adm.get("/registers/" + k)
		if pg.status != 200 || !strings.Contains(pg.body, `href="/registers/`+k+`/export?lang=`) ||
			!strings.Contains(pg.body, `action="/registers/`+k+`/import"`) {
			t.Fatalf("%s page lacks export/import: %d\n%.3000s", k, pg.status, pg.body)
		}
		ans := adm.upload("/registers/"+k+"/import", csrfOf(t, pg.body), []byte(files[k]))
		if ans.status != http.StatusSeeOther || ans.header.Get("Location") != "/registers/"+k+"?ok=saved" {
			t.Fatalf("%s import: %d %s\n%.2000s", k, ans.status, ans.header.Get("Location"), ans.body)
		}
		if pg = adm.get("/registers/" + k); !strings.Contains(pg.body, "-0001") {
			t.Fatalf("%s import not listed:\n%.3000s", k, pg.body)
		}
		exp := adm.get("/registers/" + k + "/export?lang=ja")
		if exp.status != 200 || !strings.HasPrefix(exp.body, "\ufeff\"管理番号\",\"状態\"") ||
			!strings.Contains(exp.header.Get("Content-Disposition"), ".csv") {
			t.Fatalf("%s export: %d %v %q", k, exp.status, exp.header, exp.body)
		}
		exports[k] = []byte(exp.body)
	}
	if n := len(serverEvents(t, a, "export.made")); n != 4 {
		t.Errorf("export.made events: %d, want 4", n)
	}

	// The exports into a fresh server through its page: identical again.
	b := startServer(t, t.TempDir())
	addUser(t, b, "kanri", "admin")
	bdm := newBrowser(t, b)
	bdm.login("kanri", testPassword)
	for _, k := range []string{"pi", "media", "approvals", "disposals"} {
		pg := bdm.get("/registers/" + k)
		if ans := bdm.upload("/registers/"+k+"/import", csrfOf(t, pg.body), exports[k]); ans.status != http.StatusSeeOther {
			t.Fatalf("%s import on b: %d\n%.2000s", k, ans.status, ans.body)
		}
		if again := bdm.get("/registers/" + k + "/export?lang=ja").body; again != string(exports[k]) {
			t.Fatalf("%s round trip differs:\n%q\n%q", k, exports[k], again)
		}
	}

	// One bad row: 400 naming row and field; the register is unchanged.
	pg := adm.get("/registers/media")
	bad := "\ufeffid,registered,product,serial,owner\r\nMD-0002,2026-01-10,USB,BB00123456,高橋\r\nMD-0003,2026-01-10,USB,BB00123457,\r\n"
	ans := adm.upload("/registers/media/import", csrfOf(t, pg.body), []byte(bad))
	if ans.status != http.StatusBadRequest || !strings.Contains(html.UnescapeString(ans.body), "3 行目「管理責任者」: 入力してください。") {
		t.Fatalf("bad import: %d\n%.2000s", ans.status, ans.body)
	}
	if pg := adm.get("/registers/media"); strings.Contains(pg.body, "MD-0002") {
		t.Fatal("bad import stored its good row")
	}
	// On the Japanese page each problem is a line of its own, in Japanese,
	// the column named by its header.
	bad = "\ufeff管理番号,登録日,製品名,シリアル番号,管理責任者\r\nMD-0002,2026/1/10,USB,BB00123456,\r\nMD-0003,いつか,USB,x,高橋\r\n"
	ans = adm.upload("/registers/media/import", csrfOf(t, pg.body), []byte(bad))
	if body := html.UnescapeString(ans.body); ans.status != http.StatusBadRequest ||
		!strings.Contains(body, "\n2 行目「管理責任者」: 入力してください。（required）\n") ||
		!strings.Contains(body, "3 行目「登録日」: 日付（") || !strings.Contains(body, "3 行目「シリアル番号」: ") {
		t.Fatalf("bad import in Japanese: %d\n%.2000s", ans.status, ans.body)
	}

	// An auditor exports but has no import form, and a forged import fails.
	aud := newBrowser(t, a)
	csrf := aud.login("kansa", testPassword)
	pg = aud.get("/registers/disposals")
	if !strings.Contains(pg.body, `href="/registers/disposals/export`) || strings.Contains(pg.body, `/registers/disposals/import`) {
		t.Fatalf("auditor's page:\n%.3000s", pg.body)
	}
	if exp := aud.get("/registers/disposals/export?lang=en"); exp.status != 200 || !strings.HasPrefix(exp.body, "\ufeff\"id\",\"status\",\"date\",\"item\"") {
		t.Fatalf("auditor export: %d %q", exp.status, exp.body)
	}
	if ans := aud.upload("/registers/disposals/import", csrf, []byte(files["disposals"])); ans.status != http.StatusForbidden {
		t.Fatalf("auditor import: %d", ans.status)
	}
}

// An entry's change history reads as the form does: statuses, media and
// yes/no fields by their labels, times in Japan time, not the stored codes
// (active, electronic, false, RFC 3339).
func TestRegisterHistoryReadsAsLabels(t *testing.T) {
	a := startServer(t, t.TempDir())
	addUser(t, a, "kanri", "admin")
	adm := newBrowser(t, a)
	adm.login("kanri", testPassword)
	for _, c := range []struct{ kind, csv, id string }{
		{"pi", "\ufeff管理番号,個人情報の名称,利用目的,媒体,管理責任者,部署,保管期間,廃棄方法,要配慮個人情報,保管場所\r\n" +
			"PI-0001,顧客名簿,商品発送,電子,山田,営業部,5y,データ消去,無,PC-01:D:\\顧客\r\n", "PI-0001"},
		{"media", "\ufeff管理番号,登録日,製品名,シリアル番号,管理責任者,暗号化\r\nMD-0001,2026-01-10,USBメモリ,AA00123456,山田,有\r\n", "MD-0001"},
		{"approvals", "\ufeff管理番号,状態,申請者,媒体シリアル番号,端末,持出し目的,持出し開始,持出し終了,承認者,承認日時\r\n" +
			"AP-0001,返却済,山田,AA00123456,PC-01,展示会,2026-10-01T09:00:00+09:00,2026-10-01T18:00:00+09:00,部長,2026-09-30T17:00:00+09:00\r\n", "AP-0001"},
	} {
		pg := adm.get("/registers/" + c.kind)
		if ans := adm.upload("/registers/"+c.kind+"/import", csrfOf(t, pg.body), []byte(c.csv)); ans.status != http.StatusSeeOther {
			t.Fatalf("%s import: %d\n%.2000s", c.kind, ans.status, ans.body)
		}
		hist := regexp.MustCompile(`(?s)<table id="history">.*</table>`).FindString(adm.get("/registers/" + c.kind + "/" + c.id).body)
		want := map[string][]string{
			"pi":        {">有効<", ">電子<", ">無<"},
			"media":     {">有効<", ">有<"},
			"approvals": {">返却済み<", ">2026-10-01 09:00<", ">2026-09-30 17:00<"},
		}[c.kind]
		for _, w := range want {
			if !strings.Contains(hist, w) {
				t.Errorf("%s history lacks %s:\n%s", c.kind, w, hist)
			}
		}
		for _, code := range []string{">active<", ">returned<", ">electronic<", ">true<", ">false<", "T09:00:00"} {
			if strings.Contains(hist, code) {
				t.Errorf("%s history shows the code %s:\n%s", c.kind, code, hist)
			}
		}
	}
}
