package web_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/mamori/mamori/server/internal/app"
	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/evidence"
	"golang.org/x/mod/sumdb/note"
)

// tamper rewrites one stored event's object in the running server's SQLite
// store, as someone with file access to the data dir could.
func tamper(t *testing.T, dir string) {
	t.Helper()
	n, err := eventlog.TamperSQL(context.Background(), filepath.Join(dir, app.FileEvents),
		`UPDATE events SET object = 'D:\顧客\差し替え.xlsx' WHERE idx = (SELECT min(idx) FROM events WHERE object LIKE 'D:%')`)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("tampered %d rows", n)
	}
}

// 証跡 says in words that the log is intact, offers the key, the latest
// checkpoint and the verifiers, and after someone rewrites a stored event
// says what was found.
func TestEvidencePageIntactThenTampered(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	addHost(t, srv, "PC-SOUMU-01", "総務部", nil, 20, "sato")
	addUser(t, srv, "kansa", "auditor")
	b := newBrowser(t, srv)
	b.login("kansa", testPassword)

	pg := b.get("/evidence?recheck=1")
	if pg.status != 200 || !strings.Contains(pg.body, "改ざんは検出されていません") || strings.Contains(pg.body, "問題あり") {
		t.Fatalf("intact store: %d\n%.4000s", pg.status, pg.body)
	}
	for _, want := range []string{"起動時にすべてのイベントを検証し", "保存されたすべてのイベントのハッシュ・チェーン・木を再計算し、一致しました", "mamori-server.exe verify"} {
		if !strings.Contains(pg.body, want) {
			t.Errorf("evidence page lacks %q", want)
		}
	}
	if k := b.get("/evidence/log-key.pub"); k.status != 200 || !strings.HasPrefix(k.body, strings.TrimSpace(srv.LogVerifierKey())) ||
		!strings.Contains(k.header.Get("Content-Disposition"), "log-key.pub") {
		t.Errorf("log key download: %d %q", k.status, k.body)
	}
	if c := b.get("/evidence/checkpoint"); c.status != 200 || !strings.Contains(c.body, "\n\n—") {
		t.Errorf("checkpoint download: %d %q", c.status, c.body)
	}
	if v := b.get("/evidence/verifier/windows"); v.status != http.StatusNotFound || !strings.Contains(v.body, "make build") {
		t.Errorf("missing verifier: %d", v.status)
	}

	tamper(t, dir)
	pg = b.get("/evidence?recheck=1")
	if !strings.Contains(pg.body, "改ざんまたは欠落が検出されました") || !strings.Contains(pg.body, "保存後に内容が書き換えられたイベントがあります") {
		t.Fatalf("tampered store: the page does not say what was found:\n%.5000s", pg.body)
	}
}

// The verifier downloads serve real builds from VerifierDir only.
func TestVerifierDownload(t *testing.T) {
	dir := t.TempDir()
	vdir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(vdir, "windows-amd64"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(vdir, "windows-amd64", "mamori-server.exe"), []byte("MZ fake pe"), 0o644)
	os.WriteFile(filepath.Join(vdir, "mamori-server"), []byte("#!/bin/sh not elf"), 0o755)
	srv, err := app.Start(t.Context(), testConfig(t, dir, vdir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	b := newBrowser(t, srv)
	b.login("admin", srv.AdminPassword())
	if v := b.get("/evidence/verifier/windows"); v.status != 200 || v.body != "MZ fake pe" || !strings.Contains(v.header.Get("Content-Disposition"), "mamori-server.exe") {
		t.Errorf("windows verifier: %d %q", v.status, v.body)
	}
	if v := b.get("/evidence/verifier/linux"); v.status != http.StatusNotFound {
		t.Errorf("a non-ELF file served as the Linux verifier: %d", v.status)
	}
	if v := b.get("/evidence/verifier/plan9"); v.status != http.StatusNotFound {
		t.Errorf("unknown OS: %d", v.status)
	}
	if pg := b.get("/evidence"); !strings.Contains(pg.body, `id="dl-win"`) || strings.Contains(pg.body, `id="dl-linux"`) {
		t.Errorf("evidence page offers the wrong verifiers")
	}
}

// An auditor who kept a checkpoint (the download on 証跡, or a witness's)
// exports from アクセスログ a bundle that proves the log only grew since,
// and verify holds it to that checkpoint. A size never signed is refused
// with what that means.
func TestExportBundleSinceKeptCheckpoint(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	addHost(t, srv, "PC-SOUMU-01", "総務部", nil, 5, "sato")
	addUser(t, srv, "kansa", "auditor")
	b := newBrowser(t, srv)
	b.login("kansa", testPassword)
	kept := b.get("/evidence/checkpoint").body
	cp, err := evidence.ParseCheckpoint(kept[:strings.Index(kept, "\n\n")+1])
	if err != nil {
		t.Fatal(err)
	}
	addHost(t, srv, "PC-EIGYO-01", "営業部", nil, 5, "tanaka")
	pg := b.get("/events")
	if !strings.Contains(pg.body, `name="since"`) {
		t.Fatalf("アクセスログ offers no field for a kept checkpoint:\n%.3000s", pg.body)
	}
	bundle := b.get("/events/export?format=bundle&since=" + strconv.FormatInt(cp.Size, 10))
	if bundle.status != 200 {
		t.Fatalf("bundle since %d: %d %s", cp.Size, bundle.status, bundle.body)
	}
	v, err := note.NewVerifier(strings.TrimSpace(srv.LogVerifierKey()))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := evidence.Verify(strings.NewReader(bundle.body), v, evidence.VerifyOptions{Old: []byte(kept)})
	if err != nil || !rep.OK() {
		t.Fatalf("bundle held to the kept checkpoint: %v %v", err, rep.Problems)
	}
	for since, want := range map[string]string{"x": "since", "-1": "since", "1": "rolled back or replaced"} {
		if a := b.get("/events/export?format=bundle&since=" + since); a.status != http.StatusBadRequest || !strings.Contains(a.body, want) {
			t.Errorf("since=%s: %d, want 400 naming %q:\n%.2000s", since, a.status, want, a.body)
		}
	}
}

// After an admin accepted an event loss (server.event_loss_accepted in the
// log), 証跡 never says nothing was detected: it says events were lost and
// the loss was accepted, when and how many, in Japanese and English.
func TestEvidencePageShowsAcceptedLoss(t *testing.T) {
	srv := startServer(t, t.TempDir())
	addHost(t, srv, "PC-SOUMU-01", "総務部", nil, 5, "sato")
	if _, err := srv.Store().AppendServer(context.Background(), event.Event{Control: "server", Type: app.TypeEventLossAccepted,
		Severity: event.Violation, Attrs: event.Attrs{"store_events": 90, "checkpoint_events": 102,
			"checkpoint_root": "abc", "lost_events": 12}}); err != nil {
		t.Fatal(err)
	}
	addUser(t, srv, "kansa", "auditor")
	b := newBrowser(t, srv)
	b.login("kansa", testPassword)
	pg := b.get("/evidence?recheck=1")
	if pg.status != 200 || strings.Contains(pg.body, "改ざんは検出されていません") || strings.Contains(pg.body, `class="verdict ok"`) {
		t.Fatalf("an accepted loss shows as intact: %d\n%.4000s", pg.status, pg.body)
	}
	for _, want := range []string{"管理者がイベントの欠落を承認", `class="verdict unk"`, "欠落を承認"} {
		if !strings.Contains(pg.body, want) {
			t.Errorf("evidence page lacks %q", want)
		}
	}
	i := strings.Index(pg.body, `id="losses"`)
	if i < 0 {
		t.Fatalf("evidence page lists no accepted losses:\n%.4000s", pg.body)
	}
	losses := pg.body[i : i+strings.Index(pg.body[i:], "</table>")]
	for _, want := range []string{"<td>12</td>", "<td>102</td>", "<td>90</td>", "管理者"} {
		if !strings.Contains(losses, want) {
			t.Errorf("accepted losses lack %q:\n%s", want, losses)
		}
	}
	b.get("/lang/en")
	pg = b.get("/evidence")
	if strings.Contains(pg.body, "No tampering detected") || !strings.Contains(pg.body, "accepted the loss") || !strings.Contains(pg.body, `id="losses"`) {
		t.Errorf("English evidence page does not say the loss was accepted:\n%.4000s", pg.body)
	}
}

// 証跡 does not tell auditors to take the log key from the server being
// audited: it says to use the key handed over out of band and to compare
// its full SHA-256 fingerprint (shown here, as verify prints it) with this
// page's, and that the verifier download is a convenience to check against
// the release checksum or build from tagged source. Japanese and English.
func TestEvidencePageKeyHandover(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	addUser(t, srv, "kansa", "auditor")
	b := newBrowser(t, srv)
	b.login("kansa", testPassword)
	fp := evidence.KeyFingerprint(srv.LogVerifierKey())
	for lang, c := range map[string]struct {
		hdr       map[string]string
		want, not []string
	}{
		"ja": {nil, []string{fp, "別経路", "フィンガープリント", "比べて", "チェックサム", "タグ付きのソース"}, []string{"log-key.pub として保存"}},
		"en": {map[string]string{"Cookie": "mamori-lang=en"}, []string{fp, "out of band", "fingerprint", "compare", "checksum", "tagged source"},
			[]string{"Save the log public key on this page"}},
	} {
		pg := b.do("GET", "/evidence", nil, c.hdr)
		if pg.status != 200 {
			t.Fatalf("%s: %d", lang, pg.status)
		}
		for _, w := range c.want {
			if !strings.Contains(pg.body, w) {
				t.Errorf("%s: the page lacks %q", lang, w)
			}
		}
		for _, w := range c.not {
			if strings.Contains(pg.body, w) {
				t.Errorf("%s: the page still says %q", lang, w)
			}
		}
		if !strings.Contains(pg.body, `id="key-fingerprint"`) {
			t.Errorf("%s: no fingerprint element", lang)
		}
	}
}
