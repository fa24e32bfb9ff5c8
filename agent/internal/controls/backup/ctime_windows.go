package backup

import (
	"os"
	"path/filepath"
	"strings"
	"time"
)

// linkOnSizeAndMTime is true on Windows: os.Stat gives no change time
// (NTFS keeps one, but only FILE_BASIC_INFO reads it), so an unchanged size
// and last-write time still link, as before. An edit that keeps the size
// and sets LastWriteTime back is not seen; such links are counted as
// linked_unverified in backup.completed and marked in the manifest.
const linkOnSizeAndMTime = true

func changeTimeOf(os.FileInfo) (time.Time, bool) { return time.Time{}, false }

// deviceID is p's volume: the drive letter or \\server\share (a mapped
// drive and its UNC path count as different; the note is advice only).
func deviceID(p string) (string, bool) {
	v := filepath.VolumeName(p)
	if v == "" {
		return "", false
	}
	if _, err := os.Stat(p); err != nil {
		return "", false
	}
	return strings.ToUpper(v), true
}
