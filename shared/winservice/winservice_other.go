//go:build !windows

package winservice

// Harden is Windows only.
func Harden(string, bool) error { return ErrUnsupported }

// Self is Windows only.
func Self() (string, error) { return "", ErrUnsupported }
