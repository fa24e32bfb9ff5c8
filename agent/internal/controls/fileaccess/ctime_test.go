//go:build linux || darwin

package fileaccess

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mamori/mamori/agent/internal/fswatch"
	"github.com/mamori/mamori/agent/internal/spool"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/policy"
)

// hiddenEdit rewrites p with as many bytes and puts its mtime back, as
// `printf 'D,b\n' > F; touch -r REF F` does: only the change time moves.
func hiddenEdit(t *testing.T, p, content string) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // past the coarse kernel clock tick
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(p); after.Size() != fi.Size() || !after.ModTime().Equal(fi.ModTime()) {
		t.Fatal("size or mtime not restored")
	}
}

func fileEvents(evs []event.Event) []event.Event {
	var out []event.Event
	for _, e := range evs {
		if e.Control == Name && strings.HasPrefix(e.Type, "file.") {
			out = append(out, e)
		}
	}
	return out
}

// TestHiddenEditIsReported: an edit that keeps the size and puts the mtime
// back is file.modified, live (times_restored, a warning) and when made
// while the agent was stopped (ctime_only, while_agent_stopped); a chmod
// seen live is not an event, and its change time is saved so that the next
// start does not report it either.
func TestHiddenEditIsReported(t *testing.T) {
	root := t.TempDir()
	dbPath := filepath.Join(t.TempDir(), "spool.db")
	p := pol(func(f *policy.FileAccess) { f.Paths = []string{root} })
	f, g := filepath.Join(root, "顧客名簿.csv"), filepath.Join(root, "権限.csv")
	for _, x := range []string{f, g} {
		if err := os.WriteFile(x, []byte("A,a\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sp, stop := runOnSpool(t, dbPath, p)
	waitSpool(t, sp, "status", func(evs []event.Event) bool { return find(evs, "fileaccess.status", "") != nil })
	hiddenEdit(t, f, "D,b\n")
	waitSpool(t, sp, "the live hidden edit", func(evs []event.Event) bool { return find(evs, TypeModified, f) != nil })
	if err := os.Chmod(g, 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond) // the chmod's debounce
	evs := stop()
	n := len(evs)
	got := fileEvents(evs)
	if len(got) != 1 {
		t.Fatalf("live: %v; want the hidden edit only", got)
	}
	if e := got[0]; e.Attrs["times_restored"] != true || e.Severity != event.Warning || e.Attrs["ctime_only"] != nil {
		t.Fatalf("live hidden edit %+v; want times_restored, warning", e)
	}

	hiddenEdit(t, f, "E,c\n")
	sp, stop = runOnSpool(t, dbPath, p)
	waitSpool(t, sp, "the hidden edit while stopped", func(evs []event.Event) bool { return find(evs[n:], TypeModified, f) != nil })
	time.Sleep(300 * time.Millisecond) // nothing else may follow
	got = fileEvents(stop()[n:])
	if len(got) != 1 {
		t.Fatalf("at start: %v; want the hidden edit only (not the chmod seen live)", got)
	}
	if e := got[0]; e.Attrs["ctime_only"] != true || e.Attrs["attribution_source"] != sourceWhileStopped || e.Attrs["note_en"] == nil {
		t.Fatalf("hidden edit while stopped %+v; want ctime_only, while_agent_stopped", e)
	}
}

// TestUpgradeFromSnapshotWithoutCTime: a snapshot saved by the previous
// version (25-byte entries, no change time) reports nothing at the first
// start, is rewritten with change times, and the next start finds a hidden
// edit made in between.
func TestUpgradeFromSnapshotWithoutCTime(t *testing.T) {
	root := t.TempDir()
	dbPath := filepath.Join(t.TempDir(), "spool.db")
	p := pol(func(f *policy.FileAccess) { f.Paths = []string{root} })
	f := filepath.Join(root, "顧客名簿.csv")
	if err := os.WriteFile(f, []byte("A,a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(root, "sub"), 0o755)
	_, stop := runOnSpool(t, dbPath, p)
	stop() // the baseline

	sp, err := spool.Open(dbPath, spool.Options{Agent: "agent-1"})
	if err != nil {
		t.Fatal(err)
	}
	old := map[string][]byte{}
	if err := sp.LoadState(bucketSnapshot, func(k, v []byte) error {
		e, err := decodeEntry(v)
		if err != nil {
			return err
		}
		b := encodeEntry(&e)[:25] // the previous version's encoding
		old[string(k)] = b
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(old) != 3 {
		t.Fatalf("saved %v", old)
	}
	if err := sp.SaveState(spool.State{Bucket: bucketSnapshot, Puts: old}); err != nil {
		t.Fatal(err)
	}
	sp.Close()
	time.Sleep(20 * time.Millisecond)
	if err := os.Chmod(f, 0o600); err != nil { // the change time moves, but nothing knew the old one
		t.Fatal(err)
	}

	sp, stop = runOnSpool(t, dbPath, p)
	waitSpool(t, sp, "status", func(evs []event.Event) bool { return find(evs, "fileaccess.status", "") != nil })
	time.Sleep(300 * time.Millisecond)
	evs := stop()
	n := len(evs)
	if got := fileEvents(evs); len(got) != 0 {
		t.Fatalf("after the upgrade: %v; want nothing", got)
	}
	sp, err = spool.Open(dbPath, spool.Options{Agent: "agent-1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.LoadState(bucketSnapshot, func(k, v []byte) error {
		if e, err := decodeEntry(v); err != nil || e.CTime.IsZero() {
			t.Errorf("%s saved as %+v, %v; want a change time", k, e, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sp.Close()

	hiddenEdit(t, f, "D,b\n")
	sp, stop = runOnSpool(t, dbPath, p)
	waitSpool(t, sp, "the hidden edit", func(evs []event.Event) bool { return find(evs[n:], TypeModified, f) != nil })
	stop()
}

// TestEntryEncoding: entries keep the change time; the previous version's
// 25-byte entries still decode (change time unknown), other lengths do not.
func TestEntryEncoding(t *testing.T) {
	e := fswatch.Entry{Size: 4, MTime: time.Unix(1e9, 5), ID: 7, CTime: time.Unix(2e9, 9)}
	got, err := decodeEntry(encodeEntry(&e))
	if err != nil || got.Size != 4 || !got.MTime.Equal(e.MTime) || got.ID != 7 || got.Dir || !got.CTime.Equal(e.CTime) {
		t.Fatalf("round trip %+v, %v", got, err)
	}
	e.CTime = time.Time{}
	if got, err := decodeEntry(encodeEntry(&e)); err != nil || !got.CTime.IsZero() {
		t.Fatalf("unknown change time: %+v, %v", got, err)
	}
	e.CTime = time.Unix(2e9, 9)
	if got, err := decodeEntry(encodeEntry(&e)[:25]); err != nil || !got.CTime.IsZero() || got.ID != 7 {
		t.Fatalf("old encoding: %+v, %v", got, err)
	}
	if _, err := decodeEntry(encodeEntry(&e)[:30]); err == nil {
		t.Fatal("a truncated entry decoded")
	}
}
