package fileaccess

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParse4663(t *testing.T) {
	for _, tc := range []struct {
		file                string
		record              uint64
		user, process, path string
		mask                uint32
		pid                 int
		read, write, del    bool
		time                string
	}{
		{"4663_write_excel.xml", 1048577, `OFFICE\tanaka`, `C:\Program Files\Microsoft Office\root\Office16\EXCEL.EXE`,
			`D:\顧客\2026\顧客名簿.xlsx`, 0x2, 0x1a3c, false, true, false, "2026-11-20T01:15:42.5302713Z"},
		{"4663_read_notepad.xml", 1048578, `OFFICE\suzuki`, `C:\Windows\System32\notepad.exe`,
			`D:\顧客\2026\メモ.txt`, 0x1, 0x2210, true, false, false, "2026-11-20T01:16:03.0012345Z"},
		{"4663_delete_explorer.xml", 1048579, `OFFICE\tanaka`, `C:\Windows\explorer.exe`,
			`D:\顧客\2026\古い名簿.csv`, 0x10000, 0x10f0, false, false, true, "2026-11-20T01:17:11.778899Z"},
		{"4663_append_robocopy.xml", 1048580, `OFFICE\administrator`, `C:\Windows\System32\Robocopy.exe`,
			`D:\顧客\2026\export\0001.csv`, 0x6, 0x3e8, false, true, false, "2026-11-20T01:20:00.1Z"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			ev, err := parse4663(fixture(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			a := ev.access
			if ev.RecordID != tc.record || a.Record != tc.record || a.User != tc.user || a.Process != tc.process || a.Path != tc.path ||
				a.Mask != tc.mask || a.PID != tc.pid || a.Read != tc.read || a.Write != tc.write || a.Delete != tc.del {
				t.Fatalf("got %+v record %d", a, ev.RecordID)
			}
			if want, _ := time.Parse(time.RFC3339Nano, tc.time); !a.Time.Equal(want) {
				t.Fatalf("time %v, want %v", a.Time, want)
			}
		})
	}
}

func TestParse4663Refuses(t *testing.T) {
	good := string(fixture(t, "4663_write_excel.xml"))
	for name, in := range map[string]string{
		"other event":   string(fixture(t, "4656_not_4663.xml")),
		"not xml":       "<Event><System>",
		"no object":     strings.Replace(good, `<Data Name="ObjectName">D:\顧客\2026\顧客名簿.xlsx</Data>`, "", 1),
		"bad mask":      strings.Replace(good, `>0x2<`, `>zz<`, 1),
		"bad timestamp": strings.Replace(good, `2026-11-20T01:15:42.5302713Z`, `yesterday`, 1),
	} {
		if _, err := parse4663([]byte(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestParseStatusUID(t *testing.T) {
	uid, err := parseStatusUID(fixture(t, "proc_status_root.txt"))
	if err != nil || uid != "0" {
		t.Fatalf("uid %q, %v", uid, err)
	}
	if uid, err := parseStatusUID([]byte("Name:\tx\nUid:\t1000\t1000\t1000\t1000\n")); err != nil || uid != "1000" {
		t.Fatalf("uid %q, %v", uid, err)
	}
	for _, bad := range []string{"", "Name:\tx\n", "Uid:\n", "Uid:\tabc\t0\n"} {
		if _, err := parseStatusUID([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func fanRecord(mask uint64, fd, pid int32) []byte {
	b := make([]byte, fanMetaLen)
	binary.LittleEndian.PutUint32(b[0:], fanMetaLen)
	b[4] = 3
	binary.LittleEndian.PutUint16(b[6:], fanMetaLen)
	binary.LittleEndian.PutUint64(b[8:], mask)
	binary.LittleEndian.PutUint32(b[16:], uint32(fd))
	binary.LittleEndian.PutUint32(b[20:], uint32(pid))
	return b
}

func TestParseFanotify(t *testing.T) {
	in := append(fanRecord(0x20, 7, 1234), fanRecord(0x8, 8, 99)...)
	evs, err := parseFanotify(in)
	if err != nil || len(evs) != 2 || evs[0] != (fanEvent{0x20, 7, 1234}) || evs[1] != (fanEvent{0x8, 8, 99}) {
		t.Fatalf("%+v %v", evs, err)
	}
	if evs, err := parseFanotify(append(fanRecord(0x2, 3, 1), 1, 2, 3)); err == nil || len(evs) != 1 {
		t.Fatalf("truncated tail: %+v %v", evs, err)
	}
	bad := fanRecord(0x2, 3, 1)
	bad[4] = 2
	if _, err := parseFanotify(bad); err == nil {
		t.Fatal("old metadata version accepted")
	}
	bad = fanRecord(0x2, 3, 1)
	binary.LittleEndian.PutUint32(bad[0:], 4)
	if _, err := parseFanotify(bad); err == nil {
		t.Fatal("short record length accepted")
	}
}

func TestBookmarkRoundTrip(t *testing.T) {
	n, err := parseBookmark(bookmarkXML(1048580))
	if err != nil || n != 1048580 {
		t.Fatalf("%d %v", n, err)
	}
	// As Windows writes it for a bookmark on two channels.
	win := `<BookmarkList Direction='backward'>
  <Bookmark Channel='Application' RecordId='77' IsCurrent='true'/>
  <Bookmark Channel='Security' RecordId='123456'/>
</BookmarkList>`
	if n, err := parseBookmark([]byte(win)); err != nil || n != 123456 {
		t.Fatalf("%d %v", n, err)
	}
	for _, bad := range []string{"", "<BookmarkList/>", "<BookmarkList><Bookmark Channel='Security' RecordId='x'/></BookmarkList>"} {
		if _, err := parseBookmark([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if q := query4663(41); q != "*[System[(EventID=4663) and (EventRecordID>41)]]" {
		t.Fatal(q)
	}
}

func TestParseRecordID(t *testing.T) {
	// Any event, not only 4663: the newest record of the log starts a first run.
	if n, err := parseRecordID(fixture(t, "4656_not_4663.xml")); err != nil || n != 1048577 {
		t.Fatalf("4656: %d %v", n, err)
	}
	if _, err := parseRecordID([]byte("<Event><System></System></Event>")); err == nil {
		t.Fatal("event without a record id accepted")
	}
	if _, err := parseRecordID([]byte("<Event")); err == nil {
		t.Fatal("broken xml accepted")
	}
}
