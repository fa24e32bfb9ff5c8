package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/wire"
)

// Words of an office's file shares: the events an office agent sends are
// file accesses under register folders, with Japanese names that differ in
// every event (which is what makes index inserts random, not sequential).
var (
	shareRoots = []string{`D:\共有\顧客データ`, `\\fileserver\営業部\顧客管理`, `C:\Users\%s\Documents\個人情報`,
		`\\nas01\人事部\従業員情報`, `E:\経理\請求関係`}
	folders = []string{"2024年度", "2025年度", "2026年度", "見積書", "契約書", "請求書", "顧客名簿", "申込書",
		"履歴書", "アンケート回答", "名刺スキャン", "問い合わせ", "保守契約", "東京本社", "大阪支店", "名古屋営業所"}
	companies = []string{"株式会社山田商事", "有限会社佐藤工業", "田中建設株式会社", "鈴木物産株式会社", "高橋電機株式会社",
		"合同会社伊藤デザイン", "渡辺食品株式会社", "中村運輸株式会社", "小林印刷所", "加藤不動産株式会社"}
	fileKinds = []string{"見積書_%s_%04d.xlsx", "契約書_%s_%04d.pdf", "顧客名簿_%s_%04d.csv", "請求書_%s_%04d.xlsx",
		"議事録_%s_%04d.docx", "申込書_%s_%04d.pdf"}
	families  = []string{"sato", "suzuki", "takahashi", "tanaka", "watanabe", "ito", "yamamoto", "nakamura", "kobayashi", "kato"}
	givens    = []string{"hiroshi", "yuki", "takeshi", "akiko", "kenji", "naoko", "daisuke", "emi", "shota", "mai"}
	processes = []string{`C:\Program Files\Microsoft Office\root\Office16\EXCEL.EXE`,
		`C:\Program Files\Microsoft Office\root\Office16\WINWORD.EXE`, `C:\Windows\explorer.exe`,
		`C:\Program Files\Adobe\Acrobat DC\Acrobat\Acrobat.exe`, `C:\Program Files (x86)\Microsoft\Edge\Application\msedge.exe`}
	fileTypes = []string{"file.modified", "file.modified", "file.created", "file.read", "file.read", "file.renamed", "file.deleted"}
)

// eventSource makes one simulated agent's chain of realistic file-access
// events, sealed exactly as the agent's spool seals them.
type eventSource struct {
	agent string
	user  string
	seq   uint64
	prev  string
	rng   *rand.Rand
}

func newEventSource(agent string, seq uint64, prev string, seed uint64) *eventSource {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	user := `OFFICE\` + families[rng.IntN(len(families))] + "." + givens[rng.IntN(len(givens))]
	return &eventSource{agent: agent, user: user, seq: seq, prev: prev, rng: rng}
}

// next returns the next n events of the chain.
func (s *eventSource) next(n int) ([]event.Event, error) {
	out := make([]event.Event, n)
	for i := range out {
		r := s.rng
		root := shareRoots[r.IntN(len(shareRoots))]
		if root[0] == 'C' {
			root = fmt.Sprintf(root, s.user[len(`OFFICE\`):])
		}
		name := fmt.Sprintf(fileKinds[r.IntN(len(fileKinds))], companies[r.IntN(len(companies))], r.IntN(10000))
		path := root + `\` + folders[r.IntN(len(folders))] + `\` + folders[r.IntN(len(folders))] + `\` + name
		s.seq++
		e := event.Event{Agent: s.agent, Seq: s.seq, Time: time.Now(), Control: "fileaccess",
			Type: fileTypes[r.IntN(len(fileTypes))], Severity: event.Info, User: s.user,
			Process: processes[r.IntN(len(processes))], Object: path,
			RegisterID: fmt.Sprintf("PI-%04d", 1+r.IntN(60)),
			Attrs:      event.Attrs{"size": json.Number(fmt.Sprint(1024 + r.IntN(4<<20))), "count": json.Number("1"), "root": root}}
		if err := e.Seal(s.prev); err != nil {
			return nil, fmt.Errorf("loadgen: seal: %w", err)
		}
		s.prev = e.Hash
		out[i] = e
	}
	return out, nil
}

// batch is one compressed batch ready to send, with the chain head before it:
// where the chain continues if it is never sent.
type batch struct {
	body  []byte
	n     int
	last  uint64 // seq of its last event, which the ack must name
	seq0  uint64
	prev0 string
}

// nextBatch seals the next n events of the chain and compresses them.
func (s *eventSource) nextBatch(n int) (batch, error) {
	b := batch{n: n, seq0: s.seq, prev0: s.prev}
	evs, err := s.next(n)
	if err != nil {
		return batch{}, err
	}
	if b.body, err = compressBatch(evs); err != nil {
		return batch{}, err
	}
	b.last = evs[n-1].Seq
	return b, nil
}

// batchEncoding is the Content-Encoding of the batches a run builds.
var batchEncoding = "zstd"

// compressBatch encodes a batch as the agent's shipper does
// (wire.BatchEncoder), in batchEncoding.
func compressBatch(evs []event.Event) ([]byte, error) {
	e := batchEncoders.Get().(*wire.BatchEncoder)
	defer batchEncoders.Put(e)
	b, err := e.Encode(evs, batchEncoding)
	if err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	return b, nil
}

// batchEncoders serve the goroutines that build batches ahead.
var batchEncoders = sync.Pool{New: func() any { return new(wire.BatchEncoder) }}

// encodingOf names a compressed batch's encoding from its magic number,
// so a batch left pending by a run of the other encoding goes as it is.
func encodingOf(body []byte) string {
	if bytes.HasPrefix(body, []byte{0x28, 0xb5, 0x2f, 0xfd}) {
		return "zstd"
	}
	return "gzip"
}
