package media

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// parsePlist decodes an XML property list (what `diskutil ... -plist`
// prints) into map[string]any, []any, string, int64, float64 and bool.
func parsePlist(b []byte) (any, error) {
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = false
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, fmt.Errorf("media: plist: %w", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "plist" {
			v, end, err := plistValue(d)
			if err != nil {
				return nil, err
			}
			if end {
				return nil, errors.New("media: plist: empty")
			}
			return v, nil
		}
	}
}

// plistValue reads the next value; end is true when the enclosing element
// closed instead.
func plistValue(d *xml.Decoder) (v any, end bool, err error) {
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return nil, false, errors.New("media: plist: truncated")
		}
		if err != nil {
			return nil, false, fmt.Errorf("media: plist: %w", err)
		}
		switch t := tok.(type) {
		case xml.EndElement:
			return nil, true, nil
		case xml.StartElement:
			switch t.Name.Local {
			case "dict":
				m := map[string]any{}
				for {
					kt, kend, err := plistValue(d)
					if err != nil {
						return nil, false, err
					}
					if kend {
						return m, false, nil
					}
					k, ok := kt.(plistKey)
					if !ok {
						return nil, false, errors.New("media: plist: dict value without key")
					}
					val, vend, err := plistValue(d)
					if err != nil {
						return nil, false, err
					}
					if vend {
						return nil, false, errors.New("media: plist: key without value")
					}
					m[string(k)] = val
				}
			case "array":
				var a []any
				for {
					val, aend, err := plistValue(d)
					if err != nil {
						return nil, false, err
					}
					if aend {
						return a, false, nil
					}
					a = append(a, val)
				}
			case "true", "false":
				if err := d.Skip(); err != nil {
					return nil, false, fmt.Errorf("media: plist: %w", err)
				}
				return t.Name.Local == "true", false, nil
			default:
				var s string
				if err := d.DecodeElement(&s, &t); err != nil {
					return nil, false, fmt.Errorf("media: plist: %w", err)
				}
				switch t.Name.Local {
				case "key":
					return plistKey(s), false, nil
				case "integer":
					n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
					if err != nil {
						return nil, false, fmt.Errorf("media: plist: integer %q", s)
					}
					return n, false, nil
				case "real":
					f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
					if err != nil {
						return nil, false, fmt.Errorf("media: plist: real %q", s)
					}
					return f, false, nil
				default: // string, date, data
					return s, false, nil
				}
			}
		}
	}
}

type plistKey string

func pstr(m map[string]any, k string) string { s, _ := m[k].(string); return s }
func pint(m map[string]any, k string) int64  { n, _ := m[k].(int64); return n }
func pbool(m map[string]any, k string) bool  { b, _ := m[k].(bool); return b }
func pdicts(m map[string]any, k string) []map[string]any {
	var out []map[string]any
	a, _ := m[k].([]any)
	for _, v := range a {
		if d, ok := v.(map[string]any); ok {
			out = append(out, d)
		}
	}
	return out
}

// diskutilDisks turns `diskutil list -plist external` into one Device per
// whole disk, with its partitions' mounts and file systems.
func diskutilDisks(list []byte) ([]Device, error) {
	v, err := parsePlist(list)
	if err != nil {
		return nil, err
	}
	root, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("media: diskutil list: not a dict")
	}
	var out []Device
	for _, disk := range pdicts(root, "AllDisksAndPartitions") {
		id := pstr(disk, "DeviceIdentifier")
		if id == "" {
			continue
		}
		d := Device{Key: id, Path: "/dev/" + id, CapacityBytes: pint(disk, "Size")}
		parts := append(pdicts(disk, "Partitions"), pdicts(disk, "APFSVolumes")...)
		if len(parts) == 0 {
			parts = []map[string]any{disk} // a medium without a partition table
		}
		for _, p := range parts {
			if mp := pstr(p, "MountPoint"); mp != "" {
				d.MountPoints = append(d.MountPoints, mp)
			}
			if c := pstr(p, "Content"); c != "" && d.FS == "" && !strings.HasSuffix(c, "_scheme") && c != "EFI" {
				d.FS = c
			}
		}
		out = append(out, d)
	}
	return out, nil
}

// applyDiskutilInfo adds what `diskutil info -plist <disk>` says: bus,
// product name, and for volumes file system and encryption.
func applyDiskutilInfo(d *Device, info []byte) error {
	v, err := parsePlist(info)
	if err != nil {
		return err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return errors.New("media: diskutil info: not a dict")
	}
	if b := pstr(m, "BusProtocol"); b != "" {
		d.Bus = strings.ToLower(b)
	}
	if n := pstr(m, "MediaName"); n != "" {
		d.Product = n
	}
	if n := pint(m, "TotalSize"); n > 0 && d.CapacityBytes == 0 {
		d.CapacityBytes = n
	}
	if fs := pstr(m, "FilesystemType"); fs != "" {
		d.FS = fs
	}
	if pbool(m, "Encryption") || pbool(m, "FileVault") || pstr(m, "Content") == "Apple_CoreStorage" {
		d.Encrypted = true
	}
	return nil
}

// usbIDs is what system_profiler says about the USB device behind a disk.
type usbIDs struct{ VendorID, ProductID, Serial, Vendor string }

// profilerUSB maps BSD disk names ("disk4") to USB ids from
// `system_profiler SPUSBDataType -xml`: devices nest under buses and hubs in
// _items, and a storage device lists its disks in Media[].bsd_name.
func profilerUSB(b []byte) (map[string]usbIDs, error) {
	v, err := parsePlist(b)
	if err != nil {
		return nil, err
	}
	out := map[string]usbIDs{}
	var walk func(any)
	walk = func(v any) {
		switch t := v.(type) {
		case []any:
			for _, x := range t {
				walk(x)
			}
		case map[string]any:
			ids := usbIDs{
				VendorID:  hexID(pstr(t, "vendor_id")),
				ProductID: hexID(pstr(t, "product_id")),
				Serial:    pstr(t, "serial_num"),
				Vendor:    pstr(t, "manufacturer"),
			}
			for _, m := range pdicts(t, "Media") {
				if n := pstr(m, "bsd_name"); n != "" {
					out[n] = ids
				}
			}
			walk(t["_items"])
		}
	}
	walk(v)
	return out, nil
}

// hexID turns "0x0781  (SanDisk Corporation)" into "0781".
func hexID(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, ' '); i >= 0 {
		s = s[:i]
	}
	return strings.ToLower(strings.TrimPrefix(s, "0x"))
}
