package evidence

import (
	"bytes"
	"testing"
)

// FuzzVerify checks arbitrary bytes as a bundle: an error or a report,
// never a panic, and a mangled real bundle is never reported intact.
func FuzzVerify(f *testing.F) {
	fx := newFixture(f, 2, 3)
	good := fx.bundle(f, nil)
	f.Add(good, uint16(0))
	f.Add([]byte("{}\n"), uint16(0))
	f.Add([]byte(""), uint16(0))
	f.Fuzz(func(t *testing.T, b []byte, flip uint16) {
		mangled := false
		if bytes.Equal(b, good) && flip > 0 {
			b = bytes.Clone(b)
			b[int(flip)%len(b)] ^= 0x01
			mangled = true
		}
		rep, err := Verify(bytes.NewReader(b), fx.verif, VerifyOptions{})
		if err != nil {
			return
		}
		if mangled && rep.OK() {
			t.Fatalf("a bundle with byte %d flipped verified", int(flip)%len(b))
		}
	})
}
