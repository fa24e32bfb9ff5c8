package api_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/app"
	"github.com/mamori/mamori/server/internal/pki"
	"github.com/mamori/mamori/server/internal/state"
	"github.com/mamori/mamori/shared/policy"
	"github.com/mamori/mamori/shared/wire"
)

// realServer starts a full Mamori server (etcd, SQLite, TLS) on loopback.
func realServer(t *testing.T) *app.Server {
	t.Helper()
	srv, err := app.Start(context.Background(), app.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0",
		Hostnames: []string{"127.0.0.1"}, Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func tlsClient(caPEM []byte, cert *tls.Certificate) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

// enrollAgent enrolls like mamori-agent does and returns its mTLS client.
func enrollAgent(t *testing.T, srv *app.Server, host string) *http.Client {
	t.Helper()
	keyPEM, csrPEM, err := pki.NewKeyAndCSR(host)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(wire.EnrollRequest{Token: srv.EnrollToken(), CSR: string(csrPEM), Hostname: host, OS: "windows", Arch: "amd64"})
	resp, err := tlsClient(srv.CAPEM(), nil).Post(srv.URL()+wire.PathEnroll, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var er wire.EnrollResponse
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&er) != nil {
		t.Fatalf("enroll: %d", resp.StatusCode)
	}
	cert, err := tls.X509KeyPair([]byte(er.Certificate), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return tlsClient(srv.CAPEM(), &cert)
}

type adminClient struct {
	t     *testing.T
	base  string
	token string
	c     *http.Client
}

func newAdmin(t *testing.T, srv *app.Server, token string) *adminClient {
	return &adminClient{t: t, base: srv.URL(), token: token, c: tlsClient(srv.CAPEM(), nil)}
}

// do sends body (JSON-encoded unless []byte) and decodes a JSON answer into out.
func (a *adminClient) do(method, path string, hdr map[string]string, body, out any) (int, http.Header, []byte) {
	a.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, a.base+path, rd)
	req.Header.Set("Authorization", "Bearer "+a.token)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := a.c.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			a.t.Fatalf("%s %s: %v: %s", method, path, err, raw)
		}
	}
	return resp.StatusCode, resp.Header, raw
}

// poll is one agent policy long-poll.
func poll(t *testing.T, c *http.Client, base, version string, wait time.Duration) (int, wire.PolicyResponse, *policy.Policy) {
	t.Helper()
	resp, err := c.Get(base + wire.PathPolicy + "?" + url.Values{"version": {version}, "wait": {wait.String()}}.Encode())
	if err != nil {
		t.Error(err)
		return 0, wire.PolicyResponse{}, nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return resp.StatusCode, wire.PolicyResponse{}, nil
	}
	var pr wire.PolicyResponse
	if err := json.NewDecoder(resp.Body).Decode(&pr); err != nil {
		t.Error(err)
	}
	p, err := policy.ParseJSON(pr.Policy)
	if err != nil {
		t.Errorf("served policy does not parse: %v", err)
	}
	return 200, pr, p
}

func piEntry(id, host, folder string) map[string]any {
	return map[string]any{"id": id, "name": "顧客名簿", "purpose": "商品発送", "record_count": 1250, "medium": "electronic",
		"locations": []map[string]string{{"host": host, "folder": folder}}, "owner": "山田 太郎", "department": "営業部",
		"retention": "5y", "disposal_method": "データ消去"}
}

func TestRegisterEntryReachesAgentPolicyWithinASecond(t *testing.T) {
	srv := realServer(t)
	agent := enrollAgent(t, srv, "PC-SALES01")
	other := enrollAgent(t, srv, "PC-OTHER")
	admin := newAdmin(t, srv, srv.AdminToken())

	st, pr, p := poll(t, agent, srv.URL(), "", 0)
	if st != 200 || p.Name != "pmark-baseline" || len(p.Controls.FileAccess.Folders) != 0 {
		t.Fatalf("initial policy %d %+v", st, p)
	}
	_, prOther, _ := poll(t, other, srv.URL(), "", 0)

	type result struct {
		at time.Time
		p  *policy.Policy
		pr wire.PolicyResponse
	}
	got := make(chan result, 1)
	go func() {
		_, pr2, p2 := poll(t, agent, srv.URL(), pr.Version, 30*time.Second)
		got <- result{time.Now(), p2, pr2}
	}()
	time.Sleep(300 * time.Millisecond) // the poll is parked
	sent := time.Now()
	if st, _, raw := admin.do("POST", "/api/v1/register", nil, piEntry("PI-0007", "pc-sales01", `D:\顧客`), nil); st != 201 {
		t.Fatalf("create: %d %s", st, raw)
	}
	var r result
	select {
	case r = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("long-poll not woken")
	}
	if d := r.at.Sub(sent); d > time.Second {
		t.Errorf("long-poll woke after %v, want within 1s", d)
	}
	if f := r.p.Controls.FileAccess.Folders; len(f) != 1 || f[0].Path != `D:\顧客` || f[0].RegisterID != "PI-0007" {
		t.Fatalf("fileaccess.folders %+v", f)
	}
	if f := r.p.Controls.Backup.Folders; len(f) != 1 || f[0].RegisterID != "PI-0007" {
		t.Fatalf("backup.folders %+v", f)
	}
	// The other host's policy did not change.
	if st, _, _ := poll(t, other, srv.URL(), prOther.Version, 200*time.Millisecond); st != http.StatusNotModified {
		t.Fatalf("other host's policy changed: %d", st)
	}

	// Admins see the same compiled policy and where it came from.
	var ids struct {
		Agents []struct{ ID, Hostname string } `json:"agents"`
	}
	admin.do("GET", "/api/v1/agents", nil, nil, &ids)
	var shown struct {
		Source, Version string
	}
	for _, ag := range ids.Agents {
		if ag.Hostname == "PC-SALES01" {
			if st, _, raw := admin.do("GET", "/api/v1/agents/"+ag.ID+"/policy", nil, nil, &shown); st != 200 {
				t.Fatalf("agent policy: %d %s", st, raw)
			}
		}
	}
	if shown.Source != "pmark-baseline" || shown.Version != r.pr.Version {
		t.Fatalf("admin view %+v, agent got version %s", shown, r.pr.Version)
	}

	// The change is an event of the server stream with the register id.
	var q struct {
		Events []struct {
			Control, Type, User string
			RegisterID          string `json:"register_id"`
		} `json:"events"`
	}
	if st, _, raw := admin.do("GET", "/api/v1/events?agent=server&register_id=PI-0007", nil, nil, &q); st != 200 {
		t.Fatalf("events: %d %s", st, raw)
	}
	if len(q.Events) != 1 || q.Events[0].Type != "register.created" || q.Events[0].Control != "register" || q.Events[0].User != "admin" {
		t.Fatalf("server events %+v", q.Events)
	}
}

func TestApprovalWindowOpensAndCloses(t *testing.T) {
	srv := realServer(t)
	agent := enrollAgent(t, srv, "PC-SALES01")
	admin := newAdmin(t, srv, srv.AdminToken())
	ctx := context.Background()
	mgrTok, _ := state.NewToken()
	audTok, _ := state.NewToken()
	if err := srv.State().EnsureAPIToken(ctx, mgrTok, "manager1", state.RoleManager); err != nil {
		t.Fatal(err)
	}
	if err := srv.State().EnsureAPIToken(ctx, audTok, "auditor1", state.RoleAuditor); err != nil {
		t.Fatal(err)
	}
	mgr, aud := newAdmin(t, srv, mgrTok), newAdmin(t, srv, audTok)

	now := time.Now()
	req := map[string]any{"requester": "山田", "serial": "AA00123456", "host": "PC-SALES01", "purpose": "展示会デモ",
		"from": now.Add(-time.Second).Format(time.RFC3339Nano), "to": now.Add(2500 * time.Millisecond).Format(time.RFC3339Nano)}
	if st, _, _ := aud.do("POST", "/api/v1/approvals", nil, req, nil); st != http.StatusForbidden {
		t.Fatalf("auditor created an approval: %d", st)
	}
	var ap struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	// Managers keep the registers (as in the web UI): they may file a request.
	if st, _, raw := mgr.do("POST", "/api/v1/approvals", nil, req, &ap); st != 201 || ap.Status != "requested" {
		t.Fatalf("create approval: %d %s", st, raw)
	}
	_, pr, p := poll(t, agent, srv.URL(), "", 0)
	if len(p.Controls.Media.Approvals) != 0 {
		t.Fatal("requested window already in the policy")
	}
	if st, _, _ := aud.do("POST", "/api/v1/approvals/"+ap.ID+"/approve", nil, nil, nil); st != http.StatusForbidden {
		t.Fatalf("auditor approved: %d", st)
	}
	if st, _, raw := mgr.do("POST", "/api/v1/approvals/"+ap.ID+"/approve", nil, nil, nil); st != 200 {
		t.Fatalf("manager approve: %d %s", st, raw)
	}
	st, pr, p := poll(t, agent, srv.URL(), pr.Version, 10*time.Second)
	if st != 200 || len(p.Controls.Media.Approvals) != 1 || p.Controls.Media.Approvals[0].Serial != "AA00123456" {
		t.Fatalf("approved window not served: %d %+v", st, p)
	}
	// The window closes: the parked long-poll wakes by itself and the approval is gone.
	st, _, p = poll(t, agent, srv.URL(), pr.Version, 20*time.Second)
	if st != 200 || len(p.Controls.Media.Approvals) != 0 {
		t.Fatalf("closed window still served: %d %+v", st, p)
	}
	if time.Now().Before(now.Add(2500 * time.Millisecond)) {
		t.Fatal("window removed before it ended")
	}
	var hist struct {
		History []struct{ Action, By string } `json:"history"`
	}
	admin.do("GET", "/api/v1/approvals/"+ap.ID+"/history", nil, nil, &hist)
	if len(hist.History) != 2 || hist.History[1].Action != "approved" || hist.History[1].By != "manager1" {
		t.Fatalf("approval history %+v", hist.History)
	}
}

// A manager's API token may do what the web UI lets a manager do: keep the
// registers (create, edit, retire, import) and decide carry-outs; policies,
// assignments and tokens stay with admins; auditors only read.
func TestManagerKeepsRegistersThroughTheAPI(t *testing.T) {
	srv := realServer(t)
	ctx := context.Background()
	mgrTok, _ := state.NewToken()
	audTok, _ := state.NewToken()
	if err := srv.State().EnsureAPIToken(ctx, mgrTok, "hogo", state.RoleManager); err != nil {
		t.Fatal(err)
	}
	if err := srv.State().EnsureAPIToken(ctx, audTok, "kansa", state.RoleAuditor); err != nil {
		t.Fatal(err)
	}
	mgr, aud := newAdmin(t, srv, mgrTok), newAdmin(t, srv, audTok)
	if st, _, raw := aud.do("POST", "/api/v1/register", nil, piEntry("PI-0001", "PC-A", `D:\顧客`), nil); st != http.StatusForbidden {
		t.Fatalf("auditor wrote a register: %d %s", st, raw)
	}
	if st, _, raw := mgr.do("POST", "/api/v1/register", nil, piEntry("PI-0001", "PC-A", `D:\顧客`), nil); st != 201 {
		t.Fatalf("manager create: %d %s", st, raw)
	}
	_, h, _ := mgr.do("GET", "/api/v1/register/PI-0001", nil, nil, nil)
	e := piEntry("PI-0001", "PC-A", `D:\顧客`)
	e["record_count"] = 1300
	if st, _, raw := mgr.do("PUT", "/api/v1/register/PI-0001", map[string]string{"If-Match": h.Get("ETag")}, e, nil); st != 200 {
		t.Fatalf("manager update: %d %s", st, raw)
	}
	for _, c := range []struct{ method, path string }{
		{"PUT", "/api/v1/policies/default"},
		{"PUT", "/api/v1/assignments/agents/x"},
		{"POST", "/api/v1/tokens"},
	} {
		st, _, raw := mgr.do(c.method, c.path, nil, map[string]any{}, nil)
		if st != http.StatusForbidden || !strings.Contains(string(raw), "admin") {
			t.Errorf("manager %s %s: %d %s", c.method, c.path, st, raw)
		}
	}
	var hist struct {
		History []struct{ By string }
	}
	mgr.do("GET", "/api/v1/register/PI-0001/history", nil, nil, &hist)
	if len(hist.History) != 2 || hist.History[1].By != "hogo" {
		t.Fatalf("history does not name the manager: %+v", hist)
	}
}

func TestStaleRevisionGets409(t *testing.T) {
	srv := realServer(t)
	admin := newAdmin(t, srv, srv.AdminToken())
	if st, _, raw := admin.do("POST", "/api/v1/media", nil, map[string]any{"id": "MD-0001", "registered": "2026-01-10",
		"product": "BUFFALO RUF3-K16GA", "serial": "AA00123456", "owner": "総務部"}, nil); st != 201 {
		t.Fatalf("create: %d %s", st, raw)
	}
	_, h, _ := admin.do("GET", "/api/v1/media/MD-0001", nil, nil, nil)
	etag := h.Get("ETag")
	upd := func(owner string) int {
		st, _, _ := admin.do("PUT", "/api/v1/media/MD-0001", map[string]string{"If-Match": etag}, map[string]any{
			"registered": "2026-01-10", "product": "BUFFALO RUF3-K16GA", "serial": "AA00123456", "owner": owner}, nil)
		return st
	}
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := upd(fmt.Sprintf("editor-%d", i))
			mu.Lock()
			codes[c]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if codes[200] != 1 || codes[409] != 3 {
		t.Fatalf("status codes %v, want one 200 and three 409", codes)
	}
	var cur struct {
		Owner    string `json:"owner"`
		Revision int64  `json:"revision"`
	}
	admin.do("GET", "/api/v1/media/MD-0001", nil, nil, &cur)
	if !strings.HasPrefix(cur.Owner, "editor-") {
		t.Fatalf("owner %q", cur.Owner)
	}
	if upd("late") != 409 {
		t.Fatal("stale If-Match accepted")
	}
	admin.do("GET", "/api/v1/media/MD-0001", nil, nil, &cur)
	if cur.Owner == "late" {
		t.Fatal("stale update overwrote the entry")
	}
	if st, _, _ := admin.do("PUT", "/api/v1/media/MD-0001", nil, map[string]any{"registered": "2026-01-10",
		"product": "x", "serial": "AA00123456", "owner": "o"}, nil); st != 400 {
		t.Fatalf("update without revision: %d", st)
	}
	// Delete is a recorded retirement.
	if st, _, _ := admin.do("DELETE", "/api/v1/media/MD-0001", nil, nil, nil); st != 200 {
		t.Fatalf("delete: %d", st)
	}
	var kept struct{ Status string }
	if st, _, _ := admin.do("GET", "/api/v1/media/MD-0001", nil, nil, &kept); st != 200 || kept.Status != "retired" {
		t.Fatalf("retired entry: %d %+v", st, kept)
	}
}

func TestCSVRoundTripBetweenServers(t *testing.T) {
	a := realServer(t)
	adm := newAdmin(t, a, a.AdminToken())
	e1 := piEntry("PI-0001", "PC-SALES01", `D:\顧客\名簿`)
	e1["access"] = []string{"山田 太郎", "佐藤 花子"}
	e2 := piEntry("PI-0002", "PC-HR01", `C:\人事`)
	e2["sensitive"], e2["retention"], e2["disposal_method"] = true, "indefinite", ""
	for _, e := range []map[string]any{e1, e2} {
		if st, _, raw := adm.do("POST", "/api/v1/register", nil, e, nil); st != 201 {
			t.Fatalf("create: %d %s", st, raw)
		}
	}
	for _, enc := range []string{"utf8", "sjis"} {
		_, _, first := adm.do("GET", "/api/v1/register/export?lang=ja&encoding="+enc, nil, nil, nil)
		b := realServer(t)
		bdm := newAdmin(t, b, b.AdminToken())
		if st, _, raw := bdm.do("POST", "/api/v1/register/import", nil, first, nil); st != 200 {
			t.Fatalf("%s import: %d %s", enc, st, raw)
		}
		_, _, second := bdm.do("GET", "/api/v1/register/export?lang=ja&encoding="+enc, nil, nil, nil)
		if !bytes.Equal(first, second) {
			t.Fatalf("%s round trip differs:\n%q\n%q", enc, first, second)
		}
	}
	// One bad row: nothing imported, the answer names the row and field.
	bad := "\ufeffid,name,purpose,medium,locations,owner,department,retention,disposal_method\r\n" +
		"PI-0100,見積,送付,electronic,PC-01:D:\\a,高橋,営業部,3y,消去\r\n" +
		"PI-0101,請求,請求,electronic,PC-01:relative,高橋,営業部,3y,消去\r\n"
	st, _, raw := adm.do("POST", "/api/v1/register/import", nil, []byte(bad), nil)
	var ans struct {
		Errors []struct {
			Row   int
			Field string
		}
	}
	_ = json.Unmarshal(raw, &ans)
	if st != 400 || len(ans.Errors) != 1 || ans.Errors[0].Row != 3 || ans.Errors[0].Field != "locations[0].folder" {
		t.Fatalf("bad import: %d %s", st, raw)
	}
	var list struct {
		Entries []struct{ ID string } `json:"entries"`
	}
	adm.do("GET", "/api/v1/register", nil, nil, &list)
	if len(list.Entries) != 2 {
		t.Fatalf("bad import stored rows: %+v", list.Entries)
	}
}

// TestCSVOtherRegistersBetweenServers: media, carry-out approvals and
// disposals export, import into a fresh server and export again
// byte-identical (UTF-8 and CP932); one bad row imports nothing and the
// answer names row and field; an approved window still open is refused.
func TestCSVOtherRegistersBetweenServers(t *testing.T) {
	a := realServer(t)
	adm := newAdmin(t, a, a.AdminToken())
	now := time.Now().UTC().Truncate(time.Second)
	post := func(path string, body any) map[string]any {
		t.Helper()
		var out map[string]any
		if st, _, raw := adm.do("POST", path, nil, body, &out); st != 201 && st != 200 {
			t.Fatalf("POST %s: %d %s", path, st, raw)
		}
		return out
	}
	post("/api/v1/register", piEntry("PI-0001", "PC-SALES01", `D:\顧客`))
	post("/api/v1/media", map[string]any{"id": "MD-0001", "registered": "2026-01-10", "product": "BUFFALO, 32GB",
		"serial": "AA00123456", "vendor_id": "0411", "product_id": "01f0", "owner": "山田 太郎", "encrypted": true})
	ap := func(id string, from, to time.Time) {
		post("/api/v1/approvals", map[string]any{"id": id, "requester": "山田 太郎", "serial": "AA00123456", "host": "PC-SALES01",
			"purpose": "展示会", "register_ids": []string{"PI-0001"}, "from": from.Format(time.RFC3339), "to": to.Format(time.RFC3339)})
	}
	ap("AP-0001", now.Add(-time.Hour), now.Add(time.Hour))
	post("/api/v1/approvals/AP-0001/approve", nil)
	var cur map[string]any
	_, hdr, _ := adm.do("GET", "/api/v1/approvals/AP-0001", nil, nil, &cur)
	cur["status"], cur["result"] = "returned", "返却確認済"
	if st, _, raw := adm.do("PUT", "/api/v1/approvals/AP-0001", map[string]string{"If-Match": hdr.Get("ETag")}, cur, nil); st != 200 {
		t.Fatalf("return: %d %s", st, raw)
	}
	ap("AP-0002", now.Add(24*time.Hour), now.Add(26*time.Hour)) // requested
	post("/api/v1/disposals", map[string]any{"id": "DS-0001", "date": "2026-10-01", "item": "顧客名簿(紙)", "register_id": "PI-0001",
		"method": "溶解", "responsible": "鈴木"})

	for _, enc := range []string{"utf8", "sjis"} {
		b := realServer(t)
		bdm := newAdmin(t, b, b.AdminToken())
		_, _, pi := adm.do("GET", "/api/v1/register/export?encoding="+enc, nil, nil, nil)
		if st, _, raw := bdm.do("POST", "/api/v1/register/import", nil, pi, nil); st != 200 {
			t.Fatalf("PI import: %d %s", st, raw)
		}
		for _, p := range []string{"media", "approvals", "disposals"} {
			st, h, first := adm.do("GET", "/api/v1/"+p+"/export?lang=ja&encoding="+enc, nil, nil, nil)
			if st != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/csv") || !strings.Contains(h.Get("Content-Disposition"), ".csv") {
				t.Fatalf("%s export: %d %v", p, st, h)
			}
			var ans struct{ Rows, Changed int }
			if st, _, raw := bdm.do("POST", "/api/v1/"+p+"/import", nil, first, &ans); st != 200 || ans.Changed == 0 {
				t.Fatalf("%s %s import: %d %s", p, enc, st, raw)
			}
			_, _, second := bdm.do("GET", "/api/v1/"+p+"/export?lang=ja&encoding="+enc, nil, nil, nil)
			if !bytes.Equal(first, second) {
				t.Fatalf("%s %s round trip differs:\n%q\n%q", p, enc, first, second)
			}
		}
	}

	// One bad row per register: 400 naming row and field; nothing stored.
	for _, tc := range []struct{ path, csv, field string }{
		{"media", "\ufeff管理番号,登録日,製品名,シリアル番号,管理責任者\r\nMD-0100,2026-01-10,USB,BB00123456,高橋\r\nMD-0101,2026-02-30,USB,BB00123457,高橋\r\n", "registered"},
		{"approvals", "\ufeffid,requester,serial,host,purpose,from,to\r\nAP-0100,高橋,BB00123456,PC-01,訪問,2026-10-01T09:00:00Z,2026-10-01T18:00:00Z\r\n" +
			"AP-0101,高橋,BB00123456,PC 01,訪問,2026-10-01T09:00:00Z,2026-10-01T18:00:00Z\r\n", "host"},
		{"disposals", "\ufeffid,date,item,method,responsible\r\nDS-0100,2026-10-01,名簿,溶解,鈴木\r\nDS-0101,2026-10-01,名簿,,鈴木\r\n", "method"},
		{"approvals", "\ufeffid,status,requester,serial,host,purpose,from,to,approver\r\nAP-0100,requested,高橋,BB00123456,PC-01,訪問,2026-10-01T09:00:00Z,2026-10-01T18:00:00Z,\r\n" +
			"AP-0101,approved,高橋,BB00123456,PC-01,訪問," + now.Format(time.RFC3339) + "," + now.Add(time.Hour).Format(time.RFC3339) + ",部長\r\n", "status"},
	} {
		var before struct{ Entries []any }
		adm.do("GET", "/api/v1/"+tc.path, nil, nil, &before)
		st, _, raw := adm.do("POST", "/api/v1/"+tc.path+"/import", nil, []byte(tc.csv), nil)
		var ans struct {
			Errors []struct {
				Row   int
				Field string
			}
		}
		_ = json.Unmarshal(raw, &ans)
		if st != 400 || len(ans.Errors) != 1 || ans.Errors[0].Row != 3 || ans.Errors[0].Field != tc.field {
			t.Fatalf("%s bad import: %d %s", tc.path, st, raw)
		}
		var after struct{ Entries []any }
		adm.do("GET", "/api/v1/"+tc.path, nil, nil, &after)
		if len(after.Entries) != len(before.Entries) {
			t.Fatalf("%s bad import stored rows: %d -> %d", tc.path, len(before.Entries), len(after.Entries))
		}
	}
}

// A register change's event holds what changed, field by field, and the
// hash of the entry after it: the hash-chained log is the evidence, and
// etcd's history, which an insider can rewrite, is not. An export of a
// register through the API (the CLI's path) is recorded as the web's is.
func TestRegisterChangeEventSaysWhatChanged(t *testing.T) {
	srv := realServer(t)
	admin := newAdmin(t, srv, srv.AdminToken())
	if st, _, raw := admin.do("POST", "/api/v1/media", nil, map[string]any{"id": "MD-0001", "registered": "2026-01-10",
		"product": "BUFFALO RUF3-K16GA", "serial": "AA00123456", "owner": "総務部"}, nil); st != 201 {
		t.Fatalf("create: %d %s", st, raw)
	}
	_, h, _ := admin.do("GET", "/api/v1/media/MD-0001", nil, nil, nil)
	if st, _, raw := admin.do("PUT", "/api/v1/media/MD-0001", map[string]string{"If-Match": h.Get("ETag")}, map[string]any{
		"registered": "2026-01-10", "product": "BUFFALO RUF3-K16GA", "serial": "AA00123456", "owner": "経理部 佐藤"}, nil); st != 200 {
		t.Fatalf("update: %d %s", st, raw)
	}
	var q struct {
		Events []struct {
			Type  string
			Attrs map[string]any
		} `json:"events"`
	}
	if st, _, raw := admin.do("GET", "/api/v1/events?agent=server&register_id=MD-0001", nil, nil, &q); st != 200 {
		t.Fatalf("events: %d %s", st, raw)
	}
	var upd map[string]any
	for _, e := range q.Events {
		if e.Type == "register.updated" {
			upd = e.Attrs
		}
	}
	if upd == nil {
		t.Fatalf("no register.updated: %+v", q.Events)
	}
	if fmt.Sprint(upd["changed"]) != "[owner]" || fmt.Sprint(upd["before"]) != "map[owner:総務部]" || fmt.Sprint(upd["after"]) != "map[owner:経理部 佐藤]" {
		t.Fatalf("what changed: %v", upd)
	}
	if s, _ := upd["entry_sha256"].(string); len(s) != 64 {
		t.Fatalf("entry_sha256: %v", upd)
	}

	// Saving it again as it is changes nothing and records nothing.
	_, h, _ = admin.do("GET", "/api/v1/media/MD-0001", nil, nil, nil)
	st, h2, raw := admin.do("PUT", "/api/v1/media/MD-0001", map[string]string{"If-Match": h.Get("ETag")}, map[string]any{
		"registered": "2026-01-10", "product": "BUFFALO RUF3-K16GA", "serial": "AA00123456", "owner": "経理部 佐藤"}, nil)
	if st != 200 || h2.Get("ETag") != h.Get("ETag") || !strings.Contains(string(raw), `"version":2`) {
		t.Fatalf("unchanged update: %d ETag %s -> %s %s", st, h.Get("ETag"), h2.Get("ETag"), raw)
	}
	q.Events = nil
	if st, _, raw := admin.do("GET", "/api/v1/events?agent=server&register_id=MD-0001", nil, nil, &q); st != 200 {
		t.Fatalf("events: %d %s", st, raw)
	}
	if len(q.Events) != 2 {
		t.Fatalf("an update that changed nothing was recorded: %+v", q.Events)
	}

	if st, _, raw := admin.do("GET", "/api/v1/media/export?lang=ja", nil, nil, nil); st != 200 {
		t.Fatalf("export: %d %s", st, raw)
	}
	q.Events = nil
	if st, _, raw := admin.do("GET", "/api/v1/events?agent=server&type=export.made", nil, nil, &q); st != 200 {
		t.Fatalf("events: %d %s", st, raw)
	}
	if len(q.Events) != 1 || fmt.Sprint(q.Events[0].Attrs["entries"]) != "1" || q.Events[0].Attrs["lang"] != "ja" {
		t.Fatalf("export not recorded: %+v", q.Events)
	}
}

// TestDisposalOfAMediumMarksItDisposed: a 廃棄記録 that names a medium makes
// it 廃棄済 in the same write, so its serial leaves the agents' allowed
// list and cannot be carried out; both changes are events, the medium's
// naming the disposal as its cause.
func TestDisposalOfAMediumMarksItDisposed(t *testing.T) {
	a := realServer(t)
	adm := newAdmin(t, a, a.AdminToken())
	if st, _, raw := adm.do("POST", "/api/v1/media", nil, map[string]any{"id": "MD-0009", "registered": "2025-04-01",
		"product": "I-O DATA EU3", "serial": "OLD0000777", "owner": "佐藤"}, nil); st != 201 {
		t.Fatalf("media: %d %s", st, raw)
	}
	if st, _, raw := adm.do("POST", "/api/v1/disposals", nil, map[string]any{"date": "2026-12-07", "item": "USBメモリ (OLD0000777)",
		"register_id": "MD-0009", "method": "物理破壊", "responsible": "鈴木"}, nil); st != 201 {
		t.Fatalf("disposal: %d %s", st, raw)
	}
	var m map[string]any
	adm.do("GET", "/api/v1/media/MD-0009", nil, nil, &m)
	if m["status"] != "disposed" {
		t.Fatalf("medium after its disposal: %v", m["status"])
	}
	now := time.Now().UTC()
	if st, _, _ := adm.do("POST", "/api/v1/approvals", nil, map[string]any{"requester": "鈴木", "serial": "OLD0000777", "host": "PC-01",
		"purpose": "x", "from": now.Add(time.Minute).Format(time.RFC3339), "to": now.Add(48 * time.Hour).Format(time.RFC3339)}, nil); st != 400 {
		t.Errorf("carry-out of the disposed stick: %d, want 400", st)
	}
	var evs struct {
		Events []struct {
			Type, Object string
			Attrs        map[string]any
		}
	}
	adm.do("GET", "/api/v1/events?control=register&limit=100", nil, nil, &evs)
	var sawMedium bool
	for _, e := range evs.Events {
		if e.Object == "media/MD-0009" && e.Type == "register.updated" {
			c, _ := e.Attrs["cause"].(string)
			sawMedium = strings.HasPrefix(c, "disposals/DS-")
		}
	}
	if !sawMedium {
		t.Errorf("no event for the medium's change with its cause: %+v", evs.Events)
	}
}
