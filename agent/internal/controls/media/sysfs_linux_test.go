package media

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mamori/mamori/agent/internal/controls"
)

// realLoop attaches a loop device with an ext4 file system and mounts it, or
// skips when the sandbox does not allow it.
func realLoop(t *testing.T) (name, mnt string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for losetup and mount")
	}
	for _, tool := range []string{"losetup", "mkfs.ext4", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s: %v", tool, err)
		}
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "stick.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 8<<20); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "-f", "--show", img).Output()
	if err != nil {
		t.Skipf("no loop device in this sandbox: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", dev).Run() })
	if out, err := exec.Command("mkfs.ext4", "-q", dev).CombinedOutput(); err != nil {
		t.Skipf("mkfs.ext4: %v: %s", err, out)
	}
	mnt = filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", dev, mnt).CombinedOutput(); err != nil {
		t.Skipf("mount not allowed here: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", mnt).Run() })
	return filepath.Base(dev), mnt
}

// TestRealLoopDeviceReadOnly reads a real block device from the real /sys
// and /proc and makes it read-only the way enforce does for read_only:
// remount ro and BLKROSET.
func TestRealLoopDeviceReadOnly(t *testing.T) {
	name, mnt := realLoop(t)
	p := newSysfsProbe("/")
	p.setRO = setBlockReadOnly
	mounts, err := os.ReadFile("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	d, ok, err := p.readBlock(name, parseMounts(mounts), true)
	if err != nil || !ok {
		t.Fatalf("readBlock(%s) = %v, %v", name, ok, err)
	}
	if d.CapacityBytes != 8<<20 || d.FS != "ext4" || len(d.MountPoints) != 1 || d.MountPoints[0] != mnt {
		t.Fatalf("device = %+v", d)
	}
	if d.Bus != "" || d.USBDevice != "" {
		t.Errorf("a loop device is not on USB: %+v", d)
	}
	if err := os.WriteFile(filepath.Join(mnt, "before.txt"), []byte("x"), 0o644); err != nil {
		t.Fatalf("writable before enforce: %v", err)
	}
	t.Cleanup(func() { _ = exec.Command("blockdev", "--setrw", "/dev/"+name).Run() })
	how, err := p.enforce(context.Background(), d, "read_only")
	if err != nil {
		t.Fatalf("enforce: %v (did %q)", err, how)
	}
	if !strings.Contains(how, "remount ro "+mnt) || !strings.Contains(how, "setro "+name) {
		t.Errorf("how = %q", how)
	}
	err = os.WriteFile(filepath.Join(mnt, "after.txt"), []byte("x"), 0o644)
	if !errors.Is(err, syscall.EROFS) {
		t.Fatalf("write after enforce: %v, want EROFS", err)
	}
	ro, _ := readTrim(filepath.Join("/sys/block", name, "ro"))
	if ro != "1" {
		t.Errorf("/sys/block/%s/ro = %q, want 1", name, ro)
	}
	mounts, _ = os.ReadFile("/proc/mounts")
	for _, m := range parseMounts(mounts) {
		if m.Target == mnt && m.Options[0] != "ro" {
			t.Errorf("mount options %v, want ro", m.Options)
		}
	}
}

// TestRealSysList runs the Linux probe on this machine's /sys, /run and
// /proc: it must work, and anything it reports must be removable or on USB.
func TestRealSysList(t *testing.T) {
	if _, err := os.Stat("/sys/block"); err != nil {
		t.Skipf("no /sys/block: %v", err)
	}
	devs, err := newProbe(controls.Env{}).list(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range devs {
		rm, _ := readTrim(filepath.Join("/sys/block", d.Key, "removable"))
		if rm != "1" && d.Bus != "usb" {
			t.Errorf("reported a fixed, non-USB disk: %+v", d)
		}
	}
	t.Logf("%d removable devices here", len(devs))
}

// TestRealUeventWakes: attaching a loop device sends block uevents, which
// must wake the control's loop.
func TestRealUeventWakes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wake := newSysfsProbe("/").wakeups(ctx)
	realLoop(t) // attach, mkfs, mount: several change events
	select {
	case <-wake:
	case <-time.After(5 * time.Second):
		t.Skip("no uevent within 5 s: netlink uevents are not delivered in this sandbox")
	}
}

// TestNewProbeHostRoot: MAMORI_HOST_ROOT moves every tree the Linux probe
// reads and writes, so the real agent can run on a captured tree; the
// SanDisk in the fixture is listed and blocked there, nothing on this host.
func TestNewProbeHostRoot(t *testing.T) {
	root := loadTree(t, "usb-sandisk-vfat.txt")
	t.Setenv(EnvHostRoot, root)
	p := newProbe(controls.Env{})
	devs, err := p.list(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 1 || devs[0].Serial != "4C530001230512345678" {
		t.Fatalf("list under %s: %+v", root, devs)
	}
	if _, err := p.enforce(context.Background(), devs[0], "block"); err != nil {
		t.Fatal(err)
	}
	if v, _ := readTrim(filepath.Join(root, "sys/bus/usb/devices/2-1/authorized")); v != "0" {
		t.Fatalf("authorized under the root = %q, want 0", v)
	}
	if sp := p.(*sysfsProbe); sp.dev != filepath.Join(root, "dev") || sp.setRO == nil {
		t.Fatalf("probe roots %+v", sp)
	}
}
