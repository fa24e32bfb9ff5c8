package incident_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/mod/sumdb/note"

	"github.com/mamori/mamori/server/internal/app"
	"github.com/mamori/mamori/server/internal/incident"
	"github.com/mamori/mamori/server/internal/pki"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/evidence"
	"github.com/mamori/mamori/shared/wire"
)

func tlsClient(caPEM []byte, cert *tls.Certificate) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

type client struct {
	t   *testing.T
	srv *app.Server
}

func (c client) do(method, path string, body any, out any) (int, []byte) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.srv.URL()+path, rd)
	req.Header.Set("Authorization", "Bearer "+c.srv.AdminToken())
	resp, err := tlsClient(c.srv.CAPEM(), nil).Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s: %v %s", path, err, b)
		}
	}
	return resp.StatusCode, b
}

// sendBlocked enrolls a PC and sends, over mTLS, a USB stick being
// inserted and blocked as the media control reports it.
func sendBlocked(t *testing.T, srv *app.Server, host string, at time.Time) {
	keyPEM, csrPEM, err := pki.NewKeyAndCSR(host)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(wire.EnrollRequest{Token: srv.EnrollToken(), CSR: string(csrPEM), Hostname: host, OS: "windows", Arch: "amd64", Department: "営業部"})
	resp, err := tlsClient(srv.CAPEM(), nil).Post(srv.URL()+wire.PathEnroll, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var er wire.EnrollResponse
	if resp.StatusCode != 200 || json.Unmarshal(b, &er) != nil {
		t.Fatalf("enroll %d %s", resp.StatusCode, b)
	}
	cert, _ := tls.X509KeyPair([]byte(er.Certificate), keyPEM)
	dev := event.Attrs{"vendor_id": "0781", "product_id": "5581", "vendor": "SanDisk", "product": "Ultra", "serial": "4C530001230101",
		"encrypted": false, "bus": "usb"}
	evs := []event.Event{
		{Control: "media", Type: "media.inserted", Severity: event.Info, Object: `\\.\E: E:\`, Attrs: dev},
		{Control: "media", Type: "media.blocked", Severity: event.Violation, Object: `\\.\E: E:\`, Attrs: dev},
	}
	prev := ""
	for i := range evs {
		evs[i].Agent, evs[i].Seq, evs[i].Time = er.AgentID, uint64(i+1), at.Add(time.Duration(i)*time.Second).UTC()
		evs[i].Attrs["action"] = "block"
		if err := evs[i].Seal(prev); err != nil {
			t.Fatal(err)
		}
		prev = evs[i].Hash
	}
	bb, _ := json.Marshal(wire.Batch{Events: evs})
	resp, err = tlsClient(srv.CAPEM(), &cert).Post(srv.URL()+wire.PathEvents, "application/json", bytes.NewReader(bb))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("batch %d", resp.StatusCode)
	}
}

func TestIncidentFromBlockedMediaAlert(t *testing.T) {
	ctx := context.Background()
	srv, err := app.Start(ctx, app.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", Hostnames: []string{"127.0.0.1"}, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c := client{t, srv}
	for _, e := range []map[string]any{
		{"id": "PI-0001", "name": "顧客名簿", "purpose": "商品発送", "record_count": 1250, "medium": "electronic",
			"locations": []map[string]string{{"host": "eigyo-pc01", "folder": `D:\顧客`}}, "owner": "山田 太郎", "department": "営業部", "retention": "5y", "disposal_method": "データ消去"},
		{"id": "PI-0002", "name": "健康診断結果", "purpose": "健康管理", "record_count": 40, "sensitive": true, "medium": "electronic",
			"locations": []map[string]string{{"host": "somu-pc01", "folder": `D:\人事`}}, "owner": "佐藤 花子", "department": "総務部", "retention": "5y", "disposal_method": "シュレッダー"},
	} {
		if st, b := c.do("POST", "/api/v1/register", e, nil); st != 201 {
			t.Fatalf("register: %d %s", st, b)
		}
	}
	// The PC's clock says late on Jan 29 (JST); the office knows half an
	// hour later, so the report dates cross the month end.
	sendBlocked(t, srv, "eigyo-pc01", time.Date(2026, 1, 29, 21, 30, 0, 0, incident.JST))
	var page struct{ Events []struct{ Index int64 } }
	if st, b := c.do("GET", "/api/v1/events?type=media.blocked", nil, &page); st != 200 || len(page.Events) != 1 {
		t.Fatalf("events: %d %s", st, b)
	}
	alert := page.Events[0].Index

	// Bad input changes nothing.
	for _, bad := range []any{
		map[string]any{"alert": alert, "colour": "red"},
		map[string]any{"alert": alert, "event": alert},
		map[string]any{"alert": 99999},
		map[string]any{"alert": alert, "discovered_at": "2030-01-01T00:00:00Z"},
		map[string]any{"title": ""},
	} {
		if st, b := c.do("POST", incident.Path, bad, nil); st != 400 && st != 404 {
			t.Errorf("bad open %v: %d %s", bad, st, b)
		}
	}
	var list struct{ Incidents []incident.Incident }
	if c.do("GET", incident.Path, nil, &list); len(list.Incidents) != 0 {
		t.Fatalf("bad input made an incident: %+v", list.Incidents)
	}

	// Discovered late on Jan 29 (JST): the report dates cross the month end.
	var in incident.Incident
	if st, b := c.do("POST", incident.Path, map[string]any{"alert": alert, "discovered_at": "2026-01-29T22:00:00+09:00",
		"summary": "営業部の PC に私物の USB メモリが接続され、書き込みがブロックされた。"}, &in); st != 201 {
		t.Fatalf("open: %d %s", st, b)
	}
	if in.Source.Kind != "alert" || len(in.Events) != 2 || !strings.Contains(in.Title, "SanDisk") {
		t.Errorf("source %+v events %v title %q", in.Source, in.Events, in.Title)
	}
	if len(in.Affected) != 1 || in.Affected[0].ID != "PI-0001" || in.Persons != 1250 || len(in.Hosts) != 1 || in.Hosts[0] != "eigyo-pc01" {
		t.Fatalf("affected %+v persons %d hosts %v", in.Affected, in.Persons, in.Hosts)
	}
	d := in.Deadlines
	if d.PreliminaryFrom != "2026-02-01" || d.PreliminaryBy != "2026-02-03" || d.FinalBy != "2026-02-28" || d.FinalDays != 30 {
		t.Errorf("deadlines %+v", d)
	}
	// Counted from whole register entries: reportable on the safe side, said to be a guess to confirm.
	if !in.Reportable || !strings.Contains(in.ReportableReason, "1,000人超の見込み") || !strings.Contains(in.ReportableReason, "実際の数を確認") || !d.PreliminaryOverdue || !d.FinalOverdue {
		t.Errorf("reportable %v %q overdue %+v", in.Reportable, in.ReportableReason, d)
	}

	// Unauthorised intent: 確報 within 60 days; persons edited by hand;
	// a 台帳 entry added by hand.
	u := map[string]any{"revision": in.Revision, "status": "open", "title": in.Title, "discovered_at": in.DiscoveredAt,
		"occurred_at": in.OccurredAt, "summary": in.Summary, "intent": true, "persons": 320, "cause": "従業員による持ち出しの試み",
		"add_entries": []string{"PI-0002"}}
	var up incident.Incident
	if st, b := c.do("PUT", incident.Path+"/"+in.ID, u, &up); st != 200 {
		t.Fatalf("update: %d %s", st, b)
	}
	if up.Deadlines.FinalBy != "2026-03-30" || up.Deadlines.FinalDays != 60 || up.Persons != 320 || !up.PersonsEdited ||
		len(up.Affected) != 2 || !up.Sensitive || !strings.Contains(up.ReportableReason, "不正の目的") {
		t.Errorf("after update: %+v", up)
	}
	// A stale revision is refused and changes nothing.
	u["persons"] = 1
	if st, _ := c.do("PUT", incident.Path+"/"+in.ID, u, nil); st != 409 {
		t.Errorf("stale revision: %d", st)
	}
	var got incident.Incident
	if c.do("GET", incident.Path+"/"+in.ID, nil, &got); got.Persons != 320 {
		t.Errorf("persons after refused update: %d", got.Persons)
	}

	// Worksheet: printable Japanese HTML and CSV filled from the record.
	st, html := c.do("GET", incident.Path+"/"+in.ID+"/worksheet?format=html", nil, nil)
	for _, want := range []string{"社外秘", "漏えい等の報告", "2026-02-01 から 2026-02-03 まで", "2026-03-30", "320 人", "顧客名簿", "健康診断結果",
		"従業員による持ち出しの試み", "媒体のブロック", "@page { size: A4"} {
		if st != 200 || !strings.Contains(string(html), want) {
			t.Errorf("worksheet HTML (%d) lacks %q", st, want)
		}
	}
	st, csvb := c.do("GET", incident.Path+"/"+in.ID+"/worksheet?format=csv", nil, nil)
	if st != 200 || !bytes.HasPrefix(csvb, []byte("\ufeff\"項目\",\"内容\"\r\n")) || !strings.Contains(string(csvb), `"(3) 本人の数","320"`) ||
		!strings.Contains(string(csvb), `"確報の期限","2026-03-30`) {
		t.Errorf("worksheet CSV %d:\n%s", st, csvb)
	}
	if st, _ := c.do("GET", incident.Path+"/"+in.ID+"/worksheet?format=pdf", nil, nil); st != 400 {
		t.Errorf("format=pdf: %d", st)
	}
	// The evidence bundle of its events verifies offline.
	st, bundle := c.do("GET", incident.Path+"/"+in.ID+"/worksheet?format=bundle", nil, nil)
	if st != 200 {
		t.Fatalf("bundle: %d %s", st, bundle)
	}
	v, err := note.NewVerifier(srv.LogVerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	rep, err := evidence.Verify(bytes.NewReader(bundle), v, evidence.VerifyOptions{})
	if err != nil || len(rep.Problems) != 0 || rep.Events != 2 {
		t.Fatalf("bundle verify: %v %+v", err, rep)
	}

	// Overdue reports become alerts, once each.
	for range 2 {
		if err := srv.Incidents().CheckOverdue(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var od struct{ Events []event.Event }
	if c.do("GET", "/api/v1/events?type=incident.overdue", nil, &od); len(od.Events) != 2 {
		t.Errorf("overdue alerts: %+v", od.Events)
	}
	var hist struct{ Events []event.Event }
	c.do("GET", "/api/v1/events?control=incident", nil, &hist)
	types := []string{}
	for _, e := range hist.Events {
		types = append(types, e.Type)
	}
	if fmt.Sprint(types) != "[incident.opened incident.updated incident.overdue incident.overdue]" {
		t.Errorf("incident events: %v", types)
	}
	// The update's event says what changed from what to what: the
	// incident's history.
	upd := hist.Events[1].Attrs
	before, _ := upd["before"].(map[string]any)
	after, _ := upd["after"].(map[string]any)
	if fmt.Sprint(before["persons"]) != "1250" || fmt.Sprint(after["persons"]) != "320" || after["cause"] != "従業員による持ち出しの試み" ||
		before["cause"] != nil || fmt.Sprint(after["affected"]) != "[PI-0001 PI-0002]" {
		t.Errorf("incident.updated attrs: %v", upd)
	}

	// A reportable incident is not closed before both reports to the PPC
	// are recorded: closing it would also silence the overdue alerts.
	c.do("GET", incident.Path+"/"+in.ID, nil, &got)
	cl := map[string]any{"revision": got.Revision, "status": "closed", "title": got.Title, "discovered_at": got.DiscoveredAt,
		"occurred_at": got.OccurredAt, "summary": got.Summary, "intent": true, "persons": 320, "cause": got.Cause,
		"preliminary_reported_at": "2026-02-02T10:00:00+09:00"}
	if st, b := c.do("PUT", incident.Path+"/"+in.ID, cl, nil); st != 400 || !strings.Contains(string(b), "final_reported_at") {
		t.Errorf("closing a reportable incident without its 確報: %d %s", st, b)
	}
	if c.do("GET", incident.Path+"/"+in.ID, nil, &got); got.Status != incident.StatusOpen {
		t.Fatalf("a refused close changed the status to %s", got.Status)
	}
	cl["final_reported_at"] = "2026-03-20T10:00:00+09:00"
	if st, b := c.do("PUT", incident.Path+"/"+in.ID, cl, &got); st != 200 || got.Status != incident.StatusClosed {
		t.Errorf("closing with both reports: %d %s", st, b)
	}
	if _, html := c.do("GET", incident.Path+"/"+in.ID+"/worksheet?format=html", nil, nil); !strings.Contains(string(html), "報告済み (確報 2026-03-20)") {
		t.Errorf("the worksheet of a closed incident does not say its reports were made")
	}

	// A form names whole minutes: saving one back is no change of seconds.
	var byHand incident.Incident
	if st, b := c.do("POST", incident.Path, map[string]any{"title": "誤送信", "discovered_at": "2026-01-30T09:15:31+09:00"}, &byHand); st != 201 {
		t.Fatalf("open by hand: %d %s", st, b)
	}
	if st, b := c.do("PUT", incident.Path+"/"+byHand.ID, map[string]any{"revision": byHand.Revision, "status": "open", "title": "誤送信",
		"discovered_at": "2026-01-30T09:15:00+09:00", "cause": "宛先の確認漏れ"}, &got); st != 200 || got.DiscoveredAt.Second() != 31 {
		t.Fatalf("update by minute: %d %s", st, b)
	}
	c.do("GET", "/api/v1/events?type=incident.updated", nil, &hist)
	if last := hist.Events[len(hist.Events)-1]; fmt.Sprint(last.Attrs["changed"]) != "[cause]" {
		t.Errorf("a form's minute made a change: %v", last.Attrs)
	}
}
