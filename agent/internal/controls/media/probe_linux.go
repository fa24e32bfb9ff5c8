package media

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/mamori/mamori/agent/internal/controls"
)

// EnvHostRoot names the directory holding the sys, run, proc and dev trees
// the probe reads and writes (default "/"), as gopsutil honours HOST_SYS: a
// hook for tests that run the real agent on a captured tree, and for an
// agent in a container with the host's trees mounted elsewhere.
const EnvHostRoot = "MAMORI_HOST_ROOT"

func newProbe(env controls.Env) probe {
	root := "/"
	if r := os.Getenv(EnvHostRoot); r != "" {
		root = r
		env.Log.Info().Str("root", r).Msg("media: reading devices under " + EnvHostRoot)
	}
	p := newSysfsProbe(root)
	p.setRO = setBlockReadOnly
	return p
}

// setBlockReadOnly is blockdev --setro: the kernel then refuses writes to the
// device node, also from a later rw mount.
func setBlockReadOnly(devPath string) error {
	f, err := os.OpenFile(devPath, os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("media: setro: %w", err)
	}
	defer f.Close()
	if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.BLKROSET, 1); err != nil {
		return fmt.Errorf("media: setro %s: %w", devPath, err)
	}
	return nil
}

// wakeups listens to kernel uevents so that a stick is decided (and
// blocked) as soon as it appears instead of at the next poll. Polling stays:
// if the socket cannot be opened (no netlink in a container) the channel
// simply never fires.
func (p *sysfsProbe) wakeups(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		return ch
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1}); err != nil {
		unix.Close(fd)
		return ch
	}
	// A receive timeout lets the reader notice ctx without closing the fd
	// under a blocked Recvfrom.
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 1})
	go func() {
		defer unix.Close(fd)
		buf := make([]byte, 16<<10)
		for ctx.Err() == nil {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil || n <= 0 {
				continue // timeout (EAGAIN), ENOBUFS after a burst: keep going, polling covers gaps
			}
			if u, ok := parseUevent(buf[:n]); ok && u.wakes() {
				select {
				case ch <- struct{}{}:
				default:
				}
			}
		}
	}()
	return ch
}
