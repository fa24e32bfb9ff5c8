package wire

import (
	"encoding/json"
	"net/http"
)

// WriteJSON answers with v as JSON and the headers every Mamori JSON answer
// carries (no caching, no content sniffing; HTML not escaped, so paths and
// Japanese text read as sent). It returns the encoding error for the
// caller's log.
func WriteJSON(w http.ResponseWriter, status int, v any) error {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
