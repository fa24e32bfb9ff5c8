//go:build windows

package fswatch

import (
	"os"
	"syscall"
)

// Identify says what path is, without following a reparse point at it: the
// kind from Lstat (a junction or symbolic link is not a folder), the volume
// serial number and file index from GetFileInformationByHandle on a handle
// opened with FILE_FLAG_OPEN_REPARSE_POINT (that of the link itself).
func Identify(path string) (Identity, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return Identity{}, err
	}
	id := Identity{Kind: kindOf(fi.Mode())}
	if p, err := syscall.UTF16PtrFromString(path); err == nil {
		h, err := syscall.CreateFile(p, 0,
			syscall.FILE_SHARE_READ|syscall.FILE_SHARE_WRITE|syscall.FILE_SHARE_DELETE, nil,
			syscall.OPEN_EXISTING, syscall.FILE_FLAG_BACKUP_SEMANTICS|syscall.FILE_FLAG_OPEN_REPARSE_POINT, 0)
		if err == nil {
			var info syscall.ByHandleFileInformation
			if syscall.GetFileInformationByHandle(h, &info) == nil {
				id.Dev = uint64(info.VolumeSerialNumber)
				id.Ino = uint64(info.FileIndexHigh)<<32 | uint64(info.FileIndexLow)
				if info.FileAttributes&syscall.FILE_ATTRIBUTE_REPARSE_POINT != 0 && id.Kind == KindOther {
					id.Kind = KindJunction
				}
			}
			syscall.CloseHandle(h)
		}
	}
	if id.Kind == KindSymlink || id.Kind == KindJunction {
		id.Target, _ = os.Readlink(path)
	}
	return id, nil
}
