//go:build !unix

package fswatch

import "io/fs"

// fileID is 0 where FileInfo carries no file id (Windows: it needs a handle
// to the file, which a rename has already taken away); size and kind are
// compared instead.
func fileID(fs.FileInfo) uint64 { return 0 }
