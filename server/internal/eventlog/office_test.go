package eventlog

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/mamori/mamori/shared/event"
)

// officeChain seals n file-access events of agent with random Japanese
// paths, a user per PC, 60 registers and attrs: an office's events.
func officeChain(b testing.TB, agent string, n int, seed uint64) []event.Event {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	roots := []string{`D:\共有\顧客データ`, `\\fileserver\営業部\顧客管理`, `\\nas01\人事部\従業員情報`, `E:\経理\請求関係`}
	words := []string{"見積書", "契約書", "顧客名簿", "請求書", "議事録", "申込書", "株式会社山田商事", "有限会社佐藤工業", "田中建設株式会社"}
	types := []string{"file.modified", "file.created", "file.read", "file.renamed", "file.deleted"}
	user := fmt.Sprintf(`OFFICE\user%03d`, rng.IntN(300))
	t0 := time.Now().Add(-time.Minute)
	evs := make([]event.Event, n)
	prev := ""
	for i := range evs {
		e := event.Event{Agent: agent, Seq: uint64(i + 1), Time: t0.Add(time.Duration(i) * time.Microsecond),
			Control: "fileaccess", Type: types[rng.IntN(len(types))], Severity: event.Info, User: user,
			Process:    `C:\Program Files\Microsoft Office\root\Office16\EXCEL.EXE`,
			Object:     fmt.Sprintf(`%s\%s\%s_%04d.xlsx`, roots[rng.IntN(len(roots))], words[rng.IntN(len(words))], words[rng.IntN(len(words))], rng.IntN(10000)),
			RegisterID: fmt.Sprintf("PI-%03d", rng.IntN(60))}
		if err := e.Attrs.UnmarshalJSON([]byte(fmt.Sprintf(`{"size":%d,"ext":"xlsx"}`, rng.IntN(1<<20)))); err != nil {
			b.Fatal(err)
		}
		if err := e.Seal(prev); err != nil {
			b.Fatal(err)
		}
		prev = e.Hash
		evs[i] = e
	}
	return evs
}
