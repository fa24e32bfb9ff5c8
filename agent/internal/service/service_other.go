//go:build !windows

package service

import (
	"context"

	"github.com/rs/zerolog"
)

// runAsService: systemd and launchd run `mamori-agent run` as a plain
// process and stop it with SIGTERM, which the foreground path handles.
func runAsService(func(context.Context) error, zerolog.Logger) (bool, error) { return false, nil }

// hardenService: systemd (Restart=always, the packages' unit) and launchd
// (KeepAlive) restart by themselves and take no quoting.
func hardenService() error { return nil }
