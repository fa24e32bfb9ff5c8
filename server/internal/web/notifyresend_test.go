package web_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A delivery lost after its retries is re-sent from 通知 once the receiver
// is back: managers and admins press 再送 (CSRF-protected, recorded with
// who), the row shows the message's items and the error in Japanese, a
// re-send that fails again stays failed, and a second one is refused; the
// API does the same.
func TestFailedDeliveryResentFromThePage(t *testing.T) {
	srv := startServer(t, t.TempDir())
	addUser(t, srv, "kansa", "auditor")
	addUser(t, srv, "manabu", "manager")
	var up atomic.Bool
	var mu sync.Mutex
	var got []string
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, string(b))
		mu.Unlock()
	}))
	defer recv.Close()
	received := func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), got...) }
	set := map[string]any{
		"webhooks":            []map[string]string{{"name": "soc", "url": recv.URL, "format": "generic"}},
		"rules":               []map[string]any{{"name": "ログイン", "kind": "login_failures", "threshold": 1, "delay": "100ms", "webhooks": []string{"soc"}}},
		"retry":               map[string]any{"attempts": 2, "initial": "10ms", "max": "20ms"},
		"rate_limit_per_hour": 12,
	}
	if st := apiDo(t, srv, "PUT", "/api/v1/notifications", set, nil); st != 200 {
		t.Fatalf("PUT settings: %d", st)
	}
	time.Sleep(1500 * time.Millisecond) // the notifier's first poll places its cursors
	newBrowser(t, srv).tryLogin("tanaka-resend", "wrong password")
	deadline := time.Now().Add(10 * time.Second)
	for len(serverEvents(t, srv, "notify.failed")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no notify.failed within 10s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	idx := itoa(serverEvents(t, srv, "notify.failed")[0].Index)
	path := "/alerts/" + idx + "/resend"

	admin := newBrowser(t, srv)
	admin.login("admin", srv.AdminPassword())
	pg := admin.get("/notifications")
	row := pg.body[strings.Index(pg.body, `id="alert-`+idx+`"`):]
	row = row[:strings.Index(row, "</tr>")]
	for _, want := range []string{`action="` + path + `"`, `name="csrf"`, "tanaka-resend", "受信側がエラーを返しました", "503 Service Unavailable"} {
		if !strings.Contains(row, want) {
			t.Errorf("the failed delivery's row lacks %q:\n%s", want, row)
		}
	}

	aud := newBrowser(t, srv)
	atok := aud.login("kansa", testPassword)
	if pg := aud.get("/notifications"); strings.Contains(pg.body, `action="`+path+`"`) {
		t.Error("auditor sees 再送")
	}
	if a := aud.post(path, url.Values{"csrf": {atok}}); a.status != http.StatusForbidden {
		t.Errorf("auditor re-sends: %d", a.status)
	}

	b := newBrowser(t, srv)
	tok := b.login("manabu", testPassword)
	if a := b.post(path, url.Values{}); a.status != http.StatusForbidden {
		t.Errorf("without csrf: %d", a.status)
	}
	if len(serverEvents(t, srv, "notify.sent"))+len(received()) != 0 {
		t.Fatal("re-sent without a valid form")
	}
	// Still down: refused with why, recorded, and the row stays failed.
	a := b.post(path, url.Values{"csrf": {tok}})
	if a.status != http.StatusBadGateway || !strings.Contains(a.body, "再送できませんでした") || !strings.Contains(a.body, `action="`+path+`"`) {
		t.Errorf("re-send while down: %d", a.status)
	}
	var tries int
	for _, e := range serverEvents(t, srv, "notify.attempt_failed") {
		if toString(e.Attrs["via"]) == "web" && e.User == "manabu" {
			tries++
		}
	}
	if tries != 1 {
		t.Errorf("%d failed re-sends recorded, want 1", tries)
	}
	up.Store(true)
	if a := b.post(path, url.Values{"csrf": {tok}}); a.status != http.StatusSeeOther {
		t.Fatalf("re-send: %d\n%.1000s", a.status, a.body)
	}
	if r := received(); len(r) != 1 || !strings.Contains(r[0], "tanaka-resend") {
		t.Errorf("receiver got %q", r)
	}
	sent := serverEvents(t, srv, "notify.sent")
	if len(sent) != 1 || sent[0].User != "manabu" || toString(sent[0].Attrs["destination"]) != "webhook:soc" {
		t.Errorf("re-send records %+v", sent)
	}
	if a := b.post(path, url.Values{"csrf": {tok}}); a.status != http.StatusConflict {
		t.Errorf("second re-send: %d", a.status)
	}
	if st := apiDo(t, srv, "POST", "/api/v1/alerts/"+idx+"/resend", nil, nil); st != http.StatusConflict {
		t.Errorf("API re-send of a re-sent delivery: %d", st)
	}
	if st := apiDo(t, srv, "POST", "/api/v1/alerts/999999/resend", nil, nil); st != http.StatusNotFound {
		t.Errorf("API re-send of no delivery: %d", st)
	}
	if len(received()) != 1 {
		t.Errorf("delivered %d times, want once", len(received()))
	}
	if pg := b.get("/notifications"); strings.Contains(pg.body, `action="`+path+`"`) || !strings.Contains(pg.body, "再送済み") {
		t.Error("the page still offers 再送 after the re-send")
	}
}

// Every alerted item of the last 30 days is in 通知's alert list, not only
// compliance alerts and failed deliveries: a failed login a rule mailed is
// listed, linking to its event.
func TestAlertedItemsListedOnTheNotificationsPage(t *testing.T) {
	srv := startServer(t, t.TempDir())
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) }))
	defer recv.Close()
	set := map[string]any{
		"webhooks":            []map[string]string{{"name": "soc", "url": recv.URL, "format": "generic"}},
		"rules":               []map[string]any{{"name": "ログイン", "kind": "login_failures", "threshold": 1, "delay": "100ms", "webhooks": []string{"soc"}}},
		"rate_limit_per_hour": 12,
	}
	if st := apiDo(t, srv, "PUT", "/api/v1/notifications", set, nil); st != 200 {
		t.Fatalf("PUT settings: %d", st)
	}
	time.Sleep(1500 * time.Millisecond) // the notifier's first poll places its cursors
	newBrowser(t, srv).tryLogin("suzuki-listed", "wrong password")
	deadline := time.Now().Add(10 * time.Second)
	for len(serverEvents(t, srv, "notify.sent")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no notify.sent within 10s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	var idx int64 = -1
	for _, e := range serverEvents(t, srv, "ui.login_failed") {
		if strings.Contains(e.Object, "suzuki-listed") {
			idx = e.Index
		}
	}
	b := newBrowser(t, srv)
	b.login("admin", srv.AdminPassword())
	pg := b.get("/notifications")
	list := pg.body[strings.Index(pg.body, `id="alert-list"`):]
	list = list[:strings.Index(list, "</table>")]
	at := strings.Index(list, `id="alert-`+itoa(idx)+`"`)
	if idx < 0 || at < 0 {
		t.Fatalf("the alerted login failure %d is not in the alert list:\n%s", idx, list)
	}
	row := list[at:]
	row = row[:strings.Index(row, "</tr>")]
	if !strings.Contains(row, `href="/events/`+itoa(idx)+`"`) || !strings.Contains(row, "suzuki-listed") {
		t.Errorf("the row does not link its event or name the user:\n%s", row)
	}
}
