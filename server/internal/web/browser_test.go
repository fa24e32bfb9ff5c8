package web_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium finds a Chromium binary (Debian's package installs
// /usr/bin/chromium; .ci/run installs it).
func chromium() string {
	for _, n := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	return ""
}

// newChromium starts one headless Chromium for the whole scenario, with a
// fresh profile and nothing that reaches for the (closed) network.
func newChromium(t *testing.T) context.Context {
	t.Helper()
	exe := chromium()
	if exe == "" {
		t.Skip("chromium not installed (Debian: apt-get install chromium; .ci/run installs it): skipping browser tests")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		// The server's certificate comes from the test's own Mamori CA.
		chromedp.Flag("ignore-certificate-errors", true),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelB(); cancelA() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser; no timeout on this first call
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// do runs steps with a time limit so a missing element fails the test
// instead of hanging it; on failure it shows where the browser is.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	get(t, ctx, what, chromedp.Steps(steps...))
}

func get[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, a)
	if err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("body")))
		t.Fatalf("%s: %v\nat %s:\n%.3000s", what, err, loc, html)
	}
	return v
}

func text(t *testing.T, ctx context.Context, css string) string {
	t.Helper()
	return get(t, ctx, "text of "+css, chromedp.Text(chromedp.CSS(css)))
}

func TestBrowser(t *testing.T) {
	ctx := newChromium(t)
	srv := startServer(t, t.TempDir())
	addUser(t, srv, "manabu", "manager")
	const reasonJA, reasonEN = "画面ロックまでの時間が長すぎます（30分 > 10分）", "idle time before lock too long (30m > 10m)"
	bad := addHost(t, srv, "PC-SALES01", "営業部", []status{
		{"screenlock", "fail", "screenlock.idle_too_long", reasonJA, reasonEN},
		{"backup", "pass", "", "", ""},
	}, 30, "yamada")
	addHost(t, srv, "PC-ADMIN02", "総務部", []status{{"screenlock", "pass", "", "", ""}}, 5, "suzuki")
	apID, _ := newApproval(t, srv, "山田", "PC-SALES01")
	base := srv.URL()
	hostLink := chromedp.CSS(`a[href="/hosts/` + bad + `"]`)

	t.Run("login", func(t *testing.T) {
		do(t, ctx, "log in",
			chromedp.Navigate(base+"/hosts"),
			chromedp.WaitVisible(chromedp.ID("username")),
			chromedp.SendKeys(chromedp.ID("username"), "manabu"),
			chromedp.SendKeys(chromedp.ID("password"), testPassword),
			chromedp.Click(chromedp.ID("login")),
			chromedp.WaitVisible(hostLink),
		)
		if loc := get(t, ctx, "location", chromedp.Location()); !strings.HasSuffix(loc, "/hosts") {
			t.Errorf("after login at %s, want back at /hosts", loc)
		}
		do(t, ctx, "overview", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("violations")))
		if v := text(t, ctx, "#violations"); v != "1" {
			t.Errorf("open violations: %q, want 1", v)
		}
	})

	t.Run("failing host and reason", func(t *testing.T) {
		do(t, ctx, "host page",
			chromedp.Click(hostLink), // from the overview's violations table
			chromedp.WaitVisible(chromedp.ID("controls")),
		)
		if st, reason := text(t, ctx, "#controls tr.ctl-screenlock .st"), text(t, ctx, "#controls tr.ctl-screenlock .reason"); st != "違反" || reason != reasonJA {
			t.Errorf("screenlock row: %q %q", st, reason)
		}
		if events := text(t, ctx, "#events"); !strings.Contains(events, `D:\顧客\list-029.xlsx`) || !strings.Contains(events, "PC-SALES01") {
			t.Errorf("recent events do not show the host's newest event:\n%s", events)
		}
	})

	t.Run("search access log and export CSV", func(t *testing.T) {
		do(t, ctx, "search",
			chromedp.Navigate(base+"/events"),
			chromedp.WaitVisible(chromedp.ID("f-user")),
			chromedp.SendKeys(chromedp.ID("f-user"), "yamada"),
			chromedp.Click(chromedp.ID("do-search")),
			chromedp.WaitVisible(chromedp.CSS(`#f-user[value="yamada"]`)),
		)
		users := get(t, ctx, "rows", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#events tr td:nth-child(6)")).map(td => td.textContent)`))
		if len(users) != 30 {
			t.Errorf("search user=yamada: %d rows, want 30", len(users))
		}
		for _, u := range users {
			if u != "yamada" {
				t.Fatalf("search user=yamada shows user %q", u)
			}
		}
		// Fetch what the export button links to, in the page (same cookies).
		csv := get(t, ctx, "export", chromedp.Evaluate[string](
			`fetch(document.getElementById("export-csv").href).then(r => r.ok ? r.arrayBuffer() : Promise.reject("HTTP " + r.status)).
				then(b => new TextDecoder("utf-8", {ignoreBOM: true}).decode(b))`, chromedp.EvalAwaitPromise))
		lines := strings.Split(strings.TrimRight(csv, "\r\n"), "\n")
		if !strings.HasPrefix(csv, "\ufeff") {
			t.Errorf("CSV without the UTF-8 BOM Excel needs: %.200q", csv)
		}
		if len(lines) != 31 {
			t.Errorf("CSV has %d lines, want header + 30:\n%.1500s", len(lines), csv)
		}
		if !strings.Contains(csv, `D:\顧客\list-000.xlsx`) || strings.Contains(csv, "suzuki") {
			t.Errorf("CSV is not the searched events:\n%.1500s", csv)
		}
		if n := len(serverEvents(t, srv, "export.made")); n != 1 {
			t.Errorf("export.made events: %d", n)
		}
	})

	t.Run("approve carry-out", func(t *testing.T) {
		do(t, ctx, "approve",
			chromedp.Navigate(base+"/approvals"),
			chromedp.Click(chromedp.CSS(`#ap-`+apID+` a.approve`)),
			chromedp.WaitVisible(chromedp.ID("comment")),
			chromedp.SendKeys(chromedp.ID("comment"), "展示会のみ。返却時に消去を確認"),
			chromedp.Click(chromedp.ID("confirm")),
			chromedp.WaitVisible(chromedp.CSS(".flash.ok")),
		)
		if st := text(t, ctx, `#ap-`+apID+` .status`); st != "承認済み" {
			t.Errorf("after approving: status %q", st)
		}
		var ap struct {
			Status, Approver, Comment string
		}
		if code := apiDo(t, srv, "GET", "/api/v1/approvals/"+apID, nil, &ap); code != 200 || ap.Status != "approved" || ap.Approver != "manabu" || ap.Comment != "展示会のみ。返却時に消去を確認" {
			t.Errorf("stored approval: %d %+v", code, ap)
		}
	})

	t.Run("language switch", func(t *testing.T) {
		do(t, ctx, "to English",
			chromedp.Navigate(base+"/hosts/"+bad),
			chromedp.Click(chromedp.ID("lang-en")),
			chromedp.WaitVisible(chromedp.ID("lang-ja")),
		)
		lang := get(t, ctx, "lang", chromedp.AttributeValue(chromedp.CSS("html"), "lang")).Value
		nav, reason := text(t, ctx, "header nav"), text(t, ctx, "#controls tr.ctl-screenlock .reason")
		if lang != "en" || !strings.Contains(nav, "Overview") || reason != reasonEN {
			t.Errorf("English: lang %q, nav %q, reason %q", lang, nav, reason)
		}
		if loc := get(t, ctx, "location", chromedp.Location()); !strings.HasSuffix(loc, "/hosts/"+bad) {
			t.Errorf("switching language left the page: %s", loc)
		}
		do(t, ctx, "back to Japanese",
			chromedp.Click(chromedp.ID("lang-ja")),
			chromedp.WaitVisible(chromedp.ID("lang-en")),
		)
		lang = get(t, ctx, "lang", chromedp.AttributeValue(chromedp.CSS("html"), "lang")).Value
		if nav := text(t, ctx, "header nav"); lang != "ja" || !strings.Contains(nav, "概要") {
			t.Errorf("Japanese: lang %q, nav %q", lang, nav)
		}
	})
}
