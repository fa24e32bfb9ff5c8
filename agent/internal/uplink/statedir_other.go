//go:build !windows

package uplink

import "os"

// protectDir: mode 0700 owned by the running user (root for the service).
func protectDir(dir string) error { return os.Chmod(dir, 0o700) }
