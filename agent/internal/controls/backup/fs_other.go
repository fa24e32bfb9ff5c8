//go:build !windows

package backup

import (
	"errors"
	"os"
	"syscall"
)

// syncDir fsyncs a directory so the renames in it survive a power cut.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// isDiskFull reports ENOSPC (and EDQUOT: a quota is full for us too).
func isDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}
