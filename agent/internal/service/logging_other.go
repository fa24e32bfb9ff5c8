//go:build !windows

package service

// openSystemLog: systemd's journal and launchd take the agent's stderr, so
// there is no other OS log to open.
func openSystemLog() (levelWriteCloser, error) { return nil, nil }
