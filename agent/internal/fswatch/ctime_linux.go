package fswatch

import (
	"io/fs"
	"syscall"
	"time"
)

// changeTime is the inode change time (st_ctim): set by the kernel on every
// write and metadata change, never by utimes, so an mtime put back does not
// hide an edit.
func changeTime(fi fs.FileInfo) time.Time {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return time.Unix(st.Ctim.Unix())
	}
	return time.Time{}
}
