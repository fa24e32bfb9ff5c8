package api

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/wire"
)

func FuzzDecodeBatch(f *testing.F) {
	ev := event.Event{Agent: "agt-1", Seq: 1, Time: time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC), Control: "media",
		Type: "media.inserted", Severity: event.Warning, Object: `E:\`, Attrs: event.Attrs{"serial": "ABC", "n": json.Number("1.50")}}
	ev.Seal("")
	good, _ := json.Marshal(wire.Batch{Events: []event.Event{ev}})
	for _, s := range []string{string(good), `{"events":[]}`, `{"events":null}`, `{}`, `[]`, `{"events":[{}]}`,
		`{"events":[{"attrs":{"a":[1,{"b":"\ud800"}]}}]}`, "{\"events\":[{\"user\":\"\xff\"}]}", `{"events":[]}{}`, ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		evs, err := DecodeBatch(body)
		if err != nil {
			if !errors.Is(err, errBadBatch) && !errors.Is(err, errTooLarge) {
				t.Fatalf("error %v wraps neither errBadBatch nor errTooLarge", err)
			}
			if evs != nil {
				t.Fatal("events returned with an error")
			}
			return
		}
		if len(evs) == 0 || len(evs) > wire.MaxBatchEvents {
			t.Fatalf("accepted %d events", len(evs))
		}
		// Whatever was accepted must round-trip and survive validation
		// without panicking.
		if _, err := json.Marshal(wire.Batch{Events: evs}); err != nil {
			t.Fatalf("accepted batch does not re-encode: %v", err)
		}
		for i := range evs {
			_ = evs[i].Validate()
		}
		event.VerifyChain("agt-1", 0, "", evs)
	})
}

func TestDecodeBatchErrors(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`{"events":[]}`, "no events"},
		{`{"events":[{"agent":"a"}],"x":1}`, "unknown field"},
		{"{\"events\":[{\"user\":\"\xfe\"}]}", "UTF-8"},
		{`{"events":[{}]} x`, "after the batch"},
	} {
		_, err := DecodeBatch([]byte(tc.body))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.body, err, tc.want)
		}
	}
}

// BenchmarkDecodeBatch is the per-batch CPU of ingest before the store: JSON
// decode of a 500-event batch of file events and the chain check the store
// runs on it, with the hand-written decoder and with the encoding/json one
// it replaced. One op is one batch; events/s is per core.
//
//	go test -run '^$' -bench DecodeBatch -benchmem ./server/internal/api/
func BenchmarkDecodeBatch(b *testing.B) {
	const n = 500
	evs := make([]event.Event, n)
	prev := ""
	for i := range evs {
		evs[i] = event.Event{Agent: "agent-1", Seq: uint64(i + 1), Time: time.Date(2026, 11, 23, 9, 0, 0, i*1000, time.UTC),
			Control: "fileaccess", Type: "file.modified", Severity: event.Info, User: `OFFICE\tanaka`,
			Process: `C:\Program Files\Microsoft Office\root\Office16\EXCEL.EXE`,
			Object:  `D:\顧客\2026\名簿.xlsx`, RegisterID: "PI-0001",
			Attrs: event.Attrs{"size": 48213, "count": 3, "access_mask": "0x6", "pid": 4120}}
		if err := evs[i].Seal(prev); err != nil {
			b.Fatal(err)
		}
		prev = evs[i].Hash
	}
	body, err := json.Marshal(wire.Batch{Events: evs})
	if err != nil {
		b.Fatal(err)
	}
	for _, d := range []struct {
		name   string
		decode func(io.Reader, func(*event.Event) error) ([]event.Event, error)
	}{{"hand-written", decodeBatchFrom}, {"encoding-json", refDecodeBatchFrom}} {
		b.Run(d.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				got, err := d.decode(bytes.NewReader(body), nil)
				if err != nil {
					b.Fatal(err)
				}
				if i, err := event.VerifyChain("agent-1", 0, "", got); err != nil {
					b.Fatal(i, err)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// TestDecodeBatchStopsAtLimit: 5.6M empty events (16 MiB, 16 KiB gzipped)
// cost 29 s and 4.5 GB when the whole array was decoded before counting.
func TestDecodeBatchStopsAtLimit(t *testing.T) {
	body := `{"events":[{}` + strings.Repeat(",{}", (wire.MaxBatchBody-20)/3) + `]}`
	t0 := time.Now()
	_, err := DecodeBatch([]byte(body))
	if err == nil || !strings.Contains(err.Error(), "limit 1000") {
		t.Fatalf("%v, want the event limit", err)
	}
	if d := time.Since(t0); d > time.Second {
		t.Fatalf("refused after %v", d)
	}
	if _, err := DecodeBatch([]byte(`{"events":[{"user":"` + strings.Repeat("a", MaxEventJSON) + `"}]}`)); err == nil ||
		!strings.Contains(err.Error(), "over") {
		t.Fatalf("event over MaxEventJSON: %v", err)
	}
}

// realisticEvents is n sealed file events of one agent on a file server:
// Japanese folder names, Windows and UNC paths, register ids.
func realisticEvents(tb testing.TB, n int) []event.Event {
	tb.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	words := []string{"2024年度", "見積書", "契約書", "顧客名簿", "申込書", "株式会社山田商事", "有限会社佐藤工業", "名古屋営業所"}
	evs := make([]event.Event, n)
	prev := ""
	for i := range evs {
		evs[i] = event.Event{Agent: "agent-1", Seq: uint64(i + 1), Time: time.Now().UTC(),
			Control: "fileaccess", Type: "file.modified", Severity: event.Info, User: `OFFICE\tanaka.yuki`,
			Process: `C:\Program Files\Microsoft Office\root\Office16\EXCEL.EXE`,
			Object: fmt.Sprintf(`\\fileserver\営業部\顧客管理\%s\%s\見積書_%s_%04d.xlsx`, words[rng.IntN(len(words))],
				words[rng.IntN(len(words))], words[rng.IntN(len(words))], rng.IntN(10000)),
			RegisterID: fmt.Sprintf("PI-%04d", 1+rng.IntN(60)),
			Attrs:      event.Attrs{"size": json.Number(fmt.Sprint(1024 + rng.IntN(4<<20))), "count": json.Number("1"), "root": `\\fileserver\営業部\顧客管理`}}
		if err := evs[i].Seal(prev); err != nil {
			tb.Fatal(err)
		}
		prev = evs[i].Hash
	}
	return evs
}

// BenchmarkDecodeBody is the handler's part of ingest on an office's
// events as the agent ships them: a gzip'd 500-event batch of file
// accesses with random Japanese paths (as mamori-loadgen makes them),
// gunzipped and decoded, without the chain check (the store's). One op is
// one batch; events/s is per core.
//
//	go test -run '^$' -bench DecodeBody -benchmem ./server/internal/api/
func BenchmarkDecodeBody(b *testing.B) {
	const n = 500
	evs := realisticEvents(b, n)
	raw, err := json.Marshal(wire.Batch{Events: evs})
	if err != nil {
		b.Fatal(err)
	}
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	zw.Write(raw)
	zw.Close()
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		got, err := decodeBody("gzip", bytes.NewReader(zb.Bytes()), nil)
		if err != nil || len(got) != n {
			b.Fatal(len(got), err)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkDecodeValidate is decoding an agent's batch and the store's
// check of each event (event.ValidateAttrs), with the parser's canonical
// text and without it (encoding each event again, as before the parser
// told events their text):
//
//	go test -run '^$' -bench DecodeValidate -benchmem ./server/internal/api/
func BenchmarkDecodeValidate(b *testing.B) {
	evs := realisticEvents(b, 500)
	var enc wire.BatchEncoder
	body, err := enc.Encode(evs, "zstd")
	if err != nil {
		b.Fatal(err)
	}
	for _, claim := range []bool{true, false} {
		b.Run(fmt.Sprintf("canonical-text=%v", claim), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				got, err := decodeBody("zstd", bytes.NewReader(body), nil)
				if err != nil || len(got) != len(evs) {
					b.Fatal(len(got), err)
				}
				if !claim {
					forgetClaims(got)
				}
				for i := range got {
					if _, err := got[i].ValidateAttrs(); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(evs))/1000, "µs/event")
		})
	}
}
