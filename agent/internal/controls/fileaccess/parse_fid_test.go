package fileaccess

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"strings"
	"testing"
)

// fidInfoBytes builds a struct fanotify_event_info_fid as the kernel writes
// it: header {type, pad, len}, fsid, struct file_handle {handle_bytes,
// handle_type, f_handle}, the NUL-terminated name for *_NAME types, zero
// padding to a multiple of 4 (FANOTIFY_INFO_HDR_LEN).
func fidInfoBytes(typ uint8, fsid [2]int32, htype int32, handle []byte, name string) []byte {
	b := make([]byte, 20, 64)
	b[0] = typ
	binary.LittleEndian.PutUint32(b[4:], uint32(fsid[0]))
	binary.LittleEndian.PutUint32(b[8:], uint32(fsid[1]))
	binary.LittleEndian.PutUint32(b[12:], uint32(len(handle)))
	binary.LittleEndian.PutUint32(b[16:], uint32(htype))
	b = append(b, handle...)
	if typ == fanInfoDFIDName || typ == fanInfoOldDFIDName || typ == fanInfoNewDFIDName {
		b = append(b, name...)
		b = append(b, 0)
	}
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	binary.LittleEndian.PutUint16(b[2:], uint16(len(b)))
	return b
}

// fidEventBytes builds struct fanotify_event_metadata (version 3, fd
// FAN_NOFD) followed by the info records.
func fidEventBytes(mask uint64, pid int32, infos ...[]byte) []byte {
	b := make([]byte, 24)
	b[4] = 3
	binary.LittleEndian.PutUint16(b[6:], 24)
	binary.LittleEndian.PutUint64(b[8:], mask)
	binary.LittleEndian.PutUint32(b[16:], 0xffffffff) // FAN_NOFD
	binary.LittleEndian.PutUint32(b[20:], uint32(pid))
	for _, in := range infos {
		b = append(b, in...)
	}
	binary.LittleEndian.PutUint32(b[0:], uint32(len(b)))
	return b
}

func TestParseFanotifyFID(t *testing.T) {
	fsid := [2]int32{-1589349478, 1734042913}
	// ext4 handles are FILEID_INO32_GEN (type 1): inode, generation.
	dir := []byte{0x02, 0x00, 0x0c, 0x00, 0xa1, 0x5b, 0x33, 0x09}
	child := []byte{0x17, 0x00, 0x0c, 0x00, 0x02, 0x7f, 0x11, 0x42}
	newDir := []byte{0x99, 0x01, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x01}
	pidfd := []byte{4, 0, 8, 0, 7, 0, 0, 0} // FAN_EVENT_INFO_TYPE_PIDFD: skipped
	var in []byte
	in = append(in, fidEventBytes(fanRename, 4242,
		fidInfoBytes(fanInfoOldDFIDName, fsid, 1, dir, "名簿.csv"),
		fidInfoBytes(fanInfoNewDFIDName, fsid, 1, newDir, "名簿-旧.csv"),
		fidInfoBytes(fanInfoFID, fsid, 1, child, ""),
		pidfd)...)
	in = append(in, fidEventBytes(fanDelete|fanOnDir, 77,
		fidInfoBytes(fanInfoDFIDName, fsid, 1, dir, "2026"),
		fidInfoBytes(fanInfoFID, fsid, 1, child, ""))...)
	in = append(in, fidEventBytes(fanCreate, 78, fidInfoBytes(fanInfoDFIDName, fsid, 1, dir, "a"))...)
	in = append(in, fidEventBytes(fanOverflow, -1)...)
	evs, err := parseFanotifyFID(in)
	if err != nil {
		t.Fatal(err)
	}
	want := []fidEvent{
		{mask: fanRename, pid: 4242, recs: []fidRecord{
			{typ: fanInfoOldDFIDName, fsid: fsid, htype: 1, handle: dir, name: "名簿.csv"},
			{typ: fanInfoNewDFIDName, fsid: fsid, htype: 1, handle: newDir, name: "名簿-旧.csv"},
			{typ: fanInfoFID, fsid: fsid, htype: 1, handle: child}}},
		{mask: fanDelete | fanOnDir, pid: 77, recs: []fidRecord{
			{typ: fanInfoDFIDName, fsid: fsid, htype: 1, handle: dir, name: "2026"},
			{typ: fanInfoFID, fsid: fsid, htype: 1, handle: child}}},
		{mask: fanCreate, pid: 78, recs: []fidRecord{{typ: fanInfoDFIDName, fsid: fsid, htype: 1, handle: dir, name: "a"}}},
		{mask: fanOverflow, pid: -1},
	}
	if !reflect.DeepEqual(evs, want) {
		t.Fatalf("got  %+v\nwant %+v", evs, want)
	}
	// The same directory handle is one key across events; another is not.
	if evs[0].recs[0].key() != evs[1].recs[0].key() || evs[0].recs[0].key() == evs[0].recs[1].key() {
		t.Fatal("handle keys do not identify directories")
	}
	if r, ok := evs[1].record(fanInfoFID); !ok || !bytes.Equal(r.handle, child) {
		t.Fatalf("target fid %+v %v", r, ok)
	}
	// Handles are copies: the caller reuses its read buffer.
	for i := range in {
		in[i] = 0
	}
	if !bytes.Equal(evs[0].recs[0].handle, dir) {
		t.Fatal("handle aliases the read buffer")
	}
}

func TestParseFanotifyFIDRefuses(t *testing.T) {
	fsid := [2]int32{1, 2}
	good := fidEventBytes(fanDelete, 9, fidInfoBytes(fanInfoDFIDName, fsid, 1, []byte{1, 2, 3, 4, 5, 6, 7, 8}, "x.csv"))
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	for name, in := range map[string][]byte{
		"truncated metadata": good[:20],
		"truncated event":    good[:len(good)-4],
		"version 2":          mut(func(b []byte) []byte { b[4] = 2; return b }),
		"metadata too long":  mut(func(b []byte) []byte { binary.LittleEndian.PutUint16(b[6:], uint16(len(b)+1)); return b }),
		"info past event":    mut(func(b []byte) []byte { binary.LittleEndian.PutUint16(b[26:], 200); return b }),
		"info under header":  mut(func(b []byte) []byte { binary.LittleEndian.PutUint16(b[26:], 2); return b }),
		"handle past record": mut(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[24+12:], 100); return b }),
		"name without NUL": mut(func(b []byte) []byte {
			n := len(b)
			for i := 24 + 20 + 8; i < n; i++ {
				b[i] = 'x'
			}
			return b
		}),
		"short fid record": fidEventBytes(fanDelete, 9, []byte{fanInfoDFIDName, 0, 8, 0, 0, 0, 0, 0}),
	} {
		evs, err := parseFanotifyFID(in)
		if err == nil {
			t.Errorf("%s: accepted: %+v", name, evs)
		} else if !strings.HasPrefix(err.Error(), "fileaccess: ") {
			t.Errorf("%s: error %q", name, err)
		}
	}
	// A good event before a bad one is still returned.
	evs, err := parseFanotifyFID(append(append([]byte(nil), good...), good[:10]...))
	if err == nil || len(evs) != 1 || evs[0].recs[0].name != "x.csv" {
		t.Fatalf("%+v %v", evs, err)
	}
}
