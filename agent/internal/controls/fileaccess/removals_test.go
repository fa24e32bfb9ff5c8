package fileaccess

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/policy"
)

func noWindows(t *testing.T) {
	t.Helper()
	if os.Getenv("WINEPREFIX") != "" || filepath.Separator == '\\' {
		t.Skip("Windows does not report a folder moved out with its contents, nor a watched folder's own move")
	}
}

// changeEvents are the file.* events of evs.
func changeEvents(evs []event.Event) []event.Event {
	var out []event.Event
	for _, e := range evs {
		if strings.HasPrefix(e.Type, "file.") {
			out = append(out, e)
		}
	}
	return out
}

func describeEvents(evs []event.Event) string {
	var s []string
	for _, e := range evs {
		s = append(s, fmt.Sprintf("%s %s user=%q process=%q %v", e.Type, e.Object, e.User, e.Process, e.Attrs))
	}
	return strings.Join(s, "\n")
}

// TestRemovalsNotHiddenInBulk (defect 1): a burst of harmless changes over
// the bulk threshold, then a deletion and a folder moved out of the watched
// folder within the same bulk window: the deletion, the folder and each
// file it held are still events of their own, not counts in the summary.
func TestRemovalsNotHiddenInBulk(t *testing.T) {
	windows := os.Getenv("WINEPREFIX") != "" || filepath.Separator == '\\'
	parent := t.TempDir()
	root := filepath.Join(parent, "顧客")
	deep := filepath.Join(root, "深い")
	if err := os.MkdirAll(filepath.Join(deep, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"a.csv", "b.csv", "sub/c.csv"} {
		os.WriteFile(filepath.Join(deep, f), []byte("氏名\n"), 0o644)
	}
	victim := filepath.Join(root, "名簿.csv")
	os.WriteFile(victim, []byte("氏名\n"), 0o644)
	fp := &fakeProbe{out: make(chan access, 16)}
	h := start(t, fp, pol(func(f *policy.FileAccess) {
		f.Paths = []string{root}
		f.BulkThreshold = 10
		f.BulkWindow = policy.Duration(5 * time.Second)
	}))
	h.waitStatus(controls.Pass, "")
	copied := filepath.Join(root, "一括コピー")
	os.Mkdir(copied, 0o755)
	for i := range 30 {
		os.WriteFile(filepath.Join(copied, fmt.Sprintf("f%03d.csv", i)), []byte("x"), 0o644)
	}
	// Past the threshold: the rest of the window is counted.
	h.waitFor("the burst counted", func(evs []event.Event) bool { return len(changeEvents(evs)) >= 10 })
	time.Sleep(300 * time.Millisecond)
	out := filepath.Join(parent, "moved-out")
	if !windows { // a folder moved out is not reported with its contents there
		fp.out <- access{Path: deep, Time: time.Now(), PID: 99, User: "tanaka", Process: "/usr/bin/mv", Rename: true, MovedTo: out}
		if err := os.Rename(deep, out); err != nil {
			t.Fatal(err)
		}
	}
	fp.out <- access{Path: victim, Time: time.Now(), PID: 98, User: "tanaka", Process: "/usr/bin/rm", Delete: true}
	os.Remove(victim)
	evs := h.waitFor("the bulk summary", func(evs []event.Event) bool { return find(evs, TypeBulk, root) != nil })
	for i, p := range []string{victim, deep, filepath.Join(deep, "a.csv"), filepath.Join(deep, "b.csv"), filepath.Join(deep, "sub"), filepath.Join(deep, "sub", "c.csv")} {
		if windows && i > 0 {
			break
		}
		if find(evs, TypeDeleted, p) == nil {
			t.Errorf("no file.deleted of %s: hidden in the summary", p)
		}
	}
	if d := find(evs, TypeDeleted, deep); !windows && d != nil && (d.Attrs["moved_to"] != out || d.Process != "/usr/bin/mv") {
		t.Errorf("folder moved out: %+v", d)
	}
	b := find(evs, TypeBulk, root)
	if num(b.Attrs["total"]) != num(b.Attrs["individually"])+num(b.Attrs["suppressed"]) {
		t.Errorf("summary does not add up: %v", b.Attrs)
	}
	if t.Failed() {
		t.Logf("events:\n%s", describeEvents(evs))
	}
}

// TestBulkSummarySaysWhatHappened (defect 4): a summary of reads says
// "read", not "changed"; one of several kinds lists them.
func TestBulkSummarySaysWhatHappened(t *testing.T) {
	root := t.TempDir()
	for i := range 30 {
		os.WriteFile(filepath.Join(root, fmt.Sprintf("r%03d.csv", i)), []byte("x"), 0o644)
	}
	fp := &fakeProbe{out: make(chan access, 64)}
	h := start(t, fp, pol(func(f *policy.FileAccess) {
		f.Paths = []string{root}
		f.BulkThreshold = 10
		f.BulkWindow = policy.Duration(2 * time.Second)
	}))
	h.waitStatus(controls.Pass, "")
	for i := range 30 {
		fp.out <- access{Path: filepath.Join(root, fmt.Sprintf("r%03d.csv", i)), Time: time.Now(), PID: 5, User: "u", Process: "/usr/bin/diff", Read: true}
	}
	evs := h.waitFor("the read summary", func(evs []event.Event) bool { return find(evs, TypeBulk, root) != nil })
	b := find(evs, TypeBulk, root)
	if s := fmt.Sprint(b.Attrs["summary"]); !strings.HasPrefix(s, "30 files read in ") || !strings.HasSuffix(s, " by diff") {
		t.Fatalf("summary %q", s)
	}
	time.Sleep(2 * time.Second) // the next window
	for i := range 25 {
		os.WriteFile(filepath.Join(root, fmt.Sprintf("n%03d.csv", i)), []byte("x"), 0o644)
	}
	h.waitFor("the creates", func(evs []event.Event) bool { return len(h.rec.OfType(TypeCreated)) >= 10 })
	time.Sleep(300 * time.Millisecond)
	for i := range 5 {
		os.Remove(filepath.Join(root, fmt.Sprintf("r%03d.csv", i)))
	}
	evs = h.waitFor("the second summary", func(evs []event.Event) bool { return len(h.rec.OfType(TypeBulk)) == 2 })
	b = &h.rec.OfType(TypeBulk)[1]
	if s := fmt.Sprint(b.Attrs["summary"]); !strings.HasPrefix(s, "30 file events in ") || !strings.HasSuffix(s, ": 25 created, 5 deleted") {
		t.Fatalf("summary %q", s)
	}
}

// TestWatchedFolderMovedAwayIsOneEvent (defect 2): the watched folder
// itself moved away is one event with where it went and who moved it,
// not a deletion of each file it held (nor a summary of them).
func TestWatchedFolderMovedAwayIsOneEvent(t *testing.T) {
	noWindows(t)
	parent := t.TempDir()
	root := filepath.Join(parent, "顧客")
	for i := range 40 {
		d := filepath.Join(root, fmt.Sprintf("d%d", i%4))
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, fmt.Sprintf("f%02d.csv", i)), []byte("x"), 0o644)
	}
	fp := &fakeProbe{out: make(chan access, 16)}
	h := start(t, fp, pol(func(f *policy.FileAccess) {
		f.Paths = []string{root}
		f.BulkThreshold = 10
	}))
	h.waitStatus(controls.Pass, "")
	dest := filepath.Join(parent, "顧客_moved")
	fp.out <- access{Path: root, Time: time.Now(), PID: 7, User: "tanaka", Process: "/usr/bin/mv", Rename: true, MovedTo: dest}
	time.Sleep(50 * time.Millisecond)
	if err := os.Rename(root, dest); err != nil {
		t.Fatal(err)
	}
	h.waitStatus(controls.Fail, "fileaccess.root_missing")
	time.Sleep(500 * time.Millisecond)
	evs := changeEvents(h.rec.Events())
	if len(evs) != 1 || evs[0].Object != root {
		t.Fatalf("want one event for the watched folder, got %d:\n%s", len(evs), describeEvents(evs))
	}
	e := evs[0]
	if e.Type != TypeDeleted || e.Attrs["moved_to"] != dest || e.User != "tanaka" || e.Process != "/usr/bin/mv" ||
		e.Attrs["watched_folder"] != true || num(e.Attrs["contents"]) != 44 || e.Severity != event.Warning {
		t.Fatalf("watched folder moved: %s", describeEvents(evs))
	}
}

// TestFolderMovedOutTakesItsFiles (defect 3): the files of a folder moved
// out are moved with it by the folder's mover, to the matching place under
// its destination, never blamed on their last writer.
func TestFolderMovedOutTakesItsFiles(t *testing.T) {
	noWindows(t)
	parent := t.TempDir()
	root := filepath.Join(parent, "顧客")
	os.Mkdir(root, 0o755)
	fp := &fakeProbe{out: make(chan access, 16)}
	h := start(t, fp, pol(func(f *policy.FileAccess) { f.Paths = []string{root} }))
	h.waitStatus(controls.Pass, "")
	dir := filepath.Join(root, "持出")
	sub := filepath.Join(dir, "サブ")
	a, b := filepath.Join(sub, "a.txt"), filepath.Join(dir, "b.txt")
	fp.out <- access{Path: sub, Time: time.Now(), PID: 3, User: "suzuki", Process: "/usr/bin/mkdir", Create: true}
	os.MkdirAll(sub, 0o755)
	fp.out <- access{Path: a, Time: time.Now(), PID: 4, User: "suzuki", Process: "/usr/bin/bash", Write: true}
	fp.out <- access{Path: b, Time: time.Now(), PID: 4, User: "suzuki", Process: "/usr/bin/bash", Write: true}
	os.WriteFile(a, []byte("a\n"), 0o644)
	os.WriteFile(b, []byte("b\n"), 0o644)
	h.waitEvent(TypeCreated, a)
	h.waitEvent(TypeCreated, b)
	time.Sleep(300 * time.Millisecond)
	out := filepath.Join(parent, "moved-out2")
	fp.out <- access{Path: dir, Time: time.Now(), PID: 9, User: "tanaka", Process: "/usr/bin/mv", Rename: true, MovedTo: out}
	time.Sleep(50 * time.Millisecond)
	if err := os.Rename(dir, out); err != nil {
		t.Fatal(err)
	}
	for p, to := range map[string]string{dir: out, sub: filepath.Join(out, "サブ"), a: filepath.Join(out, "サブ", "a.txt"), b: filepath.Join(out, "b.txt")} {
		e := h.waitEvent(TypeDeleted, p)
		if e.Attrs["moved_to"] != to || e.Process != "/usr/bin/mv" || e.User != "tanaka" || e.Attrs["attribution_source"] != sourceObserved {
			t.Errorf("%s: want moved to %s by mv (observed), got\n%s", p, to, describeEvents([]event.Event{e}))
		}
		if p != dir && e.Attrs["moved_with"] != dir {
			t.Errorf("%s: moved_with %v, want %s", p, e.Attrs["moved_with"], dir)
		}
	}
}

// TestRemovalsPastTheLimitAreLocated: past the removal limit (10,000 a
// window by default; 8 here) removals are counted, and the summary says in
// which folders they were and to which folders the moved ones went.
func TestRemovalsPastTheLimitAreLocated(t *testing.T) {
	parent := t.TempDir()
	root := filepath.Join(parent, "顧客")
	outside := filepath.Join(parent, "外")
	os.Mkdir(outside, 0o755)
	var del, mov []string
	for _, d := range []string{"a", "b"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
		for i := range 10 {
			p := filepath.Join(root, d, fmt.Sprintf("f%02d.csv", i))
			os.WriteFile(p, []byte("x"), 0o644)
			del = append(del, p)
		}
	}
	for i := range 6 {
		p := filepath.Join(root, fmt.Sprintf("m%02d.csv", i))
		os.WriteFile(p, []byte("x"), 0o644)
		mov = append(mov, p)
	}
	fp := &fakeProbe{out: make(chan access, 64)}
	h := startTuned(t, fp, pol(func(f *policy.FileAccess) {
		f.Paths = []string{root}
		f.BulkThreshold = 5
		f.BulkWindow = policy.Duration(3 * time.Second)
	}), func(c *Control) { c.removalLimit = 8 })
	h.waitStatus(controls.Pass, "")
	for _, p := range del {
		os.Remove(p)
	}
	for _, p := range mov {
		to := filepath.Join(outside, filepath.Base(p))
		fp.out <- access{Path: p, Time: time.Now(), PID: 1, User: "u", Process: "/usr/bin/mv", Rename: true, MovedTo: to}
	}
	time.Sleep(50 * time.Millisecond)
	for _, p := range mov {
		os.Rename(p, filepath.Join(outside, filepath.Base(p)))
	}
	evs := h.waitFor("the summary", func(evs []event.Event) bool { return find(evs, TypeBulk, root) != nil })
	b := find(evs, TypeBulk, root)
	sent, sentMoved := 0, 0
	for _, e := range evs {
		if e.Type == TypeDeleted {
			sent++
			if e.Attrs["moved_to"] != nil {
				sentMoved++
			}
		}
	}
	sum := func(v any) int64 {
		n := int64(0)
		m, _ := v.(event.Attrs)
		for _, c := range m {
			n += num(c)
		}
		return n
	}
	in, _ := b.Attrs["removed_in"].(event.Attrs)
	if sent != 8 || num(b.Attrs["removals_individually"]) != 8 || num(b.Attrs["suppressed"]) != 26-8 ||
		sum(b.Attrs["removed_in"]) != 26-8 || sum(b.Attrs["moved_out_to"]) != int64(6-sentMoved) ||
		len(in) == 0 || !strings.HasPrefix(fmt.Sprint(b.Attrs["summary"]), "26 files deleted in ") {
		t.Fatalf("sent %d (%d moved); summary %v", sent, sentMoved, b.Attrs)
	}
	for p := range in {
		if !strings.HasPrefix(p, root) {
			t.Fatalf("removed_in %v", in)
		}
	}
	if m, _ := b.Attrs["moved_out_to"].(event.Attrs); 6-sentMoved > 0 && m[outside] == nil {
		t.Fatalf("moved_out_to %v", m)
	}
}

func TestCommonFolders(t *testing.T) {
	f := filepath.FromSlash
	m := map[string]int{f("/r/a/x"): 2, f("/r/a/y"): 3, f("/r/b"): 1, f("/r/a/y/z"): 4}
	got := commonFolders(m, 2)
	if want := map[string]int{f("/r/a"): 9, f("/r/b"): 1}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%v, want %v", got, want)
	}
	if got, want := commonFolders(map[string]int{f("/a"): 1, f("/b"): 2}, 1), map[string]int{f("/"): 3}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%v, want %v", got, want)
	}
}
