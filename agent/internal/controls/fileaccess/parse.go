package fileaccess

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/xml"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// parseStatusUID returns the real uid from /proc/<pid>/status ("Uid:\treal\teffective\tsaved\tfs").
func parseStatusUID(b []byte) (string, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "Uid:") {
			continue
		}
		f := strings.Fields(line[4:])
		if len(f) == 0 {
			break
		}
		if _, err := strconv.ParseUint(f[0], 10, 32); err != nil {
			return "", fmt.Errorf("fileaccess: bad Uid line %q", line)
		}
		return f[0], nil
	}
	return "", errors.New("fileaccess: no Uid line in status")
}

// fanEvent is one fanotify event record.
type fanEvent struct {
	mask uint64
	fd   int32
	pid  int32
}

// fanMetaLen is sizeof(struct fanotify_event_metadata) (version 3).
const fanMetaLen = 24

// parseFanotify splits a read(2) of a fanotify fd into its records
// (struct fanotify_event_metadata, native byte order: little-endian on the
// platforms we ship). It stops at a truncated or malformed record.
func parseFanotify(b []byte) ([]fanEvent, error) {
	var out []fanEvent
	for len(b) > 0 {
		if len(b) < fanMetaLen {
			return out, fmt.Errorf("fileaccess: truncated fanotify record (%d bytes)", len(b))
		}
		n := binary.LittleEndian.Uint32(b[0:4])
		vers := b[4]
		if vers != 3 {
			return out, fmt.Errorf("fileaccess: fanotify metadata version %d, want 3", vers)
		}
		if n < fanMetaLen || int(n) > len(b) {
			return out, fmt.Errorf("fileaccess: bad fanotify record length %d", n)
		}
		out = append(out, fanEvent{
			mask: binary.LittleEndian.Uint64(b[8:16]),
			fd:   int32(binary.LittleEndian.Uint32(b[16:20])),
			pid:  int32(binary.LittleEndian.Uint32(b[20:24])),
		})
		b = b[n:]
	}
	return out, nil
}

// Windows access-mask bits that 4663 reports for files.
const (
	maskReadData    = 0x1
	maskWriteData   = 0x2
	maskAppendData  = 0x4
	maskWriteEA     = 0x10
	maskWriteAttrs  = 0x100
	maskDelete      = 0x10000
	maskWriteDAC    = 0x40000
	maskWriteOwner  = 0x80000
	maskAnyWrite    = maskWriteData | maskAppendData | maskWriteEA | maskWriteAttrs | maskWriteDAC | maskWriteOwner
	eventIDAccess   = 4663
	securityChannel = "Security"
)

// secEvent is a Security-log 4663 ("An attempt was made to access an object").
type secEvent struct {
	RecordID uint64
	Time     time.Time
	access   access
}

type evXML struct {
	System struct {
		EventID       int    `xml:"EventID"`
		EventRecordID uint64 `xml:"EventRecordID"`
		TimeCreated   struct {
			SystemTime string `xml:"SystemTime,attr"`
		} `xml:"TimeCreated"`
		Channel string `xml:"Channel"`
	} `xml:"System"`
	Data []struct {
		Name  string `xml:"Name,attr"`
		Value string `xml:",chardata"`
	} `xml:"EventData>Data"`
}

// parse4663 reads one rendered event (EvtRender EvtRenderEventXml) of ID
// 4663 into an access: user DOMAIN\name, process image path, object path,
// access mask (hex "0x2").
func parse4663(b []byte) (secEvent, error) {
	var x evXML
	if err := xml.Unmarshal(b, &x); err != nil {
		return secEvent{}, fmt.Errorf("fileaccess: event xml: %w", err)
	}
	if x.System.EventID != eventIDAccess {
		return secEvent{}, fmt.Errorf("fileaccess: event id %d, want %d", x.System.EventID, eventIDAccess)
	}
	d := map[string]string{}
	for _, f := range x.Data {
		d[f.Name] = strings.TrimSpace(f.Value)
	}
	if d["ObjectName"] == "" {
		return secEvent{}, errors.New("fileaccess: 4663 without ObjectName")
	}
	ev := secEvent{RecordID: x.System.EventRecordID}
	if t, err := time.Parse(time.RFC3339Nano, x.System.TimeCreated.SystemTime); err == nil {
		ev.Time = t.UTC()
	} else {
		return secEvent{}, fmt.Errorf("fileaccess: 4663 SystemTime %q: %w", x.System.TimeCreated.SystemTime, err)
	}
	m, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(d["AccessMask"]), "0x"), 16, 32)
	if err != nil {
		return secEvent{}, fmt.Errorf("fileaccess: 4663 AccessMask %q: %w", d["AccessMask"], err)
	}
	user := d["SubjectUserName"]
	if dom := d["SubjectDomainName"]; dom != "" && user != "" {
		user = dom + `\` + user
	}
	pid, _ := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(d["ProcessId"]), "0x"), 16, 32)
	mask := uint32(m)
	ev.access = access{
		Path: d["ObjectName"], Time: ev.Time, User: user, Process: d["ProcessName"], PID: int(pid), Mask: mask,
		Record: ev.RecordID,
		Write:  mask&maskAnyWrite != 0,
		Delete: mask&maskDelete != 0,
	}
	ev.access.Read = mask&maskReadData != 0 && !ev.access.Write && !ev.access.Delete
	return ev, nil
}

// bookmarkXML is the bookmark format EvtRender(EvtRenderBookmark) writes;
// the control keeps the last Security record it processed in it, so a
// restart neither misses nor repeats 4663 events.
func bookmarkXML(recordID uint64) []byte {
	return []byte(fmt.Sprintf("<BookmarkList>\r\n  <Bookmark Channel='%s' RecordId='%d' IsCurrent='true'/>\r\n</BookmarkList>", securityChannel, recordID))
}

// parseBookmark returns the Security channel record id of a bookmark.
func parseBookmark(b []byte) (uint64, error) {
	var x struct {
		Bookmarks []struct {
			Channel  string `xml:"Channel,attr"`
			RecordID string `xml:"RecordId,attr"`
		} `xml:"Bookmark"`
	}
	if err := xml.Unmarshal(b, &x); err != nil {
		return 0, fmt.Errorf("fileaccess: bookmark: %w", err)
	}
	for _, bm := range x.Bookmarks {
		if bm.Channel == securityChannel {
			n, err := strconv.ParseUint(bm.RecordID, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("fileaccess: bookmark record id %q: %w", bm.RecordID, err)
			}
			return n, nil
		}
	}
	return 0, errors.New("fileaccess: bookmark has no Security channel entry")
}

// query4663 is the XPath for 4663 events after a record id.
func query4663(after uint64) string {
	return fmt.Sprintf("*[System[(EventID=%d) and (EventRecordID>%d)]]", eventIDAccess, after)
}

// parseRecordID reads the EventRecordID of any rendered event.
func parseRecordID(b []byte) (uint64, error) {
	var x evXML
	if err := xml.Unmarshal(b, &x); err != nil {
		return 0, fmt.Errorf("fileaccess: event xml: %w", err)
	}
	if x.System.EventRecordID == 0 {
		return 0, errors.New("fileaccess: event without EventRecordID")
	}
	return x.System.EventRecordID, nil
}
