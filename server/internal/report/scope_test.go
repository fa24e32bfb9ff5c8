package report

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/mamori/mamori/server/internal/incident"
	"github.com/mamori/mamori/server/internal/register"
)

// Carry-outs, disposals and incidents of the period are in the report,
// and a department's report holds only its own: carry-outs from its PCs
// or of its 台帳 entries, disposals of its entries, incidents on its PCs
// or touching its entries.
func TestCarryOutsDisposalsAndIncidentsByPeriodAndDepartment(t *testing.T) {
	ctx := context.Background()
	d := newDeps(t)
	store, regs, incs := d.store, d.regs, d.incs
	create := func(e register.Entry) {
		t.Helper()
		if _, err := regs.Create(ctx, "admin", e); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []struct{ id, dept, host string }{{"PI-0001", "営業部", "PC-A"}, {"PI-0002", "総務部", "PC-B"}} {
		create(&register.PIEntry{Meta: register.Meta{ID: p.id}, Name: "名簿 " + p.dept, Purpose: "業務", RecordCount: 10,
			Medium: "electronic", Owner: "山田", Locations: []register.Location{{Host: p.host, Folder: `D:\名簿`}},
			Department: p.dept, Retention: "5y", DisposalMethod: "データ消去", LastReviewed: "2026-10-01"})
	}
	from := time.Date(2026, 11, 1, 0, 0, 0, 0, JST)
	last := time.Date(2026, 11, 30, 0, 0, 0, 0, JST)
	for _, a := range []struct {
		id, host string
		regs     []string
		at       time.Time
	}{
		{"AP-0001", "PC-A", nil, from.AddDate(0, 0, 3)},                 // 営業部's PC
		{"AP-0002", "pc-b", nil, from.AddDate(0, 0, 4)},                 // 総務部's PC (hostnames match in any case)
		{"AP-0003", "PC-X", []string{"PI-0001"}, from.AddDate(0, 0, 5)}, // another PC, 営業部's entry
		{"AP-0004", "PC-A", nil, from.AddDate(0, -2, 0)},                // before the period
	} {
		create(&register.Approval{Meta: register.Meta{ID: a.id, Status: register.StatusRequested}, Requester: "佐藤",
			Serial: "4C5300012345", Host: a.host, Purpose: "顧客訪問", RegisterIDs: a.regs, From: a.at, To: a.at.Add(8 * time.Hour)})
	}
	for _, d := range []struct{ id, date, reg string }{
		{"DS-0001", "2026-11-10", "PI-0001"}, {"DS-0002", "2026-11-11", "PI-0002"}, {"DS-0003", "2026-12-01", "PI-0001"},
	} {
		create(&register.Disposal{Meta: register.Meta{ID: d.id, Status: register.StatusActive}, Date: d.date, Item: "紙の名簿",
			RegisterID: d.reg, Method: "シュレッダー", Responsible: "山田"})
	}
	for _, p := range []struct{ title, entry string }{{"営業部の誤送付", "PI-0001"}, {"総務部の紛失", "PI-0002"}} {
		in, err := incs.Open(ctx, "admin", incident.OpenRequest{Title: p.title, DiscoveredAt: from.AddDate(0, 0, 7)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := incs.Update(ctx, "admin", in.ID, incident.Update{Revision: in.Revision, Status: in.Status, Title: in.Title,
			DiscoveredAt: in.DiscoveredAt, AddEntries: []string{p.entry}}); err != nil {
			t.Fatal(err)
		}
	}
	_, vkey, _ := note.GenerateKey(rand.Reader, "mamori/test")
	v, _ := note.NewVerifier(vkey)
	agents := []Agent{{ID: "a", Hostname: "PC-A", Department: "営業部"}, {ID: "b", Hostname: "PC-B", Department: "総務部"}}
	svc, err := New(Config{Store: store, Registers: regs, Incidents: incs, Verifier: v,
		Agents: func(context.Context) ([]Agent, error) { return agents, nil }})
	if err != nil {
		t.Fatal(err)
	}
	ids := func(r *Report) string {
		var co, ds, in []string
		for _, a := range r.CarryOuts {
			co = append(co, a.ID)
		}
		for _, d := range r.Disposals {
			ds = append(ds, d.ID)
		}
		for _, i := range r.Incidents {
			in = append(in, i.Title)
		}
		slices.Sort(co)
		slices.Sort(ds)
		slices.Sort(in)
		return fmt.Sprint(co, ds, in)
	}
	for dept, want := range map[string]string{
		"":    "[AP-0001 AP-0002 AP-0003] [DS-0001 DS-0002] [営業部の誤送付 総務部の紛失]",
		"営業部": "[AP-0001 AP-0003] [DS-0001] [営業部の誤送付]",
		"総務部": "[AP-0002] [DS-0002] [総務部の紛失]",
		"経理部": "[] [] []",
	} {
		r, err := svc.Build(ctx, Params{From: from, To: last, Department: dept})
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(r); got != want {
			t.Errorf("department %q: %s, want %s", dept, got, want)
		}
	}
}
