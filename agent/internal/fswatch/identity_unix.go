//go:build unix

package fswatch

import (
	"os"
	"syscall"
)

// Identify says what path is, without following a link at it.
func Identify(path string) (Identity, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return Identity{}, err
	}
	id := Identity{Kind: kindOf(fi.Mode())}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.Dev, id.Ino = uint64(st.Dev), uint64(st.Ino)
	}
	if id.Kind == KindSymlink {
		id.Target, _ = os.Readlink(path)
	}
	return id, nil
}
