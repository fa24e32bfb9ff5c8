package screenlock

import (
	"context"
	"os/exec"

	"github.com/shirou/gopsutil/v3/host"

	"github.com/mamori/mamori/agent/internal/controls"
)

func newProbe(controls.Env) probe {
	return &gnomeProbe{root: "/", users: loggedOnUsers, run: runCommand}
}

// loggedOnUsers reads utmp through gopsutil, once per user.
func loggedOnUsers(ctx context.Context) ([]string, error) {
	us, err := host.UsersWithContext(ctx)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, u := range us {
		if u.User != "" && !seen[u.User] {
			seen[u.User] = true
			out = append(out, u.User)
		}
	}
	return out, nil
}

func runCommand(ctx context.Context, name string, args ...string) ([]byte, error) {
	return exec.CommandContext(ctx, name, args...).Output()
}
