package media

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// Instance ids in the form setupapi.dev.log and the USBSTOR registry key show
// them (see testdata/README.md for where each comes from).
func TestParseInstanceID(t *testing.T) {
	tests := []struct {
		id   string
		want instanceID
	}{
		{`USBSTOR\Disk&Ven_SanDisk&Prod_Cruzer_Blade&Rev_1.00\4C530001230512345678&0`,
			instanceID{Class: "Disk", Vendor: "SanDisk", Product: "Cruzer Blade", Revision: "1.00", Serial: "4C530001230512345678"}},
		{`USBSTOR\DISK&VEN_SANDISK&PROD_CRUZER_BLADE&REV_1.00\4C530001230512345678&0`,
			instanceID{Class: "DISK", Vendor: "SANDISK", Product: "CRUZER BLADE", Revision: "1.00", Serial: "4C530001230512345678"}},
		{`USBSTOR\Disk&Ven_Kingston&Prod_DataTraveler_3.0&Rev_PMAP\60A44C3FAE22EEA0797900F7&0`,
			instanceID{Class: "Disk", Vendor: "Kingston", Product: "DataTraveler 3.0", Revision: "PMAP", Serial: "60A44C3FAE22EEA0797900F7"}},
		{`USBSTOR\Disk&Ven_Generic&Prod_Flash_Disk&Rev_8.07\7&2a8b6f3c&0`,
			instanceID{Class: "Disk", Vendor: "Generic", Product: "Flash Disk", Revision: "8.07", Serial: "7&2a8b6f3c&0", SerialGenerated: true}},
		{`USBSTOR\Disk&Ven_&Prod_USB_DISK_2.0&Rev_PMAP\070B2A1B8C5D3F21&0`,
			instanceID{Class: "Disk", Vendor: "", Product: "USB DISK 2.0", Revision: "PMAP", Serial: "070B2A1B8C5D3F21"}},
		{`USBSTOR\Disk&Ven_WD&Prod_Elements_25A2&Rev_1021\575836314142354C39363833&0`,
			instanceID{Class: "Disk", Vendor: "WD", Product: "Elements 25A2", Revision: "1021", Serial: "575836314142354C39363833"}},
		{`USBSTOR\CdRom&Ven_SanDisk&Prod_U3_Cruzer_Micro&Rev_8.02\0000161511737EFB&1`,
			instanceID{Class: "CdRom", Vendor: "SanDisk", Product: "U3 Cruzer Micro", Revision: "8.02", Serial: "0000161511737EFB"}},
		{`USBSTOR\Disk&Ven_Generic-&Prod_Multi-Card&Rev_1.00\20071114173400000&0`,
			instanceID{Class: "Disk", Vendor: "Generic-", Product: "Multi-Card", Revision: "1.00", Serial: "20071114173400000"}},
		{`USBSTOR\Disk&Ven_Samsung&Prod_Flash_Drive_FIT&Rev_1100\0374417040007925&0`,
			instanceID{Class: "Disk", Vendor: "Samsung", Product: "Flash Drive FIT", Revision: "1100", Serial: "0374417040007925"}},
		{`USBSTOR\Disk&Ven_Verbatim&Prod_STORE_N_GO&Rev_5.00\07A80A0193D0C3A1&0`,
			instanceID{Class: "Disk", Vendor: "Verbatim", Product: "STORE N GO", Revision: "5.00", Serial: "07A80A0193D0C3A1"}},
		{`USBSTOR\Disk&Ven_I-O_DATA&Prod_USB_Flash_Disk&Rev_1.00\6&1c3b4d2&0`,
			instanceID{Class: "Disk", Vendor: "I-O DATA", Product: "USB Flash Disk", Revision: "1.00", Serial: "6&1c3b4d2&0", SerialGenerated: true}},
	}
	for _, tt := range tests {
		got, err := parseInstanceID(tt.id)
		if err != nil {
			t.Errorf("%s: %v", tt.id, err)
			continue
		}
		if got != tt.want {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.id, got, tt.want)
		}
	}
	for _, bad := range []string{``, `USB\VID_0781&PID_5567\4C530001230512345678`, `USBSTOR\Disk&Ven_X`, `USBSTOR\Disk&Ven_X\`, `SCSI\Disk&Ven_X\1&0`} {
		if _, err := parseInstanceID(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestParseUSBID(t *testing.T) {
	for _, tt := range []struct{ id, vid, pid string }{
		{`USB\VID_0781&PID_5567\4C530001230512345678`, "0781", "5567"},
		{`USB\VID_0951&PID_1666&MI_00\7&3a1b2c4d&0&0000`, "0951", "1666"},
		{`usb\vid_04E8&pid_61F5\0374417040007925`, "04e8", "61f5"},
	} {
		vid, pid, err := parseUSBID(tt.id)
		if err != nil || vid != tt.vid || pid != tt.pid {
			t.Errorf("%s = %q %q %v", tt.id, vid, pid, err)
		}
	}
	for _, bad := range []string{`USBSTOR\Disk&Ven_X\1&0`, `USB\ROOT_HUB30\4&1a2b3c&0&0`, `USB\VID_78&PID_5567\x`} {
		if _, _, err := parseUSBID(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestParseUdevData(t *testing.T) {
	b := []byte("S:disk/by-id/usb-X\nI:1\nE:ID_VENDOR_ID=0781\nE:ID_FS_LABEL=A=B\nE:=skip\nE:NOEQUALS\nG:systemd\n")
	want := map[string]string{"ID_VENDOR_ID": "0781", "ID_FS_LABEL": "A=B"}
	if got := parseUdevData(b); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v", got)
	}
	if got := parseUdevData(nil); len(got) != 0 {
		t.Fatalf("empty: %v", got)
	}
}

func TestParseMounts(t *testing.T) {
	b := []byte("/dev/sdb1 /media/taro/CRUZER\\040BLADE vfat rw,nosuid 0 0\n" +
		"/dev/sdc1 /media/a\\134b\\011c exfat ro 0 0\nshort line\n/dev/x /y\\04 ext4 rw 0 0\n")
	got := parseMounts(b)
	want := []mountEntry{
		{"/dev/sdb1", "/media/taro/CRUZER BLADE", "vfat", []string{"rw", "nosuid"}},
		{"/dev/sdc1", "/media/a\\b\tc", "exfat", []string{"ro"}},
		{"/dev/x", "/y\\04", "ext4", []string{"rw"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q", got)
	}
}

// descriptor builds a STORAGE_DEVICE_DESCRIPTOR the way the storage stack
// lays it out: header, then NUL-terminated strings.
func descriptor(removable bool, bus uint32, vendor, product, rev, serial string) []byte {
	b := make([]byte, 40)
	binary.LittleEndian.PutUint32(b[0:4], 40)
	off := func(field int, s string) {
		if s == "" {
			return
		}
		binary.LittleEndian.PutUint32(b[field:field+4], uint32(len(b)))
		b = append(b, s...)
		b = append(b, 0)
	}
	if removable {
		b[10] = 1
	}
	binary.LittleEndian.PutUint32(b[28:32], bus)
	off(12, vendor)
	off(16, product)
	off(20, rev)
	off(24, serial)
	binary.LittleEndian.PutUint32(b[4:8], uint32(len(b)))
	return b
}

func TestParseStorageDescriptor(t *testing.T) {
	b := descriptor(true, busTypeUSB, "SanDisk ", "Cruzer Blade    ", "1.00", "4C530001230512345678")
	got, err := parseStorageDescriptor(b)
	want := storageDescriptor{Removable: true, BusType: 7, Vendor: "SanDisk", Product: "Cruzer Blade", Revision: "1.00", Serial: "4C530001230512345678"}
	if err != nil || got != want {
		t.Fatalf("got %+v, %v", got, err)
	}
	// A USB disk reporting itself fixed, without a serial.
	got, err = parseStorageDescriptor(descriptor(false, busTypeUSB, "WD", "Elements 25A2", "1021", ""))
	if err != nil || got.Removable || got.Serial != "" || busName(got.BusType) != "usb" {
		t.Fatalf("got %+v, %v", got, err)
	}
	// Offsets past the reported size are ignored, not read.
	b = descriptor(true, busTypeSD, "V", "", "", "")
	binary.LittleEndian.PutUint32(b[24:28], 9999)
	if got, err := parseStorageDescriptor(b); err != nil || got.Serial != "" || got.Vendor != "V" || busName(got.BusType) != "sd" {
		t.Fatalf("got %+v, %v", got, err)
	}
	for _, bad := range [][]byte{nil, make([]byte, 31), make([]byte, 40)} {
		if _, err := parseStorageDescriptor(bad); err == nil {
			t.Errorf("%d bytes: no error", len(bad))
		}
	}
}

func TestMatchInstance(t *testing.T) {
	mk := func(id string, vid string) usbstorDevice {
		p, err := parseInstanceID(id)
		if err != nil {
			t.Fatal(err)
		}
		return usbstorDevice{InstanceID: id, ID: p, VendorID: vid}
	}
	ids := []usbstorDevice{
		mk(`USBSTOR\Disk&Ven_SanDisk&Prod_Cruzer_Blade&Rev_1.00\4C530001230512345678&0`, "0781"),
		mk(`USBSTOR\Disk&Ven_Generic&Prod_Flash_Disk&Rev_8.07\7&2a8b6f3c&0`, "058f"),
		mk(`USBSTOR\Disk&Ven_Kingston&Prod_DataTraveler_3.0&Rev_PMAP\60A44C3FAE22EEA0797900F7&0`, "0951"),
		mk(`USBSTOR\Disk&Ven_Kingston&Prod_DataTraveler_3.0&Rev_PMAP\50E549C693C0F0A0A9A3017A&0`, "0951"),
	}
	if u, ok := matchInstance(storageDescriptor{Serial: "4c530001230512345678"}, ids); !ok || u.VendorID != "0781" {
		t.Errorf("by serial: %+v %v", u, ok)
	}
	if u, ok := matchInstance(storageDescriptor{Vendor: "Generic", Product: "Flash Disk"}, ids); !ok || !u.ID.SerialGenerated {
		t.Errorf("by vendor/product: %+v %v", u, ok)
	}
	if _, ok := matchInstance(storageDescriptor{Vendor: "Kingston", Product: "DataTraveler 3.0"}, ids); ok {
		t.Error("two Kingston sticks without a serial to tell them apart matched one")
	}
}

func TestIsBitLocker(t *testing.T) {
	bl := make([]byte, 512)
	copy(bl, "\xeb\x58\x90-FVE-FS-")
	fat := make([]byte, 512)
	copy(fat, "\xeb\x58\x90MSDOS5.0")
	ntfs := make([]byte, 512)
	copy(ntfs, "\xeb\x52\x90NTFS    ")
	for _, tt := range []struct {
		name string
		b    []byte
		want bool
	}{{"bitlocker", bl, true}, {"fat32", fat, false}, {"ntfs", ntfs, false}, {"short", bl[:10], false}, {"empty", nil, false}} {
		if got := isBitLocker(tt.b); got != tt.want {
			t.Errorf("%s: %v", tt.name, got)
		}
	}
}

func TestDriveLetters(t *testing.T) {
	if got := driveLetters(1<<2 | 1<<4 | 1<<25); !reflect.DeepEqual(got, []string{"C:", "E:", "Z:"}) {
		t.Fatalf("got %v", got)
	}
	if got := driveLetters(0); got != nil {
		t.Fatalf("got %v", got)
	}
}

func readFixture(t *testing.T, parts ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(append([]string{"testdata"}, parts...)...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDiskutil(t *testing.T) {
	devs, err := diskutilDisks(readFixture(t, "darwin", "diskutil-list-external.plist"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Device{
		{Key: "disk4", Path: "/dev/disk4", CapacityBytes: 15376318464, FS: "DOS_FAT_32", MountPoints: []string{"/Volumes/CRUZER"}},
		{Key: "disk5", Path: "/dev/disk5", CapacityBytes: 2000398934016, FS: "Microsoft Basic Data", MountPoints: []string{"/Volumes/BACKUP 2TB"}},
	}
	if !reflect.DeepEqual(devs, want) {
		t.Fatalf("got %+v", devs)
	}
	if err := applyDiskutilInfo(&devs[0], readFixture(t, "darwin", "diskutil-info-disk4.plist")); err != nil {
		t.Fatal(err)
	}
	if devs[0].Bus != "usb" || devs[0].Product != "SanDisk Cruzer Blade Media" || devs[0].Encrypted {
		t.Fatalf("after info: %+v", devs[0])
	}
	usb, err := profilerUSB(readFixture(t, "darwin", "system_profiler-SPUSBDataType.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if got := usb["disk4"]; got != (usbIDs{VendorID: "0781", ProductID: "5567", Serial: "4C530001230512345678", Vendor: "SanDisk"}) {
		t.Fatalf("usb ids: %+v", got)
	}
	for _, bad := range []string{"", "<plist><dict><key>a</key></dict></plist>", "<plist><dict><string>x</string></dict></plist>", "<plist><integer>x</integer></plist>", "<plist><array>"} {
		if _, err := parsePlist([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
