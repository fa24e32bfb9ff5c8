package media

import (
	"context"
	"errors"
	"fmt"
	"os/exec"

	"github.com/mamori/mamori/agent/internal/controls"
)

// darwinProbe detects and reports external disks with diskutil and
// system_profiler; enforcement is not implemented on macOS.
type darwinProbe struct{}

func newProbe(controls.Env) probe { return darwinProbe{} }

func (darwinProbe) list(ctx context.Context) ([]Device, error) {
	out, err := exec.CommandContext(ctx, "diskutil", "list", "-plist", "external", "physical").Output()
	if err != nil {
		return nil, fmt.Errorf("media: diskutil list: %w", err)
	}
	devs, err := diskutilDisks(out)
	if err != nil {
		return nil, err
	}
	var usb map[string]usbIDs
	if b, err := exec.CommandContext(ctx, "system_profiler", "SPUSBDataType", "-xml").Output(); err == nil {
		usb, _ = profilerUSB(b)
	}
	for i := range devs {
		d := &devs[i]
		if info, err := exec.CommandContext(ctx, "diskutil", "info", "-plist", d.Key).Output(); err == nil {
			_ = applyDiskutilInfo(d, info)
		}
		if ids, ok := usb[d.Key]; ok {
			d.VendorID, d.ProductID, d.Serial, d.Vendor = ids.VendorID, ids.ProductID, ids.Serial, ids.Vendor
		}
	}
	return devs, nil
}

var errDarwinEnforce = fmt.Errorf("media: enforcement on macOS: %w", errors.ErrUnsupported)

func (darwinProbe) enforce(context.Context, Device, string) (string, error) {
	return "", errDarwinEnforce
}

func (darwinProbe) classPolicy(context.Context, bool, bool) error { return nil }

func (darwinProbe) release(Device) {}
