package media

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// udevProps parses a udev database file (/run/udev/data/b<maj>:<min>, as
// written by systemd-udevd): lines "E:KEY=VALUE" are properties; S:, L:, I:,
// G:, Q:, V: lines are links, priority and tags and are ignored here.
func parseUdevData(b []byte) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "E:") {
			continue
		}
		k, v, ok := strings.Cut(line[2:], "=")
		if ok && k != "" {
			out[k] = v
		}
	}
	return out
}

// mountEntry is one line of /proc/mounts.
type mountEntry struct {
	Source, Target, FSType string
	Options                []string
}

// parseMounts parses /proc/mounts (or /proc/self/mounts); fields are
// separated by spaces and spaces, tabs, newlines and backslashes inside them
// are written as octal escapes (\040).
func parseMounts(b []byte) []mountEntry {
	var out []mountEntry
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 {
			continue
		}
		out = append(out, mountEntry{
			Source: unescapeMount(f[0]), Target: unescapeMount(f[1]), FSType: f[2],
			Options: strings.Split(f[3], ","),
		})
	}
	return out
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				sb.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		sb.WriteByte(s[i])
	}
	return sb.String()
}

// instanceID is what a Windows USBSTOR device instance id says.
type instanceID struct {
	Class           string // Disk, CdRom
	Vendor          string
	Product         string
	Revision        string
	Serial          string
	SerialGenerated bool
}

// parseInstanceID parses a USB mass-storage device instance id such as
// USBSTOR\Disk&Ven_SanDisk&Prod_Cruzer_Blade&Rev_1.00\4C530001230512345678&0.
// The last part is the device's serial plus "&<LUN>"; when its second
// character is '&' (7&2a8b6f3c&0) Windows made it up because the device has
// no serial, and it is returned whole and flagged.
func parseInstanceID(id string) (instanceID, error) {
	parts := strings.Split(id, `\`)
	if len(parts) != 3 || !strings.EqualFold(parts[0], "USBSTOR") {
		return instanceID{}, fmt.Errorf("media: %q is not a USBSTOR instance id", id)
	}
	var r instanceID
	fields := strings.Split(parts[1], "&")
	r.Class = fields[0]
	for _, f := range fields[1:] {
		k, v, ok := strings.Cut(f, "_")
		if !ok {
			continue
		}
		v = strings.TrimRight(strings.ReplaceAll(v, "_", " "), " ")
		switch strings.ToLower(k) {
		case "ven":
			r.Vendor = v
		case "prod":
			r.Product = v
		case "rev":
			r.Revision = v
		}
	}
	s := parts[2]
	if s == "" {
		return instanceID{}, fmt.Errorf("media: %q has no serial part", id)
	}
	if len(s) > 1 && s[1] == '&' {
		r.Serial, r.SerialGenerated = s, true
		return r, nil
	}
	if i := strings.LastIndexByte(s, '&'); i > 0 {
		if _, err := strconv.Atoi(s[i+1:]); err == nil {
			s = s[:i] // "&0": the LUN, not part of the serial
		}
	}
	r.Serial = s
	return r, nil
}

// parseUSBID reads VID and PID from a USB device instance id such as
// USB\VID_0781&PID_5567\4C530001230512345678 (the parent of a USBSTOR node).
func parseUSBID(id string) (vid, pid string, err error) {
	parts := strings.Split(id, `\`)
	if len(parts) < 2 || !strings.EqualFold(parts[0], "USB") {
		return "", "", fmt.Errorf("media: %q is not a USB instance id", id)
	}
	for _, f := range strings.Split(parts[1], "&") {
		k, v, ok := strings.Cut(f, "_")
		if !ok {
			continue
		}
		switch strings.ToUpper(k) {
		case "VID":
			vid = strings.ToLower(v)
		case "PID":
			pid = strings.ToLower(v)
		}
	}
	if len(vid) != 4 || len(pid) != 4 {
		return "", "", fmt.Errorf("media: %q has no VID_xxxx&PID_xxxx", id)
	}
	return vid, pid, nil
}

// bitLockerSignature sits at offset 3 of a BitLocker volume's boot sector,
// where a FAT or NTFS volume has its OEM name.
const bitLockerSignature = "-FVE-FS-"

// isBitLocker reports whether a volume boot sector is BitLocker's.
func isBitLocker(bootSector []byte) bool {
	return len(bootSector) >= 3+len(bitLockerSignature) &&
		string(bootSector[3:3+len(bitLockerSignature)]) == bitLockerSignature
}

// errNoUSBDevice: a block device not on USB (an SD slot, say) cannot be
// deauthorized.
var errNoUSBDevice = errors.New("media: device is not on a USB port; cannot deauthorize it")
