package report_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/mod/sumdb/note"

	"github.com/mamori/mamori/server/internal/app"
	"github.com/mamori/mamori/server/internal/pki"
	"github.com/mamori/mamori/server/internal/report"
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
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

// The audit report route over a real server: events sent by an enrolled
// agent over mTLS are counted; every format answers; the bundle verifies.
func TestAuditReportRoute(t *testing.T) {
	srv, err := app.Start(context.Background(), app.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0",
		Hostnames: []string{"127.0.0.1"}, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	keyPEM, csrPEM, _ := pki.NewKeyAndCSR("pc-a")
	body, _ := json.Marshal(wire.EnrollRequest{Token: srv.EnrollToken(), CSR: string(csrPEM), Hostname: "pc-a", OS: "linux", Arch: "amd64", Department: "総務部"})
	resp, err := tlsClient(srv.CAPEM(), nil).Post(srv.URL()+wire.PathEnroll, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var er wire.EnrollResponse
	_ = json.NewDecoder(resp.Body).Decode(&er)
	resp.Body.Close()
	cert, _ := tls.X509KeyPair([]byte(er.Certificate), keyPEM)
	now := time.Now().UTC()
	var evs []event.Event
	prev := ""
	for i := range 30 {
		e := event.Event{Agent: er.AgentID, Seq: uint64(i + 1), Time: now.Add(-time.Duration(30-i) * time.Minute), Control: "fileaccess",
			Type: "file.modified", Severity: event.Info, User: `OFFICE\sato`, Object: `D:\人事\a.xlsx`, RegisterID: "PI-0001"}
		if i == 10 {
			e = event.Event{Agent: er.AgentID, Seq: uint64(i + 1), Time: e.Time, Control: "screenlock", Type: "screenlock.status",
				Severity: event.Violation, Attrs: event.Attrs{"status": "fail", "reason_ja": "画面ロックまでの時間が長すぎます"}}
		}
		if err := e.Seal(prev); err != nil {
			t.Fatal(err)
		}
		prev = e.Hash
		evs = append(evs, e)
	}
	bb, _ := json.Marshal(wire.Batch{Events: evs})
	resp, err = tlsClient(srv.CAPEM(), &cert).Post(srv.URL()+wire.PathEvents, "application/json", bytes.NewReader(bb))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("batch: %v %v", err, resp)
	}
	resp.Body.Close()

	get := func(q string) (int, []byte) {
		req, _ := http.NewRequest("GET", srv.URL()+report.Path+"?"+q, nil)
		req.Header.Set("Authorization", "Bearer "+srv.AdminToken())
		resp, err := tlsClient(srv.CAPEM(), nil).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	day := now.In(report.JST).Format(time.DateOnly)
	yesterday := now.In(report.JST).AddDate(0, 0, -1).Format(time.DateOnly)
	period := "from=" + yesterday + "&to=" + day
	st, b := get(period + "&format=json")
	var r report.Report
	if st != 200 || json.Unmarshal(b, &r) != nil {
		t.Fatalf("json: %d %s", st, b)
	}
	if r.EventsByControl["fileaccess"] != 29 || r.EventsByControl["screenlock"] != 1 || len(r.Exceptions) != 1 ||
		len(r.Access) != 1 || r.Access[0].Events != 29 || r.Access[0].Users != 1 {
		t.Errorf("report: %+v", r)
	}
	if st, b := get(period + "&format=html"); st != 200 || !strings.Contains(string(b), "社外秘") || !strings.Contains(string(b), "画面ロックまでの時間が長すぎます") {
		t.Errorf("html: %d", st)
	}
	if st, b := get(period + "&format=csv&department=総務部"); st != 200 || !bytes.HasPrefix(b, []byte("\ufeff")) || !strings.Contains(string(b), `"イベント数","ファイルアクセス","29"`) {
		t.Errorf("csv: %d %s", st, b)
	}
	st, b = get(period + "&format=bundle")
	if st != 200 {
		t.Fatalf("bundle: %d %s", st, b)
	}
	v, _ := note.NewVerifier(srv.LogVerifierKey())
	rep, err := evidence.Verify(bytes.NewReader(b), v, evidence.VerifyOptions{})
	if err != nil || len(rep.Problems) != 0 || rep.Events < 30 {
		t.Errorf("bundle verify: %v %+v", err, rep)
	}
	for _, bad := range []string{"from=2026-13-01&to=2026-12-01", "from=" + day + "&to=" + yesterday, period + "&format=pdf", period + "&colour=red",
		period + "&format=bundle&department=総務部"} {
		if st, _ := get(bad); st != 400 {
			t.Errorf("%s: %d", bad, st)
		}
	}
}
