package register

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mamori/mamori/server/internal/state"
)

// BenchmarkEffective compiles one agent's policy from a register of 500
// entries (2 locations each), 200 media and 100 approvals: what every
// parked long-poll does after a change. "cold" re-reads the registers
// each time (the first agent after a change), "warm" uses the snapshot.
func BenchmarkEffective(b *testing.B) {
	ctx := context.Background()
	st, err := state.Open(ctx, state.Config{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	s, _ := New(Config{State: st, MaxTxnOps: 1 << 20})
	if err := st.PutAgent(ctx, state.Agent{ID: "ag-1", Hostname: "pc-0007", Department: "営業部"}); err != nil {
		b.Fatal(err)
	}
	for i := range 500 {
		e := samplePI(fmt.Sprintf("PI-%04d", i), fmt.Sprintf("PC-%04d", i%50), fmt.Sprintf(`D:\顧客\%d`, i))
		e.Locations = append(e.Locations, Location{Host: "FS-01", Folder: fmt.Sprintf(`E:\share\%d`, i)})
		if _, err := s.Create(ctx, "bench", e); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 200 {
		if _, err := s.Create(ctx, "bench", &MediaEntry{Meta: Meta{ID: fmt.Sprintf("MD-%04d", i)}, Registered: "2026-01-01",
			Product: "USB", Serial: fmt.Sprintf("SN%08d", i), Owner: "総務"}); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 100 {
		a := &Approval{Meta: Meta{ID: fmt.Sprintf("AP-%04d", i)}, Requester: "r", Serial: fmt.Sprintf("SN%08d", i),
			Host: fmt.Sprintf("PC-%04d", i%50), Purpose: "p", From: time.Now(), To: time.Now().Add(time.Hour)}
		if _, err := s.Create(ctx, "bench", a); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Decide(ctx, "mgr", a.ID, true, 0); err != nil {
			b.Fatal(err)
		}
	}
	for _, cold := range []bool{true, false} {
		name := map[bool]string{true: "cold", false: "warm"}[cold]
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if cold {
					s.Invalidate()
				}
				c, err := s.Effective(ctx, "ag-1")
				if err != nil || len(c.Policy.Controls.FileAccess.Folders) != 10 || len(c.Policy.Controls.Media.Approvals) != 2 {
					b.Fatalf("%v %d %d", err, len(c.Policy.Controls.FileAccess.Folders), len(c.Policy.Controls.Media.Approvals))
				}
			}
		})
	}
}

// BenchmarkCSV exports 1,000 approvals (the widest rows with times and
// lists) and parses the file back, without etcd: the CSV cost of an import.
func BenchmarkCSV(b *testing.B) {
	from := time.Date(2026, 10, 1, 9, 0, 0, 0, time.FixedZone("JST", 9*3600))
	es := make([]Entry, 1000)
	for i := range es {
		es[i] = &Approval{Meta: Meta{ID: fmt.Sprintf("AP-%04d", i), Status: StatusReturned}, Requester: "山田 太郎",
			Serial: fmt.Sprintf("SN%08d", i), Host: "PC-0001", Purpose: "展示会, 東京", RegisterIDs: []string{"PI-0001", "PI-0002"},
			From: from, To: from.Add(8 * time.Hour), Approver: "部長", Decided: from.Add(-time.Hour), Result: "返却確認済"}
	}
	for _, enc := range []string{EncUTF8, EncSJIS} {
		b.Run(enc, func(b *testing.B) {
			var buf bytes.Buffer
			for b.Loop() {
				buf.Reset()
				if err := ExportCSV(&buf, KindApprovals, es, LangJA, enc); err != nil {
					b.Fatal(err)
				}
				rows, ce, err := ParseCSV(KindApprovals, buf.Bytes())
				if err != nil || len(ce) != 0 || len(rows) != len(es) {
					b.Fatalf("%d rows, %v %v", len(rows), ce, err)
				}
			}
			b.SetBytes(int64(buf.Len()))
		})
	}
}
