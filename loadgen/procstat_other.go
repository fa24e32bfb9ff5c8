//go:build !linux

package main

import (
	"errors"
	"fmt"
)

// readProc needs Linux's /proc; elsewhere the server-side figures are left out.
func readProc(pid int) (procSample, error) {
	return procSample{}, fmt.Errorf("loadgen: process figures need Linux /proc: %w", errors.ErrUnsupported)
}
