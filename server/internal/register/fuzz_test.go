package register

import (
	"testing"
	"time"
)

var fuzzNow = time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)

// FuzzParseCSV reads arbitrary uploads as each register's CSV: a refusal or
// rows, never a panic, and every row's entry validates without panicking.
func FuzzParseCSV(f *testing.F) {
	for _, s := range []string{"\ufeff管理番号,個人情報の名称,利用目的,媒体,管理責任者,部署,保管期間,廃棄方法\r\nPI-0001,名簿,発送,紙,山田,営業部,5y,溶解\r\n",
		"id,status,requester,serial,host,purpose,from,to\r\nAP-1,requested,a,b,c,d,2026-01-01T00:00:00Z,2026-01-02T00:00:00Z\r\n",
		"\"'=x\",\"\"\"\r\n", "a,b\r\n\"unterminated", "\x82\xa0\x82\xa2,\r\n"} {
		f.Add(uint8(0), []byte(s))
	}
	kinds := []Kind{KindPI, KindMedia, KindApprovals, KindDisposals}
	f.Fuzz(func(t *testing.T, k uint8, b []byte) {
		rows, _, err := ParseCSV(kinds[int(k)%len(kinds)], b)
		if err != nil {
			return
		}
		for _, r := range rows {
			_ = Validate(r.Entry, fuzzNow)
		}
	})
}
