package wire

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"

	"github.com/mamori/mamori/shared/event"
)

// zstdWindow is the window of an agent's zstd frames: a batch's events
// repeat their paths and names within far less, and the server refuses
// windows over 8 MiB.
const zstdWindow = 256 << 10

// BatchEncoder compresses batches as agents send them: JSON of Batch, then
// zstd at its fastest level or gzip at BestSpeed. It keeps its zstd encoder
// from batch to batch; one goroutine at a time.
type BatchEncoder struct {
	zw *zstd.Encoder
}

// Encode returns evs as a batch body in enc, "zstd" or "gzip".
func (e *BatchEncoder) Encode(evs []event.Event, enc string) ([]byte, error) {
	var buf bytes.Buffer
	var zw io.WriteCloser
	switch enc {
	case "zstd":
		if e.zw == nil {
			z, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1),
				zstd.WithWindowSize(zstdWindow), zstd.WithLowerEncoderMem(true))
			if err != nil {
				return nil, fmt.Errorf("wire: zstd: %w", err)
			}
			e.zw = z
		}
		e.zw.Reset(&buf)
		zw = e.zw
	case "gzip":
		zw, _ = gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	default:
		return nil, fmt.Errorf("wire: batch encoding %q: want zstd or gzip", enc)
	}
	// Without HTML escapes each event's text is its canonical encoding and
	// hash, which the server hashes as it is rather than encoding it again.
	je := json.NewEncoder(zw)
	je.SetEscapeHTML(false)
	if err := je.Encode(Batch{Events: evs}); err != nil {
		return nil, fmt.Errorf("wire: encode batch: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("wire: %s: %w", enc, err)
	}
	return buf.Bytes(), nil
}
