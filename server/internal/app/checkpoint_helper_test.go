package app_test

import (
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/mamori/mamori/shared/evidence"
)

// signedCheckpoint waits until base serves a signed checkpoint of at least
// min events and opens it.
func signedCheckpoint(t *testing.T, base, token string, caPEM []byte, v note.Verifier, min int64) evidence.Checkpoint {
	t.Helper()
	var cp struct {
		Checkpoint string `json:"checkpoint"`
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if st := adminGet(t, base, token, caPEM, "/api/v1/checkpoint", nil, &cp); st == 200 {
			c, err := evidence.Open([]byte(cp.Checkpoint), v)
			if err != nil {
				t.Fatal(err)
			}
			if c.Size >= min {
				return c
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint of %d events from %s", min, base)
		}
	}
}
