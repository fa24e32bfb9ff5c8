//go:build unix

package fswatch

import (
	"io/fs"
	"syscall"
)

// fileID is the inode number, used to tell a renamed file from a new one.
func fileID(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino)
	}
	return 0
}
