package fswatch

import (
	"errors"
	"fmt"
	"io/fs"
	"runtime"
)

// Kinds of what a root's path is (Identity.Kind).
const (
	KindDir      = "directory"
	KindSymlink  = "symlink"
	KindJunction = "junction" // Windows: a mount point or other name-surrogate reparse point
	KindFile     = "file"
	KindOther    = "other"
)

// Identity is what a path is, without following a link at it: its kind,
// and the file's identity where the OS gives one (Unix: device and inode;
// Windows: volume serial number and file index, from
// GetFileInformationByHandle on a handle opened without following a
// reparse point). A folder moved away and another folder, a symbolic link
// or a junction put at its path has another identity.
type Identity struct {
	Kind   string
	Dev    uint64
	Ino    uint64
	Target string // a link's or junction's target, when it can be read
}

// ID is "dev:ino" (Windows: "volume:fileindex", hexadecimal), "" when unknown.
func (i Identity) ID() string {
	if i.Dev == 0 && i.Ino == 0 {
		return ""
	}
	if runtime.GOOS == "windows" {
		return fmt.Sprintf("%08x:%016x", i.Dev, i.Ino)
	}
	return fmt.Sprintf("%d:%d", i.Dev, i.Ino)
}

// Same reports whether i and o are the same folder: same kind, and same
// file identity where both are known.
func (i Identity) Same(o Identity) bool {
	if i.Kind != o.Kind {
		return false
	}
	if i.ID() == "" || o.ID() == "" {
		return true
	}
	return i.Dev == o.Dev && i.Ino == o.Ino
}

func (i Identity) String() string {
	s := i.Kind
	if i.Target != "" {
		s += " to " + i.Target
	}
	if id := i.ID(); id != "" {
		s += " (" + id + ")"
	}
	return s
}

func kindOf(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return KindSymlink
	case m.IsDir():
		return KindDir
	case m.IsRegular():
		return KindFile
	case runtime.GOOS == "windows" && m&fs.ModeIrregular != 0:
		// Go reports a junction (a name-surrogate reparse point) as
		// irregular, not as a directory, since 1.23.
		return KindJunction
	}
	return KindOther
}

// ErrNotFolder is wrapped when a root's path is not a folder: a symbolic
// link or junction there is not followed (the root names a folder; a link
// at its path is a replacement of it), nor is a file watched.
var ErrNotFolder = errors.New("not a folder")

// NotFolderError says what a root's path is instead of a folder.
type NotFolderError struct {
	Path string
	Now  Identity
}

func (e *NotFolderError) Error() string {
	return fmt.Sprintf("fswatch: root %s is a %s, not a folder (not followed)", e.Path, e.Now)
}

func (e *NotFolderError) Unwrap() error { return ErrNotFolder }
