package evidence

import (
	"bytes"
	"testing"
)

// FuzzVerify checks arbitrary bytes, and a real bundle with one byte
// changed, as a bundle: an error or a report, never a panic.
//
// (Not asserted: that every changed byte is reported. Single-bit changes
// in the header's "origin" value and in the unused low bits of some
// base64 hashes still verify: neither is covered by the signature.)
func FuzzVerify(f *testing.F) {
	fx := newFixture(f, 2, 3)
	good := fx.bundle(f, nil)
	f.Add(good, uint16(0))
	f.Add([]byte("{}\n"), uint16(0))
	f.Add([]byte(""), uint16(0))
	f.Fuzz(func(t *testing.T, b []byte, flip uint16) {
		if bytes.Equal(b, good) && flip > 0 {
			b = bytes.Clone(b)
			b[int(flip)%len(b)] ^= byte(flip >> 8)
		}
		rep, err := Verify(bytes.NewReader(b), fx.verif, VerifyOptions{})
		if err == nil && rep == nil {
			t.Fatal("no report and no error")
		}
	})
}
