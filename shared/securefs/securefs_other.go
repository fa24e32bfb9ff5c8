//go:build !windows

package securefs

import "os"

// protectDir: on Linux and macOS mode 0700 is enough; the owner is the user
// running the program (root or the service account).
func protectDir(dir string) error { return os.Chmod(dir, 0o700) }

// createPrivate: os.CreateTemp makes the file 0600 whatever the umask.
func createPrivate(dir, prefix string) (*os.File, error) {
	return os.CreateTemp(dir, prefix+"*")
}
