package fswatch

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

type stillClock struct{ t time.Time }

func (c *stillClock) Now() time.Time                       { return c.t }
func (c *stillClock) After(time.Duration) <-chan time.Time { return nil }

// fakeWatcher is a Watcher without an OS watch: the test feeds the
// notifications the OS would give (raw) and flushes by hand, so what is
// merged into one window does not depend on the machine's speed.
func fakeWatcher(t *testing.T, top string) (*Watcher, *stillClock) {
	t.Helper()
	clk := &stillClock{t: time.Unix(1e9, 0)}
	w := &Watcher{opt: Options{Debounce: time.Second, MaxDelay: 20 * time.Second, Clock: clk},
		roots: map[string]*root{top: {path: top, watched: true}},
		snap:  map[string]entry{}, dirs: map[string]bool{}, pend: map[string]*pending{}}
	err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err == nil {
			w.snap[p] = entryOf(fi)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return w, clk
}

func (w *Watcher) exported() map[string]Entry {
	m := map[string]Entry{}
	for p, e := range w.snap {
		m[p] = *e.export()
	}
	return m
}

// fsOp is one file system call and the notifications inotify gives for it.
type fsOp struct {
	kind string // write (a new file), rename, remove
	a, b string
}

func (o fsOp) do(t *testing.T, dir string) []fsnotify.Event {
	t.Helper()
	a, b := filepath.Join(dir, o.a), filepath.Join(dir, o.b)
	switch o.kind {
	case "write":
		write(t, a, "v2, the new content")
		return []fsnotify.Event{{Name: a, Op: fsnotify.Create}, {Name: a, Op: fsnotify.Write}}
	case "rename":
		if err := os.Rename(a, b); err != nil {
			t.Fatal(err)
		}
		return []fsnotify.Event{{Name: a, Op: fsnotify.Rename}, {Name: b, Op: fsnotify.Create}}
	case "remove":
		if err := os.Remove(a); err != nil {
			t.Fatal(err)
		}
		return []fsnotify.Event{{Name: a, Op: fsnotify.Remove}}
	}
	t.Fatalf("bad op %q", o.kind)
	return nil
}

// TestSaveViaRenameIsModified: the ways editors save a file that exists
// (Office and LibreOffice: original to a backup name, temp onto the
// original name, backup deleted or kept; atomic replace: temp renamed over
// the original; vim: original to a backup name, new file written, backup
// deleted), with backup and temp names sorting before and after the
// original, all in one window, whether the reader kept up with each call or
// read the notifications after the last. The saved path is Modified (it
// existed before and exists after, with new content), reported before the
// backup name's deletion (or rename), which names the original name first;
// the temp file is not reported on its own; the changes' snapshot edits
// lead to the watcher's snapshot.
func TestSaveViaRenameIsModified(t *testing.T) {
	const doc = "文書.xlsx"
	type tc struct {
		name string
		ops  []fsOp
		want []string // in order: op, path, names
		pre  string   // another file there before
	}
	var cases []tc
	seen := map[string]bool{}
	for _, n := range []struct{ tmp, bak string }{
		{"~wrl0001.tmp", "文書.xlsx~"},   // temp before, backup after
		{"文書.xlsx.sav", "~$文書.tmp"},    // temp after, backup before
		{"文書.xlsx.sav", "文書.xlsx~"},    // both after
		{".~lock.tmp", "#文書.xlsx.bak"}, // both before
	} {
		cases = append(cases,
			tc{"office " + n.tmp + " " + n.bak,
				[]fsOp{{"write", n.tmp, ""}, {"rename", doc, n.bak}, {"rename", n.tmp, doc}, {"remove", n.bak, ""}},
				[]string{"modified 文書.xlsx [" + n.tmp + " 文書.xlsx]", "deleted " + n.bak + " [文書.xlsx " + n.bak + "]"}, ""},
			tc{"backup kept " + n.tmp + " " + n.bak,
				[]fsOp{{"write", n.tmp, ""}, {"rename", doc, n.bak}, {"rename", n.tmp, doc}},
				[]string{"modified 文書.xlsx [" + n.tmp + " 文書.xlsx]", "renamed " + n.bak + " from 文書.xlsx [文書.xlsx " + n.bak + "]"}, ""},
		)
		if !seen[n.tmp] {
			cases = append(cases, tc{"atomic replace " + n.tmp,
				[]fsOp{{"write", n.tmp, ""}, {"rename", n.tmp, doc}},
				[]string{"modified 文書.xlsx [" + n.tmp + " 文書.xlsx]"}, ""})
		}
		if !seen[n.bak] {
			cases = append(cases, tc{"vim " + n.bak,
				[]fsOp{{"rename", doc, n.bak}, {"write", doc, ""}, {"remove", n.bak, ""}},
				[]string{"modified 文書.xlsx []", "deleted " + n.bak + " [文書.xlsx " + n.bak + "]"}, ""})
		}
		seen[n.tmp], seen[n.bak] = true, true
	}
	// Two files swapping names: each is renamed, both stay in the snapshot.
	cases = append(cases, tc{"swap", []fsOp{{"rename", doc, "x"}, {"rename", "b.csv", doc}, {"rename", "x", "b.csv"}},
		[]string{"renamed 文書.xlsx from b.csv [b.csv 文書.xlsx]", "renamed b.csv from 文書.xlsx [文書.xlsx x b.csv]"}, "b.csv"})
	// A temp file older than the window renamed over the original stays a
	// rename (its own name is gone); deleted at once, both names leave the
	// snapshot.
	cases = append(cases, tc{"old temp", []fsOp{{"rename", "t.old", doc}},
		[]string{"renamed 文書.xlsx from t.old [t.old 文書.xlsx]"}, "t.old"},
		tc{"old temp deleted", []fsOp{{"rename", "t.old", doc}, {"remove", doc, ""}},
			[]string{"deleted 文書.xlsx [t.old 文書.xlsx]"}, "t.old"})
	// A new file renamed and gone in the window while its first name holds
	// a new file again: that file stays in the snapshot.
	cases = append(cases, tc{"transient, first name taken again",
		[]fsOp{{"write", "t", ""}, {"rename", "t", "x"}, {"write", "t", ""}, {"remove", "x", ""}},
		[]string{"created t []", "deleted x [t x]"}, ""})
	// Not a save, but the same name left and taken again: not a rename of
	// the file to its own name, and nothing changed.
	cases = append(cases, tc{"renamed away and back", []fsOp{{"rename", doc, "x"}, {"rename", "x", doc}}, nil, ""})
	for _, c := range cases {
		for _, lag := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s lag=%v", c.name, lag), func(t *testing.T) {
				dir := t.TempDir()
				write(t, filepath.Join(dir, doc), "v1")
				if c.pre != "" {
					write(t, filepath.Join(dir, c.pre), "other file")
				}
				w, clk := fakeWatcher(t, dir)
				before := w.exported()
				var evs []fsnotify.Event
				for _, o := range c.ops {
					evs = append(evs, o.do(t, dir)...)
					if !lag {
						for _, ev := range evs {
							w.raw(ev)
						}
						evs = nil
					}
				}
				for _, ev := range evs {
					w.raw(ev)
				}
				clk.t = clk.t.Add(time.Minute)
				cs := w.flush(false)
				var got []string
				for _, ch := range cs {
					if ch.Op == Attrib {
						continue // a rename moves the change time; Snap only (applied below)
					}
					d := fmt.Sprintf("%s %s", ch.Op, filepath.Base(ch.Path))
					if ch.OldPath != "" {
						d += " from " + filepath.Base(ch.OldPath)
					}
					var names []string
					for _, n := range ch.Names {
						names = append(names, filepath.Base(n))
					}
					got = append(got, d+" ["+strings.Join(names, " ")+"]")
				}
				if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
					t.Fatalf("changes:\n got  %q\n want %q", got, c.want)
				}
				if len(cs) > 0 && c.pre == "" && cs[0].Op != Attrib && cs[0].Size != int64(len("v2, the new content")) {
					t.Fatalf("size %d", cs[0].Size)
				}
				applySnap(before, cs)
				sameSnap(t, before, w.exported())
				if len(w.pend) != 0 || len(w.vacated) != 0 {
					t.Fatalf("left pending %v, vacated %v", w.pend, w.vacated)
				}
			})
		}
	}
}

// TestBackupDeletionWaitsForTheNewContent: when the saved path is still
// busy after the backup's deletion is quiet, the deletion waits for it, so
// the order holds (new content, then the backup's deletion).
func TestBackupDeletionWaitsForTheNewContent(t *testing.T) {
	dir := t.TempDir()
	doc, bak := filepath.Join(dir, "文書.xlsx"), filepath.Join(dir, "~$文書.tmp")
	write(t, doc, "v1")
	w, clk := fakeWatcher(t, dir)
	for _, o := range []fsOp{{"write", "t", ""}, {"rename", "文書.xlsx", "~$文書.tmp"}, {"rename", "t", "文書.xlsx"},
		{"remove", "~$文書.tmp", ""}} {
		for _, ev := range o.do(t, dir) {
			w.raw(ev)
		}
	}
	clk.t = clk.t.Add(w.opt.Debounce / 2)
	write(t, doc, "v2, written again")
	w.raw(fsnotify.Event{Name: doc, Op: fsnotify.Write})
	clk.t = clk.t.Add(w.opt.Debounce * 3 / 4)
	if cs := w.flush(false); len(cs) != 0 {
		t.Fatalf("flushed before the saved path was quiet: %v", describe(dir, cs))
	}
	clk.t = clk.t.Add(w.opt.Debounce)
	cs := w.flush(false)
	if len(cs) != 2 || cs[0].Op != Modified || cs[0].Path != doc || cs[1].Op != Deleted || cs[1].Path != bak {
		t.Fatalf("changes %v", describe(dir, cs))
	}
}
