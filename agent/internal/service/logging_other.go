//go:build !windows

package service

// systemLogName is what status names as the OS log: the service
// manager's capture of stderr.
const systemLogName = "stderr (journalctl -u mamori-agent under systemd)"

// openSystemLog: systemd's journal and launchd take the agent's stderr, so
// there is no other OS log to open.
func openSystemLog() (levelWriteCloser, error) { return nil, nil }
