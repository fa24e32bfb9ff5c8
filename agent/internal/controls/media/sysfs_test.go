package media

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// loadTree materializes a testdata/linux/*.txt tree ("-- path --" files,
// "-- path -> target --" symlinks) under a temp root.
func loadTree(t testing.TB, name string) string {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("sysfs trees need symlinks; not on Windows")
	}
	f, err := os.Open(filepath.Join("testdata", "linux", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	root := t.TempDir()
	var cur *os.File
	closeCur := func() {
		if cur != nil {
			if err := cur.Close(); err != nil {
				t.Fatal(err)
			}
			cur = nil
		}
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if cur == nil && strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "-- ") && strings.HasSuffix(line, " --") {
			closeCur()
			spec := strings.TrimSuffix(strings.TrimPrefix(line, "-- "), " --")
			if from, to, ok := strings.Cut(spec, " -> "); ok {
				p := filepath.Join(root, from)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(to, p); err != nil {
					t.Fatal(err)
				}
				continue
			}
			p := filepath.Join(root, spec)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if cur, err = os.Create(p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if cur != nil {
			if _, err := cur.WriteString(line + "\n"); err != nil {
				t.Fatal(err)
			}
		}
	}
	closeCur()
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestSysfsListFixtures(t *testing.T) {
	tests := []struct {
		tree string
		want []Device
	}{
		{"captured-virtio.txt", nil},
		{"usb-sandisk-vfat.txt", []Device{{
			Key: "sdb", Path: "/dev/sdb", MountPoints: []string{"/media/taro/CRUZER BLADE"},
			VendorID: "0781", ProductID: "5567", Vendor: "SanDisk", Product: "Cruzer Blade", Revision: "1.00",
			Serial: "4C530001230512345678", CapacityBytes: 30031872 * 512, FS: "vfat", Bus: "usb", USBDevice: "2-1",
		}}},
		{"usb-kingston-luks.txt", []Device{{
			Key: "sdb", Path: "/dev/sdb",
			VendorID: "0951", ProductID: "1666", Vendor: "Kingston", Product: "DataTraveler 3.0", Revision: "PMAP",
			Serial: "60A44C3FAE22EEA0797900F7", CapacityBytes: 60437492 * 512, FS: "crypto_LUKS", Encrypted: true,
			Bus: "usb", USBDevice: "3-2.4",
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.tree, func(t *testing.T) {
			p := newSysfsProbe(loadTree(t, tt.tree))
			got, err := p.list(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("list:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestSysfsBlockDeauthorizes(t *testing.T) {
	root := loadTree(t, "usb-sandisk-vfat.txt")
	p := newSysfsProbe(root)
	devs, err := p.list(context.Background())
	if err != nil || len(devs) != 1 {
		t.Fatalf("list = %v, %v", devs, err)
	}
	how, err := p.enforce(context.Background(), devs[0], "block")
	if err != nil {
		t.Fatal(err)
	}
	if how != "authorized=0 2-1" {
		t.Errorf("how = %q", how)
	}
	b, err := os.ReadFile(filepath.Join(root, "sys/devices/pci0000:00/0000:00:14.0/usb2/2-1/authorized"))
	if err != nil || string(b) != "0" {
		t.Fatalf("authorized = %q, %v; want 0", b, err)
	}
	// The interface and the root hub are left alone.
	b, _ = os.ReadFile(filepath.Join(root, "sys/devices/pci0000:00/0000:00:14.0/usb2/authorized"))
	if strings.TrimSpace(string(b)) != "1" {
		t.Errorf("root hub authorized = %q", b)
	}
}

func TestSysfsBlockNonUSBFails(t *testing.T) {
	p := newSysfsProbe(t.TempDir())
	if _, err := p.enforce(context.Background(), Device{Key: "mmcblk0", Path: "/dev/mmcblk0"}, "block"); err == nil {
		t.Fatal("blocking a non-USB device succeeded")
	}
	if _, err := p.enforce(context.Background(), Device{Key: "sdb"}, "bogus"); err == nil {
		t.Fatal("unknown action accepted")
	}
}

func TestSysfsBlockMissingAuthorizedFails(t *testing.T) {
	root := loadTree(t, "usb-sandisk-vfat.txt")
	p := newSysfsProbe(root)
	// The device went away between list and enforce: its sysfs dir is gone.
	if err := os.RemoveAll(filepath.Join(root, "sys/devices/pci0000:00/0000:00:14.0/usb2/2-1")); err != nil {
		t.Fatal(err)
	}
	if _, err := p.enforce(context.Background(), Device{Key: "sdb", USBDevice: "2-1"}, "block"); err == nil {
		t.Fatal("deauthorizing a vanished device succeeded")
	}
}

// TestSysfsUnobservable: a host without a USB bus in sysfs names what is
// missing; one with a USB bus (even with no stick in) does not.
func TestSysfsUnobservable(t *testing.T) {
	for tree, want := range map[string][]string{
		"captured-virtio.txt":   {"sys/bus/usb/devices", "run/udev"},
		"usb-sandisk-vfat.txt":  nil,
		"usb-kingston-luks.txt": nil,
	} {
		got := newSysfsProbe(loadTree(t, tree)).unobservable()
		if (got == "") != (want == nil) {
			t.Errorf("%s: unobservable() = %q", tree, got)
		}
		for _, w := range want {
			if !strings.Contains(got, filepath.FromSlash(w)) {
				t.Errorf("%s: %q does not name %s", tree, got, w)
			}
		}
	}
}
