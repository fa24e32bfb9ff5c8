//go:build !linux && !darwin && !freebsd && !netbsd

package fswatch

import (
	"io/fs"
	"time"
)

// changeTime is unknown (zero) here. Windows: FileInfo from os.Stat has no
// change time; it needs a handle (GetFileInformationByHandleEx,
// FileBasicInfo), and even that ChangeTime can be set by an administrator.
func changeTime(fs.FileInfo) time.Time { return time.Time{} }
