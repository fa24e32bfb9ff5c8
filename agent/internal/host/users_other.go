//go:build !windows

package host

import (
	"context"
	"time"

	gohost "github.com/shirou/gopsutil/v3/host"
)

// loggedOnUsers reads utmp through gopsutil.
func loggedOnUsers(ctx context.Context) ([]User, error) {
	us, err := gohost.UsersWithContext(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]User, 0, len(us))
	for _, u := range us {
		x := User{Name: u.User, Terminal: u.Terminal, Host: u.Host}
		if u.Started > 0 {
			x.Started = time.Unix(int64(u.Started), 0).UTC()
		}
		out = append(out, x)
	}
	return out, nil
}
