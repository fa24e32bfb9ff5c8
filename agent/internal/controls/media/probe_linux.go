package media

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/mamori/mamori/agent/internal/controls"
)

func newProbe(controls.Env) probe {
	p := newSysfsProbe("/")
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
