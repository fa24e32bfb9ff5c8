package fileaccess

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// fanotify FID-mode layout (include/uapi/linux/fanotify.h). Kept here, not
// taken from x/sys/unix, so the parser and its tests build on every OS.
const (
	fanInfoFID         = 1  // FAN_EVENT_INFO_TYPE_FID: the object itself (FAN_REPORT_TARGET_FID)
	fanInfoDFIDName    = 2  // FAN_EVENT_INFO_TYPE_DFID_NAME: directory + entry name
	fanInfoDFID        = 3  // FAN_EVENT_INFO_TYPE_DFID
	fanInfoOldDFIDName = 10 // FAN_EVENT_INFO_TYPE_OLD_DFID_NAME (FAN_RENAME)
	fanInfoNewDFIDName = 12 // FAN_EVENT_INFO_TYPE_NEW_DFID_NAME (FAN_RENAME)

	fanInfoHdrLen = 4  // struct fanotify_event_info_header {u8 type; u8 pad; u16 len}
	fanFIDHdrLen  = 20 // header + __kernel_fsid_t (2 x s32) + struct file_handle {u32 bytes; s32 type}

	fanCreate    = 0x100      // FAN_CREATE
	fanDelete    = 0x200      // FAN_DELETE
	fanMovedFrom = 0x40       // FAN_MOVED_FROM
	fanMovedTo   = 0x80       // FAN_MOVED_TO
	fanRename    = 0x10000000 // FAN_RENAME
	fanOnDir     = 0x40000000 // FAN_ONDIR
	fanOverflow  = 0x4000     // FAN_Q_OVERFLOW
	fanDelSelf   = 0x400      // FAN_DELETE_SELF
	fanMoveSelf  = 0x800      // FAN_MOVE_SELF
)

// fidRecord is one struct fanotify_event_info_fid: a file handle on the
// filesystem fsid and, for the *_NAME types, the entry name in that directory.
type fidRecord struct {
	typ    uint8
	fsid   [2]int32
	htype  int32
	handle []byte
	name   string
}

// key identifies the handle across events (filesystem, type and bytes).
func (r fidRecord) key() string {
	var b [12]byte
	binary.LittleEndian.PutUint32(b[0:], uint32(r.fsid[0]))
	binary.LittleEndian.PutUint32(b[4:], uint32(r.fsid[1]))
	binary.LittleEndian.PutUint32(b[8:], uint32(r.htype))
	return string(b[:]) + string(r.handle)
}

// fidEvent is one event of a group initialised with FAN_REPORT_DFID_NAME:
// no fd (FAN_NOFD), the PID of the process that acted, its info records.
type fidEvent struct {
	mask uint64
	pid  int32
	recs []fidRecord
}

// record returns the first info record of type typ.
func (e fidEvent) record(typ uint8) (fidRecord, bool) {
	for _, r := range e.recs {
		if r.typ == typ {
			return r, true
		}
	}
	return fidRecord{}, false
}

// parseFanotifyFID splits a read(2) of a FID-mode fanotify fd into events
// (struct fanotify_event_metadata followed by info records up to
// event_len, native byte order: little-endian on the platforms we ship).
// Unknown info types (pidfd, error, range) are skipped; handles are copied
// out of b, which the caller reuses. It stops at a malformed record.
func parseFanotifyFID(b []byte) ([]fidEvent, error) {
	var out []fidEvent
	for len(b) > 0 {
		if len(b) < fanMetaLen {
			return out, fmt.Errorf("fileaccess: truncated fanotify record (%d bytes)", len(b))
		}
		n := binary.LittleEndian.Uint32(b[0:4])
		if vers := b[4]; vers != 3 {
			return out, fmt.Errorf("fileaccess: fanotify metadata version %d, want 3", vers)
		}
		meta := int(binary.LittleEndian.Uint16(b[6:8]))
		if n < fanMetaLen || int(n) > len(b) || meta < fanMetaLen || meta > int(n) {
			return out, fmt.Errorf("fileaccess: bad fanotify record length %d (metadata %d)", n, meta)
		}
		ev := fidEvent{
			mask: binary.LittleEndian.Uint64(b[8:16]),
			pid:  int32(binary.LittleEndian.Uint32(b[20:24])),
		}
		info := b[meta:n]
		for len(info) > 0 {
			if len(info) < fanInfoHdrLen {
				return out, fmt.Errorf("fileaccess: truncated fanotify info header (%d bytes)", len(info))
			}
			typ, l := info[0], int(binary.LittleEndian.Uint16(info[2:4]))
			if l < fanInfoHdrLen || l > len(info) {
				return out, fmt.Errorf("fileaccess: bad fanotify info length %d", l)
			}
			switch typ {
			case fanInfoFID, fanInfoDFID, fanInfoDFIDName, fanInfoOldDFIDName, fanInfoNewDFIDName:
				r, err := parseFIDRecord(info[:l])
				if err != nil {
					return out, err
				}
				ev.recs = append(ev.recs, r)
			}
			info = info[l:]
		}
		out = append(out, ev)
		b = b[n:]
	}
	return out, nil
}

func parseFIDRecord(b []byte) (fidRecord, error) {
	if len(b) < fanFIDHdrLen {
		return fidRecord{}, fmt.Errorf("fileaccess: fanotify fid record of %d bytes", len(b))
	}
	r := fidRecord{typ: b[0],
		fsid:  [2]int32{int32(binary.LittleEndian.Uint32(b[4:8])), int32(binary.LittleEndian.Uint32(b[8:12]))},
		htype: int32(binary.LittleEndian.Uint32(b[16:20]))}
	hb := int(binary.LittleEndian.Uint32(b[12:16]))
	if hb > len(b)-fanFIDHdrLen {
		return fidRecord{}, fmt.Errorf("fileaccess: fanotify file handle of %d bytes in a %d-byte record", hb, len(b))
	}
	r.handle = append([]byte(nil), b[fanFIDHdrLen:fanFIDHdrLen+hb]...)
	if r.typ == fanInfoDFIDName || r.typ == fanInfoOldDFIDName || r.typ == fanInfoNewDFIDName {
		rest := b[fanFIDHdrLen+hb:]
		i := bytes.IndexByte(rest, 0)
		if i < 0 {
			return fidRecord{}, fmt.Errorf("fileaccess: fanotify name not NUL-terminated")
		}
		r.name = string(rest[:i])
	}
	return r, nil
}
