package media

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// Windows STORAGE_BUS_TYPE values the probe cares about.
const (
	busTypeUSB = 7
	busTypeSD  = 0x0c
	busTypeMMC = 0x0d
)

// storageDescriptor is the part of a Windows STORAGE_DEVICE_DESCRIPTOR
// (IOCTL_STORAGE_QUERY_PROPERTY, StorageDeviceProperty) the probe uses.
type storageDescriptor struct {
	Removable bool
	BusType   uint32
	Vendor    string
	Product   string
	Revision  string
	Serial    string
}

// parseStorageDescriptor decodes STORAGE_DEVICE_DESCRIPTOR:
//
//	DWORD Version, Size; BYTE DeviceType, DeviceTypeModifier;
//	BOOLEAN RemovableMedia, CommandQueueing;
//	DWORD VendorIdOffset, ProductIdOffset, ProductRevisionOffset,
//	      SerialNumberOffset; STORAGE_BUS_TYPE BusType; ...
//
// Offsets point at NUL-terminated ASCII strings in the same buffer; 0 (or
// an offset past the end) means absent.
func parseStorageDescriptor(b []byte) (storageDescriptor, error) {
	if len(b) < 32 {
		return storageDescriptor{}, fmt.Errorf("media: storage descriptor is %d bytes, need 32", len(b))
	}
	size := int(binary.LittleEndian.Uint32(b[4:8]))
	if size < 32 {
		return storageDescriptor{}, fmt.Errorf("media: storage descriptor says size %d", size)
	}
	if size < len(b) {
		b = b[:size]
	}
	str := func(off uint32) string {
		if off == 0 || int(off) >= len(b) {
			return ""
		}
		s := b[off:]
		if i := strings.IndexByte(string(s), 0); i >= 0 {
			s = s[:i]
		}
		return strings.TrimSpace(string(s))
	}
	le := binary.LittleEndian
	return storageDescriptor{
		Removable: b[10] != 0,
		Vendor:    str(le.Uint32(b[12:16])),
		Product:   str(le.Uint32(b[16:20])),
		Revision:  str(le.Uint32(b[20:24])),
		Serial:    str(le.Uint32(b[24:28])),
		BusType:   le.Uint32(b[28:32]),
	}, nil
}

func busName(t uint32) string {
	switch t {
	case busTypeUSB:
		return "usb"
	case busTypeSD:
		return "sd"
	case busTypeMMC:
		return "mmc"
	}
	return fmt.Sprintf("bus%d", t)
}

// driveLetters turns a GetLogicalDrives mask into "A:".."Z:".
func driveLetters(mask uint32) []string {
	var out []string
	for i := 0; i < 26; i++ {
		if mask&(1<<i) != 0 {
			out = append(out, string(rune('A'+i))+":")
		}
	}
	return out
}

// matchInstance picks the USBSTOR instance that belongs to a volume's
// storage descriptor: same serial, or, for devices without one, the single
// instance with the same vendor and product.
func matchInstance(sd storageDescriptor, ids []usbstorDevice) (usbstorDevice, bool) {
	if sd.Serial != "" {
		for _, u := range ids {
			if !u.ID.SerialGenerated && strings.EqualFold(u.ID.Serial, sd.Serial) {
				return u, true
			}
		}
	}
	var found []usbstorDevice
	for _, u := range ids {
		if strings.EqualFold(u.ID.Vendor, sd.Vendor) && strings.EqualFold(u.ID.Product, sd.Product) {
			found = append(found, u)
		}
	}
	if len(found) == 1 {
		return found[0], true
	}
	return usbstorDevice{}, false
}

// usbstorDevice is one present USBSTOR node and its USB parent's ids.
type usbstorDevice struct {
	InstanceID string
	ID         instanceID
	VendorID   string
	ProductID  string
}
