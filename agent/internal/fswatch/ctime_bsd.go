//go:build darwin || freebsd || netbsd

package fswatch

import (
	"io/fs"
	"syscall"
	"time"
)

// changeTime is the inode change time (st_ctimespec), see ctime_linux.go.
func changeTime(fi fs.FileInfo) time.Time {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return time.Unix(st.Ctimespec.Unix())
	}
	return time.Time{}
}
