package api

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/mamori/mamori/server/internal/register"
	"github.com/mamori/mamori/shared/wire"
)

// FuzzDecodeGzipBody feeds arbitrary bytes as a gzip batch body: every
// answer is a bounded refusal or a valid batch, never a panic.
func FuzzDecodeGzipBody(f *testing.F) {
	for _, s := range []string{`{"events":[{}]}`, `{"events":[` + string(bytes.Repeat([]byte("{},"), 2000)) + `{}]}`, "", "x"} {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write([]byte(s))
		zw.Close()
		f.Add(b.Bytes())
		f.Add(b.Bytes()[:b.Len()/2])
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		evs, err := decodeBody("gzip", bytes.NewReader(body), nil)
		if err != nil {
			if !errors.Is(err, errBadBatch) && !errors.Is(err, errTooLarge) {
				t.Fatalf("error %v is neither a bad batch nor too large", err)
			}
			return
		}
		if len(evs) == 0 || len(evs) > wire.MaxBatchEvents {
			t.Fatalf("accepted %d events", len(evs))
		}
	})
}

// FuzzDecodeZstdBody feeds arbitrary bytes as a zstd batch body: every
// answer is a bounded refusal or a valid batch, never a panic.
func FuzzDecodeZstdBody(f *testing.F) {
	zw, err := zstd.NewWriter(nil, zstd.WithWindowSize(256<<10))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{`{"events":[{}]}`, `{"events":[` + string(bytes.Repeat([]byte("{},"), 2000)) + `{}]}`, "", "x"} {
		b := zw.EncodeAll([]byte(s), nil)
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		evs, err := decodeBody("zstd", bytes.NewReader(body), nil)
		if err != nil {
			if !errors.Is(err, errBadBatch) && !errors.Is(err, errTooLarge) {
				t.Fatalf("error %v is neither a bad batch nor too large", err)
			}
			return
		}
		if len(evs) == 0 || len(evs) > wire.MaxBatchEvents {
			t.Fatalf("accepted %d events", len(evs))
		}
	})
}

// FuzzRegisterEntryJSON decodes arbitrary JSON as a register entry of each
// kind the way the API does, and validates what decodes.
func FuzzRegisterEntryJSON(f *testing.F) {
	for _, s := range []string{`{"id":"PI-0001","name":"顧客名簿","locations":[{"host":"PC","folder":"D:\\x"}]}`,
		`{"id":"MD-1","serial":"AA","encrypted":true}`, `{"register_ids":["a"],"from":"2026-01-01T00:00:00Z"}`, `{}`, `[]`, `null`} {
		f.Add(uint8(0), s)
	}
	kinds := []register.Kind{register.KindPI, register.KindMedia, register.KindApprovals, register.KindDisposals}
	f.Fuzz(func(t *testing.T, k uint8, body string) {
		e := register.NewEntry(kinds[int(k)%len(kinds)])
		d := json.NewDecoder(bytes.NewReader([]byte(body)))
		d.DisallowUnknownFields()
		if d.Decode(e) != nil {
			return
		}
		_ = register.Validate(e, time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC))
	})
}
