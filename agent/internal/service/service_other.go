//go:build !windows

package service

import (
	"context"
	"errors"
	"syscall"

	"github.com/rs/zerolog"
)

// runAsService: systemd and launchd run `mamori-agent run` as a plain
// process and stop it with SIGTERM, which the foreground path handles.
func runAsService(func(context.Context) error, zerolog.Logger) (bool, error) { return false, nil }

// hardenService: systemd (Restart=always, the packages' unit) and launchd
// (KeepAlive) restart by themselves and take no quoting.
func hardenService() error { return nil }

// processAlive says whether pid runs, by signal 0: ESRCH means gone, EPERM
// alive under another user. known is false when it cannot tell.
func processAlive(pid int) (alive, known bool) {
	if pid <= 0 {
		return false, false
	}
	switch err := syscall.Kill(pid, 0); {
	case err == nil, errors.Is(err, syscall.EPERM):
		return true, true
	case errors.Is(err, syscall.ESRCH):
		return false, true
	default:
		return false, false
	}
}
