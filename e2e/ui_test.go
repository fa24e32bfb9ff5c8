package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	_ "modernc.org/sqlite" // to tamper with the server's store like an intruder would
)

// The web UI end to end, in headless Chromium with Japanese fonts, against
// the real programs: a server process and an enrolled agent watching a real
// folder. It writes a full-page screenshot of every page (1366x900,
// Japanese) to $MAMORI_ARTIFACTS (default artifacts/ui at the repository
// root); with MAMORI_DOCS_SCREENSHOTS=1 also to docs/screenshots.

type ui struct {
	t     *testing.T
	ctx   context.Context
	base  string
	shots []string
	dirs  []string
}

func newUI(t *testing.T, base string) *ui {
	t.Helper()
	var exe string
	for _, n := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(n); err == nil {
			exe = p
			break
		}
	}
	if exe == "" {
		t.Skip("chromium not installed (Debian: apt-get install chromium chromium-l10n fonts-noto-cjk; .ci/run installs them)")
	}
	opts := []chromedp.ExecAllocatorOption{chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("lang", "ja"), chromedp.Flag("accept-lang", "ja-JP"),
		chromedp.Flag("ignore-certificate-errors", true), chromedp.WindowSize(1366, 900),
		// Date inputs follow the browser's locale, which Chromium takes only
		// from a locale pack it has (Debian: chromium-l10n), else en-US.
		chromedp.Env("LANG=ja_JP.UTF-8", "LANGUAGE=ja", "LC_ALL=ja_JP.UTF-8")}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelB(); cancelA() })
	if _, err := chromedp.Run(ctx, chromedp.EmulateViewport(1366, 900)); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	art := os.Getenv("MAMORI_ARTIFACTS")
	if art == "" {
		art = filepath.Join("..", "artifacts", "ui")
	}
	u := &ui{t: t, ctx: ctx, base: base, dirs: []string{art}}
	if os.Getenv("MAMORI_DOCS_SCREENSHOTS") == "1" {
		u.dirs = append(u.dirs, filepath.Join("..", "docs", "screenshots"))
	}
	for _, d := range u.dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return u
}

// do runs browser steps with a time limit; on failure it shows the page.
func (u *ui) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, 30*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Steps(steps...)); err != nil {
		loc, _ := chromedp.Run(u.ctx, chromedp.Location())
		html, _ := chromedp.Run(u.ctx, chromedp.OuterHTML(chromedp.CSS("body")))
		u.t.Fatalf("%s: %v\nat %s:\n%.3000s", what, err, loc, html)
	}
}

// waitJS waits until the page's js is true (what names it for failures),
// asking again across a navigation, which ends an evaluation under way.
func (u *ui) waitJS(what, js string) {
	u.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(u.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			loc, _ := chromedp.Run(u.ctx, chromedp.Location())
			u.t.Fatalf("waiting for %s: %v at %s", what, err, loc)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (u *ui) text(css string) string {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, 20*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(css)))
	if err != nil {
		u.t.Fatalf("text of %s: %v", css, err)
	}
	return s
}

func (u *ui) eval(js string) string {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, 60*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise))
	if err != nil {
		u.t.Fatalf("eval: %v", err)
	}
	return s
}

// clippedJS lists what the page hides sideways: a box whose content is
// wider than it and scrolls or is cut (a printed page loses it, and a
// button there is found only by scrolling), and the page itself wider than
// the window. Form fields scroll their text by nature.
const clippedJS = `(() => {
	const out = [];
	for (const e of document.querySelectorAll('body *:not(input):not(textarea):not(select)')) {
		const x = getComputedStyle(e).overflowX;
		if (x !== 'visible' && e.scrollWidth > e.clientWidth + 1) {
			out.push(e.tagName.toLowerCase() + ': ' + e.textContent.trim().slice(0, 60));
		}
	}
	if (document.documentElement.scrollWidth > window.innerWidth + 1) {
		out.push('page: ' + document.documentElement.scrollWidth + 'px wide in a ' + window.innerWidth + 'px window');
	}
	return out.join('\n');
})()`

// shot writes a full-page screenshot of the current page, after checking
// that the page shows all it holds at this width.
func (u *ui) shot(name string) {
	u.t.Helper()
	if c := u.eval(clippedJS); c != "" {
		u.t.Errorf("%s: content hidden sideways:\n%s", name, c)
	}
	// Headless Chromium now and then never answers a capture (CI: once,
	// after the page had rendered and its assertions passed); one more try
	// gets it.
	var png []byte
	var err error
	for try := 0; try < 2; try++ {
		ctx, cancel := context.WithTimeout(u.ctx, 30*time.Second)
		png, err = chromedp.Run(ctx, chromedp.FullScreenshot(100))
		cancel()
		if err == nil {
			break
		}
	}
	if err != nil {
		u.t.Fatalf("screenshot %s: %v", name, err)
	}
	for _, d := range u.dirs {
		if err := os.WriteFile(filepath.Join(d, name+".png"), png, 0o644); err != nil {
			u.t.Fatal(err)
		}
	}
	u.shots = append(u.shots, name)
}

func (u *ui) open(path, waitCSS string) {
	u.t.Helper()
	u.do("open "+path, chromedp.Navigate(u.base+path), chromedp.WaitVisible(chromedp.CSS(waitCSS)))
}

func (u *ui) login(name, password string) {
	u.t.Helper()
	u.do("log in as "+name,
		chromedp.Navigate(u.base+"/login"),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), name),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("violations")),
	)
}

func (u *ui) logout() {
	u.t.Helper()
	u.do("log out", chromedp.Click(chromedp.CSS(`header form[action="/logout"] button`)), chromedp.WaitVisible(chromedp.ID("username")))
}

// setValue sets a form control's value as a person choosing it would.
func setValue(css, v string) chromedp.Action[chromedp.Void] {
	return chromedp.SetValue(chromedp.CSS(css), v)
}

func TestWebUIManagerAndAuditor(t *testing.T) {
	srvBin, agentBin := binaries(t)
	dir := filepath.Join(t.TempDir(), "data")
	s := startServer(t, srvBin, dir, freePort(t))
	a := enroll(t, agentBin, s)
	p := a.start(t, 0)
	defer func() {
		if t.Failed() {
			t.Logf("agent output:\n%.4000s\nserver output:\n%.4000s", p.out.String(), s.out.String())
		}
	}()
	waitFor(t, 30*time.Second, "first policy applied", func() bool { return a.appliedPolicy(t) != nil })
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	folder, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pw, err := os.ReadFile(filepath.Join(dir, "initial-admin-password"))
	if err != nil {
		t.Fatal(err)
	}
	u := newUI(t, s.url)
	const userPW = "ui test password 2026"

	// The administrator (情報システム担当) adds the manager and the auditor.
	u.open("/login", "#username")
	u.shot("01-login")
	u.login("admin", strings.TrimSpace(string(pw)))
	for _, nu := range [][2]string{{"hogo", "manager"}, {"kansa", "auditor"}} {
		u.do("add user "+nu[0],
			chromedp.Navigate(s.url+"/users"),
			chromedp.WaitVisible(chromedp.CSS(`form[action="/users"] input[name="username"]`)),
			chromedp.SendKeys(chromedp.CSS(`form[action="/users"] input[name="username"]`), nu[0]),
			setValue(`form[action="/users"] select[name="role"]`, nu[1]),
			chromedp.SendKeys(chromedp.CSS(`form[action="/users"] input[name="password"]`), userPW),
			chromedp.Click(chromedp.CSS(`form[action="/users"] button`)),
			chromedp.WaitVisible(chromedp.CSS(".flash.ok")),
		)
	}
	if users := u.text("#users"); !strings.Contains(users, "個人情報保護管理者") || !strings.Contains(users, "内部監査責任者") {
		t.Errorf("role names: %s", users)
	}
	u.shot("12-users")
	// The admin's 通知: the relay with its test send, the office hours.
	u.open("/notifications", "#hours-table")
	u.eval(`document.querySelectorAll("details.panel").forEach(d => {
		const s = d.querySelector("summary").textContent;
		if (s.startsWith("SMTP") || s === "勤務時間と休日") d.open = true;
	}); "ok"`)
	u.shot("25-notifications-admin")
	u.open("/account", "#password-form") // every user's own password
	u.shot("22-account")
	u.logout()
	u.login("hogo", userPW)

	// The manager (個人情報保護管理者) keeps the 台帳: an entry through the form: a wrong retention first, kept input
	// and a Japanese message by the field, then right.
	u.do("new PI entry",
		chromedp.Navigate(s.url+"/registers/pi/new"),
		chromedp.WaitVisible(chromedp.ID("f-name")),
		chromedp.SendKeys(chromedp.ID("f-id"), "PI-001"),
		chromedp.SendKeys(chromedp.ID("f-name"), "顧客名簿"),
		chromedp.SendKeys(chromedp.ID("f-contents"), "氏名、住所、電話番号"),
		chromedp.SendKeys(chromedp.ID("f-purpose"), "商品の発送と請求"),
		chromedp.SendKeys(chromedp.ID("f-record_count"), "1200"),
		setValue("#f-medium", "electronic"),
		chromedp.SendKeys(chromedp.ID("f-locations"), host+":"+folder),
		chromedp.SendKeys(chromedp.ID("f-owner"), "山田 太郎"),
		chromedp.SendKeys(chromedp.ID("f-department"), "総務部"),
		chromedp.SendKeys(chromedp.ID("f-retention"), "しばらく"),
		chromedp.Click(chromedp.ID("save")),
		chromedp.WaitVisible(chromedp.ID("err-retention")),
	)
	if v := u.eval(`document.getElementById("f-name").value`); v != "顧客名簿" {
		t.Errorf("input lost on error: name %q", v)
	}
	u.shot("06-register-form-error")
	u.do("fix and save",
		setValue("#f-retention", "5年"),
		chromedp.SendKeys(chromedp.ID("f-disposal_method"), "データ消去ソフトで消去"),
		chromedp.Click(chromedp.ID("save")),
		chromedp.WaitVisible(chromedp.CSS(".flash.ok")),
	)
	u.shot("07-register-entry")
	u.open("/registers/pi", "#new-entry")
	u.shot("05-registers")

	// The agent starts watching the folder of the new entry.
	waitFor(t, 30*time.Second, "the agent watching the register folder", func() bool {
		for _, e := range s.query(t, url.Values{"agent": {a.id}, "type": {"fileaccess.status"}}) {
			if e.Attrs["reason"] == "fileaccess.watching" && num(e.Attrs["folders"]) >= 1 {
				return true
			}
		}
		return false
	})

	// The manager sees the folder watched on the PC's page.
	var reason string
	defer func() {
		if t.Failed() {
			t.Logf("last ファイルアクセス reason on the PC page: %q", reason)
		}
	}()
	waitFor(t, 30*time.Second, "the PC page saying the folder is watched", func() bool {
		u.open("/hosts/"+a.id, "#controls")
		reason, _ = chromedp.Run(u.ctx, chromedp.Evaluate[string](`(document.querySelector("#controls tr.ctl-fileaccess .reason")||{}).textContent||""`))
		return reason == "すべての対象フォルダを監視しています"
	})
	u.shot("04-host")

	// A bulk copy into the folder reaches 概要 as a warning.
	sub := filepath.Join(folder, "コピー")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	for i := range 231 {
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("顧客-%03d.csv", i)), []byte("氏名,住所\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 60*time.Second, "the bulk-copy warning on the server", func() bool {
		return len(s.query(t, url.Values{"agent": {a.id}, "type": {"fileaccess.bulk"}})) > 0
	})
	u.open("/", "#warnings")
	if w := u.text("#warnings"); !strings.Contains(w, "大量コピー・大量操作") || !strings.Contains(w, host) {
		t.Errorf("概要 does not show the bulk copy:\n%s", w)
	}
	if n := u.text("#rates tr.rate-fileaccess .warn-n"); n == "0" {
		t.Errorf("ファイルアクセス row shows no warning next to its pass rate")
	}
	u.shot("02-overview")
	u.open("/hosts", "#hosts")
	u.shot("03-hosts")

	// A carry-out request, approved with a comment after the confirmation.
	media := `{"id":"USB-01","status":"active","registered":"2026-04-01","product":"暗号化USBメモリ 32GB","serial":"AA00123456","owner":"総務部","encrypted":true}`
	if st, b := s.adminDo(t, "POST", "/api/v1/media", []byte(media)); st != 201 {
		t.Fatalf("media entry: %d %s", st, b)
	}
	now := time.Now().In(time.FixedZone("JST", 9*3600))
	u.do("request form",
		chromedp.Navigate(s.url+"/approvals/new"),
		chromedp.WaitVisible(chromedp.ID("f-purpose")),
		setValue("#f-requester", "佐藤 花子"),
		setValue("#f-host", host),
		setValue("#f-serial", "AA00123456"),
		chromedp.SendKeys(chromedp.ID("f-purpose"), "顧客訪問で提案資料を使用"),
		setValue("#f-from", now.Format("2006-01-02T15:04")),
		setValue("#f-to", now.Add(48*time.Hour).Format("2006-01-02T15:04")),
		chromedp.Click(chromedp.CSS(`input[name="register_ids"][value="PI-001"]`)),
	)
	u.shot("09-approval-request")
	u.do("submit request", chromedp.Click(chromedp.ID("submit-request")), chromedp.WaitVisible(chromedp.CSS(".flash.ok")))
	u.do("to confirmation", chromedp.Click(chromedp.CSS(`#approvals a.approve`)), chromedp.WaitVisible(chromedp.ID("comment")))
	if aff := u.text("#affected"); !strings.Contains(aff, "顧客名簿") {
		t.Errorf("confirmation does not show the register entry taken out: %s", aff)
	}
	u.do("comment", chromedp.SendKeys(chromedp.ID("comment"), "暗号化USBのみ。返却時にデータ消去を確認すること"))
	u.shot("10-approval-confirm")
	u.do("approve", chromedp.Click(chromedp.ID("confirm")), chromedp.WaitVisible(chromedp.CSS(".flash.ok")))
	if st := u.text("#approvals td.status"); st != "承認済み" {
		t.Errorf("after approving: %q", st)
	}
	u.shot("08-approvals")
	// The approved entry: the decision shows, read-only, beside the terms.
	u.open(u.eval(`document.querySelector("#approvals td a[href^='/registers/approvals/']").getAttribute("href")`), "#f-comment")
	if ro := u.eval(`String(document.querySelector("#f-comment").readOnly)`); ro != "true" || !strings.Contains(u.eval(`document.querySelector("#f-comment").value`), "暗号化USBのみ") {
		t.Errorf("the approver's comment on the entry: read-only %s", ro)
	}
	u.shot("23-approval-entry")
	u.open("/policies", "#assign-pc, .panel")
	u.shot("11-policies")
	// A manager records an incident and fills in its page.
	u.open("/incidents", "#incident-form")
	u.do("open an incident",
		setValue("#i-title", "顧客名簿のUSBメモリ紛失"),
		chromedp.SendKeys(chromedp.ID("i-sum"), "営業部で顧客名簿を保存したUSBメモリを紛失"),
		chromedp.Click(chromedp.CSS(`#incident-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`a[href^="/incidents/INC-"]`)))
	u.open(u.eval(`document.querySelector("a[href^='/incidents/INC-']").getAttribute("href")`), "#incident-edit")
	u.do("edit the incident",
		chromedp.SendKeys(chromedp.ID("e-cause"), "外出先での置き忘れ"),
		setValue("#e-persons", "320"),
		chromedp.Click(chromedp.ID("save-incident")),
		chromedp.WaitVisible(chromedp.CSS(".flash.ok")))
	if h := u.text("#incident-history"); !strings.Contains(h, "外出先での置き忘れ") || !strings.Contains(h, "本人の数") {
		t.Errorf("the incident's history: %q", h)
	}
	u.logout()

	// The auditor finds who touched the folder today, by PC name, folder
	// and date, opens one event, exports CSV and a bundle.
	u.login("kansa", userPW)
	day := now.Format("2006-01-02")
	u.do("search",
		chromedp.Navigate(s.url+"/events"),
		chromedp.WaitVisible(chromedp.ID("f-agent")),
		setValue("#f-agent", a.id),
		chromedp.SendKeys(chromedp.ID("f-object"), sub),
		setValue("#f-from", day+"T00:00"),
		setValue("#f-to", now.Add(time.Hour).Format("2006-01-02T15:04")),
		chromedp.Click(chromedp.ID("do-search")),
	)
	// The page before the search lists events too: wait for the result
	// page itself, or the next read may meet the page being replaced.
	u.waitJS("the search result", `location.search.includes("object_prefix=") && document.readyState === "complete" && !!document.querySelector("#events a.detail")`)
	if rows := u.text("#events"); !strings.Contains(rows, host) || !strings.Contains(rows, "ファイル作成") || strings.Contains(rows, "file.created") {
		t.Errorf("search result without PC names or labels:\n%.1000s", rows)
	}
	u.shot("13-events")
	csv := u.eval(`fetch(document.getElementById("export-csv").href).then(r => r.ok ? r.arrayBuffer() : Promise.reject("HTTP " + r.status)).
		then(b => new TextDecoder("utf-8", {ignoreBOM: true}).decode(b))`)
	if !strings.HasPrefix(csv, "\ufeff\"ログ番号\",\"日時 (JST)\",\"エージェント\"") || !strings.Contains(csv, `,"`+host+`","ファイルアクセス","ファイル作成",`) {
		t.Errorf("CSV without PC names or Japanese labels:\n%.800s", csv)
	}
	bundle := u.eval(`fetch("/events/export?" + new URLSearchParams(new FormData(document.getElementById("bundle-form")))).
		then(r => r.ok ? r.text() : Promise.reject("HTTP " + r.status))`)
	if lines := strings.Count(bundle, "\n"); lines < 10 || !strings.Contains(bundle, "checkpoint") {
		t.Errorf("bundle: %d lines\n%.300s", lines, bundle)
	}
	u.do("event detail", chromedp.Click(chromedp.CSS(`#events a.detail`)), chromedp.WaitVisible(chromedp.ID("event-detail")))
	if d := u.text("#event-detail"); !strings.Contains(d, host) || !strings.Contains(d, "PI-001") {
		t.Errorf("event detail:\n%s", d)
	}
	u.shot("14-event-detail")
	u.open("/evidence?recheck=1", "#verdict")
	if v := u.text("#verdict"); !strings.Contains(v, "改ざんは検出されていません") {
		t.Errorf("証跡 on an intact store: %q", v)
	}
	u.shot("15-evidence")
	// The alerting pages: 通知 (rules and deliveries), 事故 (incidents and
	// the form to open one), 監査報告.
	u.open("/notifications", "h1")
	if h := u.text("#hours-table"); !strings.Contains(h, "全社") || !strings.Contains(h, "09:00") {
		t.Errorf("the auditor does not see the working hours: %q", h)
	}
	u.shot("18-notifications")
	u.open("/incidents", "h1")
	u.shot("19-incidents")
	// The auditor reads the incident's page: no form, its history.
	u.open(u.eval(`document.querySelector("a[href^='/incidents/INC-']").getAttribute("href")`), "#incident-history")
	if h := u.text("#incident-history"); !strings.Contains(h, "外出先での置き忘れ") || !strings.Contains(h, "本人の数") {
		t.Errorf("the incident's history: %q", h)
	}
	u.shot("24-incident")
	u.open("/reports", "h1")
	u.shot("20-reports")
	today := time.Now().In(time.FixedZone("JST", 9*3600)).Format("2006-01-02")
	u.open("/reports?format=html&from="+today+"&to="+today, "h1")
	if h := u.text("h1"); !strings.Contains(h, "監査報告書") {
		t.Errorf("the audit report's heading: %q", h)
	}
	u.shot("21-report")

	// The same pages in English, whose words are longer: nothing hides
	// sideways there either.
	u.do("to English", chromedp.Navigate(u.base+"/lang/en"), chromedp.WaitVisible(chromedp.ID("lang-ja")))
	for _, p := range []string{"/", "/hosts", "/hosts/" + a.id, "/events?agent=" + a.id, "/registers/pi", "/approvals",
		"/policies", "/evidence", "/notifications", "/incidents", "/reports", "/registers/pi/PI-001", "/account"} {
		u.open(p, "#lang-ja")
		if c := u.eval(clippedJS); c != "" {
			t.Errorf("%s in English: content hidden sideways:\n%s", p, c)
		}
	}
	u.do("back to Japanese", chromedp.Navigate(u.base+"/lang/ja"), chromedp.WaitVisible(chromedp.ID("lang-en")))

	// Someone rewrites a stored event in the server's SQLite file.
	db, err := sql.Open("sqlite", filepath.Join(dir, "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`PRAGMA busy_timeout = 10000`); err != nil {
		t.Fatal(err)
	}
	// The store keeps each batch as one record: the bytes of one event's
	// type are rewritten inside it.
	var (
		lo      int64
		payload []byte
	)
	err = db.QueryRow(`SELECT lo, payload FROM records WHERE instr(payload, CAST('file.created' AS BLOB)) > 0 ORDER BY lo LIMIT 1`).Scan(&lo, &payload)
	if err != nil {
		t.Fatal(err)
	}
	payload = bytes.Replace(payload, []byte("file.created"), []byte("file.deleted"), 1)
	if res, err := db.Exec(`UPDATE records SET payload = ? WHERE lo = ?`, payload, lo); err != nil {
		t.Fatal(err)
	} else if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("tampered %d records", n)
	}
	u.open("/evidence?recheck=1", "#verdict")
	if v, found := u.text("#verdict"), u.text("#checks"); !strings.Contains(v, "改ざんまたは欠落が検出されました") || !strings.Contains(found, "保存後に内容が書き換えられたイベントがあります") {
		t.Errorf("証跡 on a tampered store: %q\n%s", v, found)
	}
	u.shot("16-evidence-tampered")
	u.open("/hosts/no-such-pc", "#go-back")
	u.shot("17-error")
	t.Logf("screenshots: %v in %v", u.shots, u.dirs)
}
