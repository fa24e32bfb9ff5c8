package media

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// sysfsProbe finds removable storage in a Linux sysfs tree, with ids from
// the udev database and mounts from /proc/mounts. Its roots are fields so
// tests run it on a temp tree built from captured files. It is portable
// code (it only reads and writes files) so it is tested on every OS; the
// Linux probe adds the ioctl that makes a block device read-only.
type sysfsProbe struct {
	sys  string // /sys
	run  string // /run (udev database in run/udev/data)
	proc string // /proc
	dev  string // /dev

	// setRO makes a block device node read-only (BLKROSET); nil = skip.
	setRO func(devPath string) error
	// remountRO remounts a mount point read-only.
	remountRO func(ctx context.Context, target string) error
}

func newSysfsProbe(root string) *sysfsProbe {
	return &sysfsProbe{
		sys: filepath.Join(root, "sys"), run: filepath.Join(root, "run"),
		proc: filepath.Join(root, "proc"), dev: filepath.Join(root, "dev"),
		remountRO: remountReadOnly,
	}
}

func remountReadOnly(ctx context.Context, target string) error {
	out, err := exec.CommandContext(ctx, "mount", "-o", "remount,ro", target).CombinedOutput()
	if err != nil {
		return fmt.Errorf("media: mount -o remount,ro %s: %w: %s", target, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func readTrim(p string) (string, error) {
	b, err := os.ReadFile(p)
	return strings.TrimSpace(string(b)), err
}

// list returns the block devices that are removable (removable=1) or sit
// on a USB bus (their resolved sysfs path has /usb), with media present.
func (p *sysfsProbe) list(ctx context.Context) ([]Device, error) {
	ents, err := os.ReadDir(filepath.Join(p.sys, "block"))
	if err != nil {
		return nil, fmt.Errorf("media: %w", err)
	}
	mounts, err := os.ReadFile(filepath.Join(p.proc, "mounts"))
	if err != nil {
		return nil, fmt.Errorf("media: %w", err)
	}
	ms := parseMounts(mounts)
	var out []Device
	for _, e := range ents {
		d, ok, err := p.readBlock(e.Name(), ms, false)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, d)
		}
	}
	return out, nil
}

// unobservable names what this host lacks for removable storage to be seen
// and blocked at all, "" when nothing. Without a USB bus in sysfs no stick
// can appear (and block, authorized=0, has nothing to write to): a
// container or a VM without USB. The udev database is named when missing
// too, as what an admin should look for, though ids come from sysfs alone.
func (p *sysfsProbe) unobservable() string {
	usb := filepath.Join(p.sys, "bus", "usb", "devices")
	if _, err := os.Stat(usb); err == nil {
		return ""
	}
	missing := usb
	if _, err := os.Stat(filepath.Join(p.run, "udev")); err != nil {
		missing += ", " + filepath.Join(p.run, "udev")
	}
	return missing
}

// readBlock reads one /sys/block entry. ok is false for devices that are
// neither removable nor on USB (unless all) and for empty card readers.
func (p *sysfsProbe) readBlock(name string, ms []mountEntry, all bool) (Device, bool, error) {
	link := filepath.Join(p.sys, "block", name)
	resolved, err := filepath.EvalSymlinks(link)
	if err != nil {
		return Device{}, false, nil // vanished between ReadDir and now
	}
	removable, _ := readTrim(filepath.Join(resolved, "removable"))
	usbDir := usbAncestor(resolved)
	if !all && removable != "1" && usbDir == "" {
		return Device{}, false, nil
	}
	sectors, _ := readTrim(filepath.Join(resolved, "size"))
	n, _ := strconv.ParseInt(sectors, 10, 64)
	if n == 0 && !all {
		return Device{}, false, nil // a reader with no card in it
	}
	d := Device{Key: name, Path: filepath.Join("/dev", name), CapacityBytes: n * 512}
	if usbDir != "" {
		d.Bus = "usb"
		d.USBDevice = filepath.Base(usbDir)
		d.VendorID, _ = readTrim(filepath.Join(usbDir, "idVendor"))
		d.ProductID, _ = readTrim(filepath.Join(usbDir, "idProduct"))
		d.Serial, _ = readTrim(filepath.Join(usbDir, "serial"))
		d.Vendor, _ = readTrim(filepath.Join(usbDir, "manufacturer"))
		d.Product, _ = readTrim(filepath.Join(usbDir, "product"))
	} else if strings.Contains(resolved, "/mmc") {
		d.Bus = "sd"
	}
	// udev's view wins where it has one: it is what admins see in udevadm.
	nodes := []string{name}
	parts, _ := partitions(resolved)
	nodes = append(nodes, parts...)
	for i, node := range nodes {
		dir := resolved
		if i > 0 {
			dir = filepath.Join(resolved, node)
		}
		majmin, err := readTrim(filepath.Join(dir, "dev"))
		if err != nil {
			continue
		}
		props := map[string]string{}
		if b, err := os.ReadFile(filepath.Join(p.run, "udev", "data", "b"+majmin)); err == nil {
			props = parseUdevData(b)
		}
		if i == 0 {
			setIf(&d.VendorID, props["ID_VENDOR_ID"])
			setIf(&d.ProductID, props["ID_MODEL_ID"])
			setIf(&d.Serial, props["ID_SERIAL_SHORT"])
			// udev writes spaces in names as '_'; sysfs strings read better.
			setIfEmpty(&d.Vendor, props["ID_VENDOR"])
			setIfEmpty(&d.Product, props["ID_MODEL"])
			setIf(&d.Revision, props["ID_REVISION"])
			if b := props["ID_BUS"]; b != "" && d.Bus == "" {
				d.Bus = b
			}
		}
		fs := props["ID_FS_TYPE"]
		for _, m := range ms {
			if m.Source == filepath.Join("/dev", node) {
				d.MountPoints = append(d.MountPoints, m.Target)
				if fs == "" {
					fs = m.FSType
				}
			}
		}
		if fs == "crypto_LUKS" || strings.EqualFold(fs, "BitLocker") {
			d.Encrypted = true
		}
		if d.FS == "" || (fs != "" && d.FS != "crypto_LUKS") {
			if fs != "" {
				d.FS = fs
			}
		}
	}
	sort.Strings(d.MountPoints)
	return d, true, nil
}

func setIfEmpty(dst *string, v string) {
	if *dst == "" {
		*dst = v
	}
}

func setIf(dst *string, v string) {
	if v != "" {
		*dst = v
	}
}

// partitions lists the partition subdirectories of a disk's sysfs dir.
func partitions(diskDir string) ([]string, error) {
	ents, err := os.ReadDir(diskDir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if _, err := os.Stat(filepath.Join(diskDir, e.Name(), "partition")); err == nil {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// usbAncestor returns the USB device directory above a resolved block
// device path (.../usb2/2-1/2-1:1.0/host0/... -> .../usb2/2-1): the deepest
// ancestor that has idVendor and no ':' (interfaces have one).
func usbAncestor(resolved string) string {
	if !strings.Contains(resolved, "/usb") {
		return ""
	}
	for dir := filepath.Dir(resolved); dir != "/" && dir != "." && len(dir) > 1; dir = filepath.Dir(dir) {
		base := filepath.Base(dir)
		if strings.Contains(base, ":") {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, "idVendor")); err == nil {
			return dir
		}
		if strings.HasPrefix(base, "usb") || strings.HasPrefix(base, "pci") {
			break
		}
	}
	return ""
}

// enforce blocks by deauthorizing the USB device (the kernel unbinds its
// drivers and the block device goes away) or makes every mount read-only
// and the block device itself read-only.
func (p *sysfsProbe) enforce(ctx context.Context, d Device, action string) (string, error) {
	switch action {
	case "block":
		if d.USBDevice == "" {
			return "", errNoUSBDevice
		}
		f := filepath.Join(p.sys, "bus", "usb", "devices", d.USBDevice, "authorized")
		if err := writeExisting(f, "0"); err != nil {
			return "", fmt.Errorf("media: deauthorize %s: %w", d.USBDevice, err)
		}
		return "authorized=0 " + d.USBDevice, nil
	case "read_only":
		var done []string
		var errs []error
		for _, mp := range d.MountPoints {
			if err := p.remountRO(ctx, mp); err != nil {
				errs = append(errs, err)
				continue
			}
			done = append(done, "remount ro "+mp)
		}
		if p.setRO != nil {
			resolved, _ := filepath.EvalSymlinks(filepath.Join(p.sys, "block", d.Key))
			parts, _ := partitions(resolved)
			for _, node := range append([]string{d.Key}, parts...) {
				if err := p.setRO(filepath.Join(p.dev, node)); err != nil {
					errs = append(errs, err)
					continue
				}
				done = append(done, "setro "+node)
			}
		}
		if err := errors.Join(errs...); err != nil {
			return strings.Join(done, "; "), err
		}
		return strings.Join(done, "; "), nil
	}
	return "", fmt.Errorf("media: unknown action %q", action)
}

func (p *sysfsProbe) classPolicy(context.Context, bool, bool) error { return nil }

// writeExisting writes a sysfs attribute; it never creates a file, so a
// missing attribute is an error rather than a silent no-op.
func writeExisting(path, v string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(v); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (p *sysfsProbe) release(Device) {}
