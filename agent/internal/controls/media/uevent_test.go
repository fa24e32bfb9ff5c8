package media

import (
	"bufio"
	"bytes"
	"testing"
)

func TestParseUeventCaptured(t *testing.T) {
	b := readFixture(t, "linux", "uevents.txt")
	sc := bufio.NewScanner(bytes.NewReader(b))
	n := 0
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		msg := bytes.ReplaceAll(line, []byte("|"), []byte{0})
		u, ok := parseUevent(msg)
		if !ok {
			t.Fatalf("%q: not parsed", line)
		}
		if u != (uevent{Action: "change", DevPath: "/devices/virtual/block/loop0", Subsystem: "block", DevName: "loop0"}) || !u.wakes() {
			t.Fatalf("%q: %+v", line, u)
		}
		n++
	}
	if n != 2 {
		t.Fatalf("%d messages", n)
	}
}

func TestParseUevent(t *testing.T) {
	add := []byte("add@/devices/pci0000:00/0000:00:14.0/usb2/2-1\x00ACTION=add\x00DEVPATH=/devices/pci0000:00/0000:00:14.0/usb2/2-1\x00SUBSYSTEM=usb\x00DEVTYPE=usb_device\x00PRODUCT=781/5567/100\x00SEQNUM=4711\x00")
	u, ok := parseUevent(add)
	if !ok || u.Action != "add" || u.Subsystem != "usb" || !u.wakes() {
		t.Fatalf("%+v %v", u, ok)
	}
	net := []byte("add@/devices/virtual/net/veth0\x00ACTION=add\x00SUBSYSTEM=net\x00")
	if u, ok := parseUevent(net); !ok || u.wakes() {
		t.Fatalf("net: %+v %v", u, ok)
	}
	bind := []byte("bind@/devices/x\x00ACTION=bind\x00SUBSYSTEM=usb\x00")
	if u, _ := parseUevent(bind); !u.wakes() {
		t.Fatal("bind does not wake")
	}
	for _, bad := range [][]byte{nil, []byte("libudev\x00\xfe\xed"), []byte("garbage"), []byte("add@relative\x00SUBSYSTEM=block\x00")} {
		if _, ok := parseUevent(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}
