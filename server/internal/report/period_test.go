package report

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mamori/mamori/shared/event"
)

// A report does not certify what has not happened: a period that starts
// after the report is made is refused, one that has not ended says it is
// provisional (as of its making), and only the PCs enrolled by the
// period's end count in its scope.
func TestReportRefusesTheFutureAndMarksAnOpenPeriodProvisional(t *testing.T) {
	now := time.Date(2026, 12, 7, 13, 0, 0, 0, JST)
	f := newFixture(t, now, []Agent{{ID: "a", Hostname: "PC-A", Department: "総務部"}, {ID: "b", Hostname: "PC-B", Department: "総務部"}})
	f.server(event.Event{Control: "server", Type: "agent.enrolled", Object: "a", Time: time.Date(2026, 10, 20, 9, 0, 0, 0, JST)})
	f.server(event.Event{Control: "server", Type: "agent.enrolled", Object: "b", Time: time.Date(2026, 12, 3, 9, 0, 0, 0, JST)})
	f.checkpoint(time.Date(2026, 12, 3, 10, 0, 0, 0, JST))

	ctx := context.Background()
	_, err := f.svc.Build(ctx, Params{From: time.Date(2027, 1, 1, 0, 0, 0, 0, JST), To: time.Date(2027, 1, 31, 0, 0, 0, 0, JST)})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "未来") {
		t.Errorf("a period in the future: %v", err)
	}
	rec := httptest.NewRecorder()
	Handler{S: f.svc}.ServeHTTP(rec, httptest.NewRequest("GET", Path+"?from=2027-01-01&to=2027-01-31&format=json", nil))
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "future") {
		t.Errorf("API, a period in the future: %d %s", rec.Code, rec.Body)
	}

	// December has begun, not ended.
	r := f.build(time.Date(2026, 12, 1, 0, 0, 0, 0, JST), time.Date(2026, 12, 31, 0, 0, 0, 0, JST), "")
	if !r.Provisional || !r.AsOf.Equal(now) || r.Hosts != 2 {
		t.Errorf("December: provisional %v as of %v, %d PCs", r.Provisional, r.AsOf, r.Hosts)
	}
	const mark = "暫定（作成時点 2026-12-07 13:00 まで）"
	var html, csv bytes.Buffer
	if err := r.HTML(&html); err != nil {
		t.Fatal(err)
	}
	if err := r.CSV(&csv); err != nil {
		t.Fatal(err)
	}
	j, _ := json.Marshal(r)
	if !strings.Contains(html.String(), mark) || !strings.Contains(csv.String(), mark) || !strings.Contains(r.Integrity.Statement, mark) ||
		!strings.Contains(string(j), `"provisional":true`) || !strings.Contains(string(j), `"as_of":"2026-12-07T04:00:00Z"`) {
		t.Errorf("December is not marked provisional:\n%s\n%s\n%s", html.String(), csv.String(), j)
	}

	// November has ended; b was enrolled after it, a before.
	r = f.build(time.Date(2026, 11, 1, 0, 0, 0, 0, JST), time.Date(2026, 11, 30, 0, 0, 0, 0, JST), "")
	j, _ = json.Marshal(r)
	if r.Provisional || strings.Contains(string(j), `"as_of"`) || strings.Contains(r.Integrity.Statement, "暫定") || r.Hosts != 1 {
		t.Errorf("November: provisional %v, %d PCs, %s", r.Provisional, r.Hosts, r.Integrity.Statement)
	}
	// Before the server existed: no PC yet.
	if r := f.build(time.Date(2025, 1, 1, 0, 0, 0, 0, JST), time.Date(2025, 1, 31, 0, 0, 0, 0, JST), "総務部"); r.Hosts != 0 {
		t.Errorf("January 2025: %d PCs", r.Hosts)
	}
}

// When the log was empty at the period's start there is nothing to prove
// consistent with: the statement says so, as the 整合性証明 row does,
// rather than claiming a consistency proof was checked.
func TestIntegrityStatementWithoutAStartCheckpoint(t *testing.T) {
	from := time.Date(2026, 11, 1, 0, 0, 0, 0, JST)
	f := newFixture(t, time.Date(2026, 12, 7, 13, 0, 0, 0, JST), nil)
	f.server(event.Event{Control: "server", Type: "server.test", Time: from.Add(time.Hour)})
	f.checkpoint(from.Add(2 * time.Hour))
	r := f.build(from, time.Date(2026, 11, 30, 0, 0, 0, 0, JST), "")
	in := r.Integrity
	if !in.Verified || in.StartSize != 0 || strings.Contains(in.Statement, "整合性証明で確認しました") || !strings.Contains(in.Statement, "期間の開始時にはまだ記録がなかった") {
		t.Errorf("empty start: %+v", in)
	}
}
