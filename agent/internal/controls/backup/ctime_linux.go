package backup

import (
	"os"
	"strconv"
	"syscall"
	"time"
)

// linkOnSizeAndMTime is false: the inode change time says whether a file
// was touched since the previous generation recorded it.
const linkOnSizeAndMTime = false

// changeTimeOf returns the inode change time (st_ctim). Unlike the mtime it
// cannot be set back by touch -r or a restore tool: any write, chmod or
// utimes moves it to now.
func changeTimeOf(fi os.FileInfo) (time.Time, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(st.Ctim.Unix()).UTC(), true
}

// deviceID is the filesystem (st_dev) p lives on.
func deviceID(p string) (string, bool) {
	fi, err := os.Stat(p)
	if err != nil {
		return "", false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "", false
	}
	return strconv.FormatUint(uint64(st.Dev), 10), true
}
