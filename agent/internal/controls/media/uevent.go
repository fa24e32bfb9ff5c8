package media

import (
	"bytes"
	"strings"
)

// uevent is one kernel uevent (NETLINK_KOBJECT_UEVENT): "ACTION@DEVPATH"
// then KEY=VALUE fields, all NUL-terminated. Messages udevd re-broadcasts
// (group 2, "libudev" header) are not read.
type uevent struct {
	Action, DevPath, Subsystem, DevName string
}

func parseUevent(b []byte) (uevent, bool) {
	parts := bytes.Split(b, []byte{0})
	if len(parts) < 2 {
		return uevent{}, false
	}
	head := string(parts[0])
	action, devpath, ok := strings.Cut(head, "@")
	if !ok || action == "" || !strings.HasPrefix(devpath, "/") {
		return uevent{}, false
	}
	u := uevent{Action: action, DevPath: devpath}
	for _, p := range parts[1:] {
		k, v, ok := strings.Cut(string(p), "=")
		if !ok {
			continue
		}
		switch k {
		case "ACTION":
			u.Action = v
		case "SUBSYSTEM":
			u.Subsystem = v
		case "DEVNAME":
			u.DevName = v
		}
	}
	return u, true
}

// wakes reports whether a uevent may change what list returns: block
// devices and USB devices coming, going or changing media.
func (u uevent) wakes() bool {
	switch u.Subsystem {
	case "block", "usb":
	default:
		return false
	}
	switch u.Action {
	case "add", "remove", "change", "bind", "unbind":
		return true
	}
	return false
}
