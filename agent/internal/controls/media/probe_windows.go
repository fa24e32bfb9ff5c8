package media

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"

	"github.com/mamori/mamori/agent/internal/controls"
)

// Device I/O control codes x/sys does not define (winioctl.h).
const (
	ioctlStorageQueryProperty = 0x002d1400
	ioctlStorageGetDeviceNum  = 0x002d1080
	ioctlStorageEjectMedia    = 0x002d4808
	ioctlDiskGetLengthInfo    = 0x0007405c
	ioctlDiskSetDiskAttrs     = 0x0007c0f4
	fsctlLockVolume           = 0x00090018
	fsctlDismountVolume       = 0x00090020
	diskAttributeReadOnly     = 0x2
)

// removableDisksKey is the Removable Disks class of the RemovableStorageDevices
// group policy (Deny_Read, Deny_Write DWORDs under HKLM).
const removableDisksKey = `SOFTWARE\Policies\Microsoft\Windows\RemovableStorageDevices\{53f5630d-b6bf-11d0-94f2-00a0c91efb8b}`

// markerKey remembers which deny values the agent set, so that it clears only
// its own and never an admin's GPO.
const markerKey = `SOFTWARE\Mamori\Agent\media`

// devpkeyDeviceParent is DEVPKEY_Device_Parent.
var devpkeyDeviceParent = windows.DEVPROPKEY{
	FmtID: windows.DEVPROPGUID{Data1: 0x4340a6c5, Data2: 0x93fa, Data3: 0x4706, Data4: [8]byte{0x97, 0x2c, 0x7b, 0x64, 0x80, 0x08, 0xa5, 0xa7}},
	PID:   8,
}

type winProbe struct {
	root      registry.Key
	policyKey string
	markerKey string

	mu     sync.Mutex
	cache  map[string]Device       // identity by Device.Key
	locked map[string]lockedVolume // by drive letter: volumes held locked
}

// lockedVolume is a blocked volume the probe keeps locked: a dismounted
// volume would be mounted again on the next access, a held lock prevents it.
type lockedVolume struct {
	h   windows.Handle
	dev Device
}

func newProbe(controls.Env) probe {
	return &winProbe{root: registry.LOCAL_MACHINE, policyKey: removableDisksKey, markerKey: markerKey}
}

func (p *winProbe) list(ctx context.Context) ([]Device, error) {
	mask, err := windows.GetLogicalDrives()
	if err != nil {
		return nil, fmt.Errorf("media: GetLogicalDrives: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cache == nil {
		p.cache = map[string]Device{}
	}
	var ids []usbstorDevice
	var out []Device
	present := map[string]bool{}
	for letter, l := range p.locked {
		if mask&(1<<(letter[0]-'A')) == 0 { // pulled out while held
			windows.CloseHandle(l.h)
			delete(p.locked, letter)
		}
	}
	for _, letter := range driveLetters(mask) {
		if d, ok := p.locked[letter]; ok { // ours: the volume is held locked
			out = append(out, d.dev)
			present[d.dev.Key] = true
			continue
		}
		root, _ := windows.UTF16PtrFromString(letter + `\`)
		t := windows.GetDriveType(root)
		if t != windows.DRIVE_REMOVABLE && t != windows.DRIVE_FIXED {
			continue
		}
		sd, sdErr := queryStorage(`\\.\` + letter)
		if t == windows.DRIVE_FIXED && (sdErr != nil || sd.BusType != busTypeUSB) {
			continue // an internal disk
		}
		key := letter + "|" + sd.Serial // another stick in the same letter is another device
		present[key] = true
		if d, ok := p.cache[key]; ok {
			out = append(out, d)
			continue
		}
		if ids == nil {
			ids, _ = usbstorDevices() // identity is a bonus; drives are found without it
		}
		d := identify(letter, sd, sdErr, ids)
		d.Key = key
		p.cache[key] = d
		out = append(out, d)
	}
	for k := range p.cache {
		if !present[k] {
			delete(p.cache, k)
		}
	}
	return out, nil
}

// identify reads what does not change while a device stays: ids, file
// system, size, BitLocker. It runs once per insertion, not every poll.
func identify(letter string, sd storageDescriptor, sdErr error, ids []usbstorDevice) Device {
	d := Device{Path: `\\.\` + letter, MountPoints: []string{letter + `\`}}
	if sdErr == nil {
		d.Vendor, d.Product, d.Revision, d.Serial, d.Bus = sd.Vendor, sd.Product, sd.Revision, sd.Serial, busName(sd.BusType)
		if u, ok := matchInstance(sd, ids); ok {
			d.VendorID, d.ProductID = u.VendorID, u.ProductID
			d.Serial, d.SerialGenerated = u.ID.Serial, u.ID.SerialGenerated
		}
	}
	d.FS = volumeFS(letter)
	d.CapacityBytes = volumeLength(d.Path)
	if bs, err := readBootSector(d.Path); err == nil && isBitLocker(bs) {
		d.Encrypted = true
		if d.FS == "" {
			d.FS = "BitLocker"
		}
	}
	return d
}

func openVolume(path string, access uint32) (windows.Handle, error) {
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return 0, err
	}
	return windows.CreateFile(p, access, windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE, nil, windows.OPEN_EXISTING, 0, 0)
}

func queryStorage(path string) (storageDescriptor, error) {
	h, err := openVolume(path, 0) // no access needed to query properties
	if err != nil {
		return storageDescriptor{}, err
	}
	defer windows.CloseHandle(h)
	var query [12]byte // STORAGE_PROPERTY_QUERY{StorageDeviceProperty, PropertyStandardQuery}
	buf := make([]byte, 1024)
	var n uint32
	if err := windows.DeviceIoControl(h, ioctlStorageQueryProperty, &query[0], uint32(len(query)), &buf[0], uint32(len(buf)), &n, nil); err != nil {
		return storageDescriptor{}, fmt.Errorf("media: IOCTL_STORAGE_QUERY_PROPERTY %s: %w", path, err)
	}
	return parseStorageDescriptor(buf[:n])
}

func volumeFS(letter string) string {
	root, _ := windows.UTF16PtrFromString(letter + `\`)
	fs := make([]uint16, windows.MAX_PATH+1)
	if err := windows.GetVolumeInformation(root, nil, 0, nil, nil, nil, &fs[0], uint32(len(fs))); err != nil {
		return ""
	}
	return windows.UTF16ToString(fs)
}

func volumeLength(path string) int64 {
	h, err := openVolume(path, windows.GENERIC_READ)
	if err != nil {
		return 0
	}
	defer windows.CloseHandle(h)
	var buf [8]byte
	var n uint32
	if err := windows.DeviceIoControl(h, ioctlDiskGetLengthInfo, nil, 0, &buf[0], 8, &n, nil); err != nil {
		return 0
	}
	return int64(binary.LittleEndian.Uint64(buf[:]))
}

// readBootSector reads the volume's first sector: a BitLocker volume has
// -FVE-FS- where FAT and NTFS have their OEM name.
func readBootSector(path string) ([]byte, error) {
	h, err := openVolume(path, windows.GENERIC_READ)
	if err != nil {
		return nil, err
	}
	defer windows.CloseHandle(h)
	buf := make([]byte, 4096) // volume reads must be sector multiples
	var n uint32
	if err := windows.ReadFile(h, buf, &n, nil); err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// usbstorDevices lists present USBSTOR nodes with their USB parents' ids.
func usbstorDevices() ([]usbstorDevice, error) {
	set, err := windows.SetupDiGetClassDevsEx(nil, "USBSTOR", 0, windows.DIGCF_PRESENT|windows.DIGCF_ALLCLASSES, 0, "")
	if err != nil {
		return nil, fmt.Errorf("media: SetupDiGetClassDevsEx: %w", err)
	}
	defer set.Close()
	var out []usbstorDevice
	for i := 0; ; i++ {
		data, err := set.EnumDeviceInfo(i)
		if errors.Is(err, windows.ERROR_NO_MORE_ITEMS) {
			break
		}
		if err != nil {
			continue
		}
		inst, err := set.DeviceInstanceID(data)
		if err != nil {
			continue
		}
		id, err := parseInstanceID(inst)
		if err != nil {
			continue
		}
		u := usbstorDevice{InstanceID: inst, ID: id}
		if v, err := windows.SetupDiGetDeviceProperty(set, data, &devpkeyDeviceParent); err == nil {
			if s, ok := v.(string); ok {
				u.VendorID, u.ProductID, _ = parseUSBID(s)
			}
		}
		out = append(out, u)
	}
	return out, nil
}

// enforce: block locks and dismounts the volume and ejects the medium;
// read_only sets the disk's read-only attribute (what diskpart "attributes
// disk set readonly" does) and dismounts so the volume comes back read-only.
func (p *winProbe) enforce(ctx context.Context, d Device, action string) (string, error) {
	var done []string
	if action == "read_only" {
		if err := setDiskReadOnly(d.Path); err != nil {
			return "", err
		}
		done = append(done, "disk attribute read-only")
	} else if action != "block" {
		return "", fmt.Errorf("media: unknown action %q", action)
	}
	h, err := openVolume(d.Path, windows.GENERIC_READ|windows.GENERIC_WRITE)
	if err != nil {
		return strings.Join(done, "; "), fmt.Errorf("media: open %s: %w", d.Path, err)
	}
	keep := false
	defer func() {
		if !keep {
			windows.CloseHandle(h)
		}
	}()
	var n uint32
	locked := windows.DeviceIoControl(h, fsctlLockVolume, nil, 0, nil, 0, &n, nil) == nil
	if locked {
		done = append(done, "locked")
	} else {
		// Files are open on it: dismount anyway, which invalidates their handles.
		done = append(done, "lock refused")
	}
	if err := windows.DeviceIoControl(h, fsctlDismountVolume, nil, 0, nil, 0, &n, nil); err != nil {
		return strings.Join(done, "; "), fmt.Errorf("media: FSCTL_DISMOUNT_VOLUME %s: %w", d.Path, err)
	}
	done = append(done, "dismounted")
	if action != "block" {
		return strings.Join(done, "; "), nil
	}
	if windows.DeviceIoControl(h, ioctlStorageEjectMedia, nil, 0, nil, 0, &n, nil) == nil {
		done = append(done, "ejected")
	}
	if !locked {
		// Without the lock Windows mounts it again on the next access.
		return strings.Join(done, "; "), fmt.Errorf("media: FSCTL_LOCK_VOLUME %s refused: the volume was dismounted but can come back", d.Path)
	}
	keep = true
	letter := strings.TrimPrefix(d.Path, `\\.\`)
	p.mu.Lock()
	if p.locked == nil {
		p.locked = map[string]lockedVolume{}
	}
	p.locked[letter] = lockedVolume{h: h, dev: d}
	p.mu.Unlock()
	return strings.Join(done, "; ") + "; held locked", nil
}

// release lets go of a volume the probe holds locked (the device is allowed
// now, or gone).
func (p *winProbe) release(d Device) {
	letter := strings.TrimPrefix(d.Path, `\\.\`)
	p.mu.Lock()
	defer p.mu.Unlock()
	if l, ok := p.locked[letter]; ok {
		windows.CloseHandle(l.h)
		delete(p.locked, letter)
	}
}

// setDiskReadOnly finds the volume's disk and sets DISK_ATTRIBUTE_READ_ONLY.
func setDiskReadOnly(volume string) error {
	h, err := openVolume(volume, 0)
	if err != nil {
		return fmt.Errorf("media: open %s: %w", volume, err)
	}
	var num [12]byte // STORAGE_DEVICE_NUMBER{DeviceType, DeviceNumber, PartitionNumber}
	var n uint32
	err = windows.DeviceIoControl(h, ioctlStorageGetDeviceNum, nil, 0, &num[0], uint32(len(num)), &n, nil)
	windows.CloseHandle(h)
	if err != nil {
		return fmt.Errorf("media: IOCTL_STORAGE_GET_DEVICE_NUMBER %s: %w", volume, err)
	}
	disk := fmt.Sprintf(`\\.\PhysicalDrive%d`, binary.LittleEndian.Uint32(num[4:8]))
	dh, err := openVolume(disk, windows.GENERIC_READ|windows.GENERIC_WRITE)
	if err != nil {
		return fmt.Errorf("media: open %s: %w", disk, err)
	}
	defer windows.CloseHandle(dh)
	// SET_DISK_ATTRIBUTES{Version=40, Persist, Reserved1[3], Attributes, AttributesMask, Reserved2[4]}
	var in [40]byte
	binary.LittleEndian.PutUint32(in[0:4], 40)
	binary.LittleEndian.PutUint64(in[8:16], diskAttributeReadOnly)
	binary.LittleEndian.PutUint64(in[16:24], diskAttributeReadOnly)
	if err := windows.DeviceIoControl(dh, ioctlDiskSetDiskAttrs, &in[0], uint32(len(in)), nil, 0, &n, nil); err != nil {
		return fmt.Errorf("media: IOCTL_DISK_SET_DISK_ATTRIBUTES %s: %w", disk, err)
	}
	return nil
}

// classPolicy sets Deny_Read/Deny_Write on the Removable Disks class. A value
// is removed only when the agent set it (marker key), so an admin's own GPO
// stays as it is.
func (p *winProbe) classPolicy(ctx context.Context, denyRead, denyWrite bool) error {
	k, _, err := registry.CreateKey(p.root, p.policyKey, registry.SET_VALUE|registry.QUERY_VALUE)
	if err != nil {
		return fmt.Errorf("media: open policy key: %w", err)
	}
	defer k.Close()
	mk, _, err := registry.CreateKey(p.root, p.markerKey, registry.SET_VALUE|registry.QUERY_VALUE)
	if err != nil {
		return fmt.Errorf("media: open marker key: %w", err)
	}
	defer mk.Close()
	for _, v := range []struct {
		name string
		on   bool
	}{{"Deny_Read", denyRead}, {"Deny_Write", denyWrite}} {
		if v.on {
			if err := k.SetDWordValue(v.name, 1); err != nil {
				return fmt.Errorf("media: set %s: %w", v.name, err)
			}
			if err := mk.SetDWordValue("Set_"+v.name, 1); err != nil {
				return fmt.Errorf("media: set marker: %w", err)
			}
			continue
		}
		if ours, _, err := mk.GetIntegerValue("Set_" + v.name); err != nil || ours != 1 {
			continue
		}
		if err := k.DeleteValue(v.name); err != nil && !errors.Is(err, registry.ErrNotExist) {
			return fmt.Errorf("media: clear %s: %w", v.name, err)
		}
		if err := mk.DeleteValue("Set_" + v.name); err != nil && !errors.Is(err, registry.ErrNotExist) {
			return fmt.Errorf("media: clear marker: %w", err)
		}
	}
	return nil
}

// readClassPolicy returns the Deny_Read and Deny_Write values (absent = 0).
func (p *winProbe) readClassPolicy() (denyRead, denyWrite uint64, err error) {
	k, err := registry.OpenKey(p.root, p.policyKey, registry.QUERY_VALUE)
	if errors.Is(err, registry.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("media: open policy key: %w", err)
	}
	defer k.Close()
	denyRead, _, _ = k.GetIntegerValue("Deny_Read")
	denyWrite, _, _ = k.GetIntegerValue("Deny_Write")
	return denyRead, denyWrite, nil
}
