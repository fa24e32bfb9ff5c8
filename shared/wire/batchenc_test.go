package wire

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/mamori/mamori/shared/event"
)

// TestBatchEncoder: both encodings decode back to the batch, the zstd
// encoder is reused across batches, and an unknown encoding is refused.
func TestBatchEncoder(t *testing.T) {
	evs := []event.Event{{Agent: "pc-1", Seq: 1, Time: time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC), Control: "fileaccess",
		Type: "file.read", Severity: event.Info, Object: `D:\共有\顧客名簿.xlsx`}}
	var e BatchEncoder
	for _, enc := range []string{"zstd", "gzip", "zstd"} {
		body, err := e.Encode(evs, enc)
		if err != nil {
			t.Fatal(err)
		}
		var r io.Reader
		if enc == "zstd" {
			zr, err := zstd.NewReader(bytes.NewReader(body), zstd.WithDecoderMaxWindow(8<<20))
			if err != nil {
				t.Fatal(err)
			}
			defer zr.Close()
			r = zr
		} else {
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			r = zr
		}
		var b Batch
		if err := json.NewDecoder(r).Decode(&b); err != nil {
			t.Fatalf("%s: %v", enc, err)
		}
		if len(b.Events) != 1 || b.Events[0].Object != evs[0].Object {
			t.Fatalf("%s: decoded %+v", enc, b.Events)
		}
	}
	if _, err := e.Encode(evs, "br"); err == nil {
		t.Fatal("encoding br accepted")
	}
}
