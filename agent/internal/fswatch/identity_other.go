//go:build !unix && !windows

package fswatch

import "os"

// Identify says what path is, without following a link at it (kind only).
func Identify(path string) (Identity, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return Identity{}, err
	}
	id := Identity{Kind: kindOf(fi.Mode())}
	if id.Kind == KindSymlink {
		id.Target, _ = os.Readlink(path)
	}
	return id, nil
}
