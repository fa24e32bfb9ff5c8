package wire

import (
	"net/http/httptest"
	"testing"
)

func TestWriteJSON(t *testing.T) {
	w := httptest.NewRecorder()
	if err := WriteJSON(w, 409, Error{Error: `D:\顧客 <a&b>`}); err != nil {
		t.Fatal(err)
	}
	if w.Code != 409 || w.Header().Get("Content-Type") != "application/json; charset=utf-8" ||
		w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("answer %d %v", w.Code, w.Header())
	}
	if got, want := w.Body.String(), `{"error":"D:\\顧客 <a&b>"}`+"\n"; got != want {
		t.Fatalf("body %q, want %q", got, want)
	}
}
