package web_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/mamori/mamori/shared/event"
)

// Hosts sort and export what is shown; a policy goes to a PC chosen by
// name; an error page speaks the UI's language and leads back.
func TestHostsSortExportAssignErrors(t *testing.T) {
	srv := startServer(t, t.TempDir())
	addHost(t, srv, "PC-B", "営業部", []status{{"screenlock", "fail", "screenlock.idle_too_long", "長すぎます", "too long"}}, 1, "u")
	a := addHost(t, srv, "PC-A", "総務部", []status{{"screenlock", "pass", "", "", ""}}, 1, "u")
	addHost(t, srv, "PC-C", "総務部", nil, 1, "u")
	b := newBrowser(t, srv)
	csrf := b.login("admin", srv.AdminPassword())

	pg := b.get("/hosts?sort=-name").body
	if i, j := strings.Index(pg, ">PC-C<"), strings.Index(pg, ">PC-A<"); i < 0 || j < 0 || i > j {
		t.Errorf("sort=-name does not put PC-C before PC-A")
	}
	if !strings.Contains(pg, "該当 3 台（全 3 台）のうち 3 台を表示") {
		t.Errorf("hosts count not labelled")
	}
	pg = b.get("/hosts?sort=fails").body
	if i, j := strings.Index(pg, ">PC-B<"), strings.Index(pg, ">PC-A<"); i > j {
		t.Errorf("sort=fails does not put the failing PC first")
	}
	if x := b.get("/hosts?sort=bogus"); x.status != http.StatusBadRequest {
		t.Errorf("bad sort: %d", x.status)
	}
	csv := b.get("/hosts/export?department=" + url.QueryEscape("総務部") + "&sort=name")
	lines := strings.Split(strings.TrimSpace(csv.body), "\r\n")
	if !strings.HasPrefix(csv.body, "\ufeff端末,部署,最終通信") || len(lines) != 3 || !strings.HasPrefix(lines[1], "PC-A,総務部,") || !strings.Contains(lines[1], ",準拠,") {
		t.Errorf("hosts CSV:\n%s", csv.body)
	}

	pol := b.get("/policies").body
	if !strings.Contains(pol, `<option value="`+a+`">PC-A</option>`) {
		t.Fatalf("policy page does not offer PCs by name")
	}
	if x := b.post("/policies/assign", url.Values{"csrf": {csrf}, "target": {"pc"}, "pc": {a}, "policy": {"strict"}}); x.status != http.StatusSeeOther {
		t.Fatalf("assign by PC: %d\n%.1500s", x.status, x.body)
	}
	if x := b.post("/policies/assign", url.Values{"csrf": {csrf}, "target": {"agent"}, "id": {"PC-B"}, "policy": {"strict"}}); x.status != http.StatusSeeOther {
		t.Fatalf("assign by typed PC name: %d\n%.1500s", x.status, x.body)
	}
	if pol = b.get("/policies").body; !strings.Contains(pol, "端末: PC-A") || !strings.Contains(pol, "端末: PC-B") {
		t.Errorf("assignments not shown by PC name")
	}
	// An assignment is removed from the page too (the PC follows its
	// department's or the default again).
	if x := b.post("/policies/assign", url.Values{"csrf": {csrf}, "target": {"pc"}, "pc": {a}, "policy": {""}}); x.status != http.StatusSeeOther {
		t.Fatalf("remove an assignment: %d\n%.1500s", x.status, x.body)
	}
	if pol = b.get("/policies").body; strings.Contains(pol, "端末: PC-A") || !strings.Contains(pol, "端末: PC-B") || !strings.Contains(pol, "割り当てを解除") {
		t.Errorf("the removed assignment is still shown, or no way to remove one")
	}

	e := b.do("GET", "/hosts/nope", nil, map[string]string{"Referer": srv.URL() + "/hosts?sort=dept"})
	if e.status != http.StatusNotFound || !strings.Contains(e.body, "見つかりません") || !strings.Contains(e.body, `id="go-back" href="/hosts?sort=dept"`) {
		t.Errorf("error page: %d\n%.2000s", e.status, e.body)
	}
	e = b.do("GET", "/hosts/nope", nil, map[string]string{"Referer": "https://evil.example/x"})
	if !strings.Contains(e.body, `id="go-back" href="/"`) {
		t.Errorf("error page leads back off-site")
	}
}

// A PC's posture shows each of its checks, so an anti-virus that could not
// be detected is not hidden behind the disk's failure.
func TestHostPagePostureChecks(t *testing.T) {
	srv := startServer(t, t.TempDir())
	ev := statusEvent("posture", "fail", "posture.disk_not_encrypted", "システムドライブ(/)が暗号化されていません", "system volume / is not encrypted")
	ev.Attrs["checks"] = map[string]any{
		"disk_encryption": map[string]any{"state": "fail", "required": true, "reason": "posture.disk_not_encrypted", "reason_ja": "システムドライブ(/)が暗号化されていません", "reason_en": "not encrypted"},
		"antivirus":       map[string]any{"state": "unknown", "required": true, "reason": "posture.antivirus_not_detected", "reason_ja": "ウイルス対策の製品を検出できません（ClamAVがインストールされていません）", "reason_en": "no anti-virus"},
		"os_update":       map[string]any{"state": "pass", "required": true, "reason": "", "reason_ja": "OSは更新されています（最終: 2026-12-01）", "reason_en": "updated"},
		"firewall":        map[string]any{"state": "fail", "required": false, "reason": "posture.firewall_off", "reason_ja": "ファイアウォールが無効です", "reason_en": "firewall off"},
	}
	id := addHostEvents(t, srv, "PC-LINUX-01", "総務部", []event.Event{ev})
	b := newBrowser(t, srv)
	b.login("admin", srv.AdminPassword())
	pg := b.get("/hosts/" + id).body
	for _, want := range []string{`class="check check-antivirus"`, "ウイルス対策", "ClamAVがインストールされていません", "ディスクの暗号化",
		"OSの更新", `ファイアウォール <span class="muted">(任意)</span>`} {
		if !strings.Contains(pg, want) {
			t.Errorf("host page lacks %q:\n%.4000s", want, pg)
		}
	}
	if strings.Index(pg, "check-disk_encryption") > strings.Index(pg, "check-firewall") {
		t.Errorf("checks out of order")
	}
}
