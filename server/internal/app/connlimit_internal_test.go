package app

import (
	"errors"
	"testing"
)

func TestConnCap(t *testing.T) {
	for _, c := range []struct {
		configured int
		limit      uint64
		err        error
		want       int
	}{
		{0, 1024, nil, 768},                            // reserve 256
		{0, 65536, nil, DefaultMaxConns},               // the default is below 65536-8192
		{100000, 65536, nil, 65536 - 8192},             // never past the reserve
		{0, 1 << 20, nil, DefaultMaxConns},             // a huge limit
		{64, 1024, nil, 64},                            // a smaller configured cap wins
		{0, 300, nil, 150},                             // half at most for the reserve
		{0, 0, errors.ErrUnsupported, DefaultMaxConns}, // Windows
		{500, 0, errors.ErrUnsupported, 500},
	} {
		if got := connCap(c.configured, c.limit, c.err); got != c.want {
			t.Errorf("connCap(%d, %d, %v) = %d, want %d", c.configured, c.limit, c.err, got, c.want)
		}
	}
}
