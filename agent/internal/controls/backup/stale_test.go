package backup

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/policy"
)

// TestSameSizeRestoredMTimeIsCopied replays the field report: an edit that
// keeps the size and restores the mtime (printf 'D,b\n' > F; touch -r REF F)
// must be backed up as the new content, not hard-linked from the old copy.
// The engine runs on the real clock, so the inode change time decides.
func TestSameSizeRestoredMTimeIsCopied(t *testing.T) {
	if _, ok := changeTimeOf(statT(t, t.TempDir())); !ok {
		t.Skip("no inode change time on " + runtime.GOOS)
	}
	src, dest := t.TempDir(), t.TempDir()
	// The runs' clock is an hour ahead, so the ctimes recorded are not
	// racy and the ctime alone decides (no source is read to compare).
	eng := &engine{hostDir: dest, host: "pc-01", now: func() time.Time { return time.Now().Add(time.Hour) },
		manifests: map[string]string{}}
	ref := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f := filepath.Join(src, "F.csv")
	write(t, f, "A,b\n", ref)
	write(t, filepath.Join(src, "same.txt"), "same", ref)
	res1 := runEng(t, eng, src)
	if res1.Copied != 2 {
		t.Fatalf("first run %+v", res1)
	}
	// Wait past the timestamp granularity before editing (a coarse clock tick).
	time.Sleep(30 * time.Millisecond)
	write(t, f, "D,b\n", ref) // same size, mtime restored
	res2 := runEng(t, eng, src)
	got, _ := os.ReadFile(filepath.Join(res2.Dir, filepath.FromSlash(sourceDir(src)+"/F.csv")))
	if string(got) != "D,b\n" {
		t.Fatalf("new generation holds %q, want the edited content (run %+v)", got, res2)
	}
	m, _, err := readManifest(res2.Dir)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := hashFile(f)
	for _, mf := range m.Files {
		if strings.HasSuffix(mf.Path, "/F.csv") && mf.SHA256 != want {
			t.Fatalf("manifest records %s, the file hashes to %s", mf.SHA256, want)
		}
	}
	if res2.Linked != 1 || res2.Copied != 1 || res2.Compared != 1 {
		t.Fatalf("second run copied %d linked %d, want the unchanged file linked", res2.Copied, res2.Linked)
	}
	// The third run links both on their unchanged ctime, reading neither source.
	res3 := runEng(t, eng, src)
	if res3.Linked != 2 || res3.LinkedUnverified != 0 || res3.Compared != 0 {
		t.Fatalf("third run %+v", res3)
	}
}

// TestOldManifestWithoutCTimeIsNotTrusted: a previous generation written by
// an older agent (no ctime in its manifest) must not vouch for a file on
// size and mtime alone: the source is hashed, and a changed file is copied.
func TestOldManifestWithoutCTimeIsNotTrusted(t *testing.T) {
	src, dest := t.TempDir(), t.TempDir()
	now := t0
	eng := &engine{hostDir: dest, host: "pc-01", now: func() time.Time { now = now.Add(time.Second); return now },
		manifests: map[string]string{}}
	ref := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f := filepath.Join(src, "F.csv")
	write(t, f, "A,b\n", ref)
	write(t, filepath.Join(src, "same.txt"), "same", ref)
	res1 := runEng(t, eng, src)
	// Make the manifest look like an older agent's: no ctime field.
	mp := filepath.Join(res1.Dir, ManifestName)
	m, _, err := readManifest(res1.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range m.Files {
		m.Files[i].CTime = time.Time{}
	}
	b := marshalManifest(t, m)
	if strings.Contains(string(b), "ctime") {
		t.Fatalf("old-style manifest still has ctime: %s", b)
	}
	if err := os.WriteFile(mp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, sum, _ := readManifest(res1.Dir)
	eng.manifests[res1.Generation] = sum
	write(t, f, "D,b\n", ref)
	res2 := runEng(t, eng, src)
	if linkOnSizeAndMTime {
		// Windows: the documented limitation. Both are linked on size and
		// mtime, and say so.
		if res2.Linked != 2 || res2.LinkedUnverified != 2 {
			t.Fatalf("second run %+v, want both links marked unverified", res2)
		}
		return
	}
	got, _ := os.ReadFile(filepath.Join(res2.Dir, filepath.FromSlash(sourceDir(src)+"/F.csv")))
	if string(got) != "D,b\n" {
		t.Fatalf("new generation holds %q after an old manifest", got)
	}
	// The unchanged file hashes the same: linked, on a checked basis.
	if res2.Copied != 1 || res2.Linked != 1 || res2.LinkedUnverified != 0 || res2.Compared != 2 {
		t.Fatalf("second run %+v", res2)
	}
}

func statT(t *testing.T, p string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

func runEng(t *testing.T, eng *engine, src string) Result {
	t.Helper()
	res, err := eng.run(context.Background(), []Source{{Path: src}})
	if err != nil {
		t.Fatal(err)
	}
	eng.manifests[res.Generation] = res.ManifestHash
	return res
}

// TestMissingDestinationRootFails: once the agent has written to a
// destination, the destination itself going missing (an unmounted share,
// a moved folder) fails the run with backup.destination_missing; the agent
// does not recreate it on the local disk. The very first backup to a
// destination may create it.
func TestMissingDestinationRootFails(t *testing.T) {
	parent := t.TempDir()
	r := newRig(t, filepath.Join(parent, "x", "backup"))
	write(t, filepath.Join(r.src, "f.txt"), "f", t0)
	r.enforce(t, 3)
	r.cycle() // first backup to this destination: created
	if st := r.c.Status(); st.State != controls.Pass {
		t.Fatalf("first backup %+v %+v", st, r.rec.Events())
	}
	moved := filepath.Join(parent, "moved")
	if err := os.Rename(filepath.Join(parent, "x"), moved); err != nil {
		t.Fatal(err)
	}
	r.clock.Advance(2 * time.Hour)
	r.cycle()
	if _, err := os.Stat(r.dest); !os.IsNotExist(err) {
		t.Fatalf("missing destination was recreated: %v", err)
	}
	st := r.c.Status()
	if st.State != controls.Fail || st.Reason != "backup.destination_missing" || st.ReasonJA == "" || st.ReasonEN == "" {
		t.Fatalf("status %+v", st)
	}
	failed := r.rec.OfType(TypeFailed)
	if len(failed) != 1 || failed[0].Attrs["reason"] != "destination_missing" || failed[0].Attrs["reason_ja"] == nil {
		t.Fatalf("failed events %+v", failed)
	}
	if n := len(r.rec.OfType(TypeCompleted)); n != 1 {
		t.Fatalf("completed %d", n)
	}
	// A missing share is not "someone deleted the generations".
	if n := len(r.rec.OfType(TypeGenerationsMissing)); n != 0 {
		t.Fatalf("generations reported missing while the destination is: %+v", r.rec.OfType(TypeGenerationsMissing))
	}
	// A restarted agent remembers the destination.
	env := controls.Env{Emit: r.rec, Clock: r.clock, Log: zerolog.Nop(), StateDir: r.c.env.StateDir}
	c2 := newControl(env, "pc-01")
	c2.loadManifests()
	if err := c2.Apply(context.Background(), policyOf(r)); err != nil {
		t.Fatal(err)
	}
	c2.cycle(context.Background(), c2.config())
	if st := c2.Status(); st.Reason != "backup.destination_missing" {
		t.Fatalf("after restart %+v", st)
	}
	if _, err := os.Stat(r.dest); !os.IsNotExist(err) {
		t.Fatalf("missing destination was recreated after restart: %v", err)
	}
	// Mounted again: back to normal, the old generation still counts.
	if err := os.Rename(moved, filepath.Join(parent, "x")); err != nil {
		t.Fatal(err)
	}
	r.clock.Advance(retryAfter)
	r.cycle()
	if st := r.c.Status(); st.State != controls.Pass || len(r.rec.OfType(TypeCompleted)) != 2 {
		t.Fatalf("after remount %+v", st)
	}
	for _, e := range r.rec.Events() {
		if err := e.Validate(); err != nil {
			t.Fatalf("%s: %v", e.Type, err)
		}
	}
}

// TestVanishedGenerationsRecorded: generations the agent knew that are gone
// (deleted by someone else) are reported once, by name; the agent's own
// pruning is not reported as vanished.
func TestVanishedGenerationsRecorded(t *testing.T) {
	r := newRig(t, t.TempDir())
	write(t, filepath.Join(r.src, "f.txt"), "f", t0)
	r.enforce(t, 3)
	for i := 0; i < 4; i++ { // 4 runs, keep 3: one pruned by the agent
		r.cycle()
		r.clock.Advance(time.Hour)
	}
	if n := len(r.rec.OfType(TypePruned)); n != 1 {
		t.Fatalf("pruned %d", n)
	}
	if ev := r.rec.OfType(TypeGenerationsMissing); len(ev) != 0 {
		t.Fatalf("pruning reported as vanished: %+v", ev)
	}
	gens := generations(t, r)
	if len(gens) != 3 {
		t.Fatalf("generations %v", gens)
	}
	// Someone deletes the oldest generation.
	if err := os.RemoveAll(gens[0].Dir); err != nil {
		t.Fatal(err)
	}
	r.clock.Advance(time.Minute)
	r.c.lastVerify = time.Time{}
	r.cycle()
	ev := r.rec.OfType(TypeGenerationsMissing)
	if len(ev) != 1 || ev[0].Severity != event.Warning {
		t.Fatalf("vanished events %+v", ev)
	}
	names, _ := ev[0].Attrs["generations"].([]any)
	if len(names) != 1 || names[0] != gens[0].Name {
		t.Fatalf("vanished %v, want %s", ev[0].Attrs, gens[0].Name)
	}
	r.clock.Advance(time.Minute)
	r.cycle()
	if n := len(r.rec.OfType(TypeGenerationsMissing)); n != 1 {
		t.Fatalf("reported again: %d", n)
	}
	// Someone deletes all of them (the host folder too).
	gens = generations(t, r)
	if err := os.RemoveAll(filepath.Join(r.dest, "pc-01")); err != nil {
		t.Fatal(err)
	}
	r.c.cycle(context.Background(), r.c.config()) // next check notices, runs a new backup
	ev = r.rec.OfType(TypeGenerationsMissing)
	if len(ev) != 2 {
		t.Fatalf("vanished events %d", len(ev))
	}
	names, _ = ev[1].Attrs["generations"].([]any)
	if len(names) != len(gens) || attrInt(t, ev[1], "count") != int64(len(gens)) {
		t.Fatalf("vanished %v, want %v", names, gens)
	}
	for i, g := range gens {
		if names[i] != g.Name {
			t.Fatalf("vanished %v, want %v", names, gens)
		}
	}
	if n := len(r.rec.OfType(TypeCompleted)); n != 6 || generations(t, r)[0].Name == gens[0].Name {
		t.Fatalf("no fresh backup after all generations vanished: %d completed", n)
	}
	for _, e := range r.rec.Events() {
		if err := e.Validate(); err != nil {
			t.Fatalf("%s: %v", e.Type, err)
		}
	}
}

func policyOf(r *rig) *policy.Policy {
	return &policy.Policy{Controls: policy.Controls{Backup: policy.Backup{Mode: policy.Enforce, Destination: r.dest,
		Folders: []policy.Folder{{Path: r.src, RegisterID: "REG-001"}}, MaxAge: policy.Duration(26 * time.Hour),
		Schedule: policy.Duration(time.Hour), Generations: 3}}}
}

func marshalManifest(t *testing.T, m *Manifest) []byte {
	t.Helper()
	b, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRacyCTimeIsCompared: a ctime recorded within racyCTime of the run
// that read it may hide an edit made in the same timestamp tick: the next
// run compares content instead of trusting it.
func TestRacyCTimeIsCompared(t *testing.T) {
	if _, ok := changeTimeOf(statT(t, t.TempDir())); !ok {
		t.Skip("no inode change time on " + runtime.GOOS)
	}
	src, dest := t.TempDir(), t.TempDir()
	eng := &engine{hostDir: dest, host: "pc-01", now: time.Now, manifests: map[string]string{}}
	write(t, filepath.Join(src, "f.txt"), "f", t0)
	runEng(t, eng, src)
	if res := runEng(t, eng, src); res.Linked != 1 || res.Compared != 1 {
		t.Fatalf("second run %+v, want the racy file compared, then linked", res)
	}
}

// TestSameDeviceNoted: a destination on the same filesystem as a source
// (a disk failure takes both) passes with a note, not a failure; on another
// filesystem (a tmpfs, root on Linux) there is no note.
func TestSameDeviceNoted(t *testing.T) {
	r := newRig(t, t.TempDir())
	if _, ok := deviceID(r.src); !ok {
		t.Skip("no device id on " + runtime.GOOS)
	}
	write(t, filepath.Join(r.src, "f.txt"), "f", t0)
	r.enforce(t, 3)
	r.cycle()
	st := r.rec.OfType(TypeStatus)
	if len(st) != 1 || st[0].Attrs["status"] != "pass" || st[0].Attrs["same_device"] != true ||
		st[0].Attrs["note_ja"] == nil || st[0].Attrs["note_en"] == nil {
		t.Fatalf("status %+v", st)
	}
	if srcs, _ := st[0].Attrs["same_device_sources"].([]any); len(srcs) != 1 || srcs[0] != r.src {
		t.Fatalf("same_device_sources %v", st[0].Attrs["same_device_sources"])
	}
	for _, e := range r.rec.Events() {
		if err := e.Validate(); err != nil {
			t.Fatalf("%s: %v", e.Type, err)
		}
	}
	// A destination not yet created is judged by the folder it will be made in.
	if same, _ := sameDeviceSources([]Source{{Path: r.src}}, filepath.Join(r.dest, "not", "yet")); len(same) != 1 {
		t.Fatalf("missing destination: %v", same)
	}
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		return
	}
	other := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", other).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", other).Run() })
	if same, _ := sameDeviceSources([]Source{{Path: r.src}}, other); len(same) != 0 {
		t.Fatalf("tmpfs destination on the same device as %v", same)
	}
}

// TestUpgradedAgentMissingDestinationFails: an agent upgraded from a
// version without the destinations record, which has written backups
// (its manifest record is not empty), does not take a missing destination
// for a first backup.
func TestUpgradedAgentMissingDestinationFails(t *testing.T) {
	parent := t.TempDir()
	r := newRig(t, filepath.Join(parent, "nas", "backup"))
	write(t, filepath.Join(r.src, "f.txt"), "f", t0)
	if err := os.WriteFile(filepath.Join(r.c.env.StateDir, stateFile), []byte(`{"20261122T090000.000000000Z":"abc"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	r.c.loadManifests()
	r.enforce(t, 3)
	r.cycle()
	if st := r.c.Status(); st.Reason != "backup.destination_missing" {
		t.Fatalf("status %+v", st)
	}
	if _, err := os.Stat(r.dest); !os.IsNotExist(err) {
		t.Fatalf("missing destination was created: %v", err)
	}
	// Once the destination is back and backed up to, the record takes over.
	if err := os.MkdirAll(r.dest, 0o700); err != nil {
		t.Fatal(err)
	}
	r.clock.Advance(retryAfter)
	r.cycle()
	if st := r.c.Status(); st.State != controls.Pass || r.c.legacyWritten && len(r.c.dests) == 0 {
		t.Fatalf("status %+v", st)
	}
}
