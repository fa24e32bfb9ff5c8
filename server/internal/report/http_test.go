package report

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The API refuses a department no PC and no 台帳 entry has, as the 監査報告
// page does, rather than answering an empty report that says the log is
// intact.
func TestAPIRefusesAnUnknownDepartment(t *testing.T) {
	f := newFixture(t, time.Date(2026, 12, 7, 13, 0, 0, 0, JST), []Agent{{ID: "a", Hostname: "PC-A", Department: "総務部"}})
	f.entry("PI-0001", "営業部") // a department with 台帳 entries and no PC
	get := func(dept string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		Handler{S: f.svc}.ServeHTTP(rec, httptest.NewRequest("GET", Path+"?from=2026-11-01&to=2026-11-30&format=json&department="+url.QueryEscape(dept), nil))
		return rec
	}
	if rec := get("存在しない部"); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "存在しない部") {
		t.Errorf("unknown department: %d %s", rec.Code, rec.Body)
	}
	for _, d := range []string{"総務部", "営業部", ""} {
		if rec := get(d); rec.Code != http.StatusOK {
			t.Errorf("department %q: %d %s", d, rec.Code, rec.Body)
		}
	}
}
