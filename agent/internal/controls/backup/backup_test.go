package backup

import (
	"bufio"
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/agent/internal/controls/controlstest"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/policy"
)

var t0 = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

type rig struct {
	c     *Control
	clock *controlstest.FakeClock
	rec   *controlstest.Recorder
	src   string
	dest  string
}

func newRig(t *testing.T, dest string) *rig {
	t.Helper()
	clock := controlstest.NewFakeClock(t0)
	rec := &controlstest.Recorder{}
	env := controls.Env{Emit: rec, Clock: clock, Log: zerolog.Nop(), StateDir: t.TempDir()}
	r := &rig{c: newControl(env, "pc-01"), clock: clock, rec: rec, src: t.TempDir(), dest: dest}
	r.c.loadManifests()
	return r
}

func (r *rig) apply(t *testing.T, b policy.Backup) {
	t.Helper()
	p := &policy.Policy{Controls: policy.Controls{Backup: b}}
	if err := r.c.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) enforce(t *testing.T, gens int) {
	r.apply(t, policy.Backup{Mode: policy.Enforce, Destination: r.dest,
		Folders: []policy.Folder{{Path: r.src, RegisterID: "REG-001"}}, MaxAge: policy.Duration(26 * time.Hour),
		Schedule: policy.Duration(time.Hour), Generations: gens})
}

func (r *rig) cycle() { r.c.cycle(context.Background(), r.c.config()) }

func write(t *testing.T, p, s string, mtime time.Time) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func attrInt(t *testing.T, e event.Event, k string) int64 {
	t.Helper()
	switch v := e.Attrs[k].(type) {
	case int:
		return int64(v)
	case int64:
		return v
	}
	t.Fatalf("%s attr %s = %#v", e.Type, k, e.Attrs[k])
	return 0
}

func generations(t *testing.T, r *rig) []Generation {
	t.Helper()
	eng := &engine{hostDir: filepath.Join(r.dest, "pc-01")}
	g, err := eng.goodGenerations()
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestEndToEnd backs up, changes files, backs up again incrementally, flips
// a byte at the destination and checks the verify pass names that file.
func TestEndToEnd(t *testing.T) {
	r := newRig(t, t.TempDir())
	old := t0.Add(-48 * time.Hour)
	write(t, filepath.Join(r.src, "台帳.csv"), "id,name\n1,山田\n", old)
	write(t, filepath.Join(r.src, "a", "b", "letter.txt"), "hello", old)
	write(t, filepath.Join(r.src, "a", "same.txt"), "unchanged", old)
	r.enforce(t, 7)

	r.cycle()
	done := r.rec.OfType(TypeCompleted)
	if len(done) != 1 {
		t.Fatalf("completed events %d: %+v", len(done), r.rec.Events())
	}
	e := done[0]
	if attrInt(t, e, "files") != 3 || attrInt(t, e, "copied") != 3 || attrInt(t, e, "linked") != 0 || e.RegisterID != "REG-001" {
		t.Fatalf("first run: %+v", e)
	}
	gens := generations(t, r)
	if len(gens) != 1 {
		t.Fatalf("generations %v", gens)
	}
	m, sum, err := readManifest(gens[0].Dir)
	if err != nil || sum != e.Attrs["manifest_sha256"] || len(m.Files) != 3 {
		t.Fatalf("manifest %v %s %v", m, sum, err)
	}
	if st := r.c.Status(); st.State != controls.Pass || st.Reason != "backup.ok" {
		t.Fatalf("status %+v", st)
	}

	// Change one file, add one; the third stays as it was.
	write(t, filepath.Join(r.src, "台帳.csv"), "id,name\n1,山田\n2,佐藤\n", t0)
	write(t, filepath.Join(r.src, "new.txt"), "new", t0)
	r.cycle() // not due yet: no second run
	if n := len(r.rec.OfType(TypeCompleted)); n != 1 {
		t.Fatalf("ran before schedule: %d", n)
	}
	r.clock.Advance(time.Hour)
	r.cycle()
	done = r.rec.OfType(TypeCompleted)
	if len(done) != 2 {
		t.Fatalf("completed %d", len(done))
	}
	e = done[1]
	if attrInt(t, e, "files") != 4 || attrInt(t, e, "copied") != 2 || attrInt(t, e, "linked") != 2 {
		t.Fatalf("incremental run: %+v", e.Attrs)
	}
	gens = generations(t, r)
	if len(gens) != 2 {
		t.Fatalf("generations %v", gens)
	}
	base := sourceDir(r.src)
	same := func(g Generation, p string) os.FileInfo {
		fi, err := os.Stat(filepath.Join(g.Dir, filepath.FromSlash(base+"/"+p)))
		if err != nil {
			t.Fatal(err)
		}
		return fi
	}
	if !os.SameFile(same(gens[0], "a/same.txt"), same(gens[1], "a/same.txt")) {
		t.Fatal("unchanged file was copied, not linked")
	}
	got, _ := os.ReadFile(filepath.Join(gens[1].Dir, filepath.FromSlash(base+"/台帳.csv")))
	if string(got) != "id,name\n1,山田\n2,佐藤\n" {
		t.Fatalf("changed file in new generation: %q", got)
	}
	if len(r.rec.OfType(TypeCorrupt)) != 0 {
		t.Fatal("corruption reported on a clean destination")
	}

	// Flip one byte of a file that exists only in the newest generation.
	victim := filepath.Join(gens[1].Dir, filepath.FromSlash(base+"/new.txt"))
	b, _ := os.ReadFile(victim)
	b[0] ^= 0x01
	if err := os.WriteFile(victim, b, 0o644); err != nil {
		t.Fatal(err)
	}
	r.clock.Advance(time.Minute)
	r.c.verifyAll(context.Background(), &engine{hostDir: filepath.Join(r.dest, "pc-01")})
	bad := r.rec.OfType(TypeCorrupt)
	if len(bad) != 1 {
		t.Fatalf("corrupt events %d", len(bad))
	}
	paths := bad[0].Attrs["paths"].([]any)
	if len(paths) != 1 || paths[0] != base+"/new.txt" || bad[0].Attrs["generation"] != gens[1].Name || bad[0].Severity != event.Violation {
		t.Fatalf("corrupt event %+v", bad[0].Attrs)
	}
	r.c.report(context.Background(), r.c.config(), gens[1].Time, nil)
	if st := r.c.Status(); st.State != controls.Fail || st.Reason != "backup.corrupt" {
		t.Fatalf("status after corruption %+v", st)
	}
	for _, e := range r.rec.Events() {
		if err := e.Validate(); err != nil {
			t.Fatalf("%s: %v", e.Type, err)
		}
	}
}

// TestDiskFull fills a 1 MiB tmpfs: the run fails, its partial generation
// is gone, and the earlier good generation is untouched.
func TestDiskFull(t *testing.T) {
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("needs root on Linux to mount a small tmpfs")
	}
	dest := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dest).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dest).Run() })
	r := newRig(t, dest)
	write(t, filepath.Join(r.src, "small.txt"), "small", t0)
	r.enforce(t, 7)
	r.cycle()
	if len(r.rec.OfType(TypeCompleted)) != 1 {
		t.Fatalf("first run did not complete: %+v", r.rec.Events())
	}
	write(t, filepath.Join(r.src, "big.bin"), strings.Repeat("x", 3<<20), t0)
	r.clock.Advance(2 * time.Hour)
	r.cycle()
	failed := r.rec.OfType(TypeFailed)
	if len(failed) != 1 || failed[0].Attrs["disk_full"] != true {
		t.Fatalf("failed events %+v", failed)
	}
	if n := len(r.rec.OfType(TypeCompleted)); n != 1 {
		t.Fatalf("a partial backup was reported good: %d completed", n)
	}
	ents, _ := os.ReadDir(filepath.Join(dest, "pc-01"))
	if len(ents) != 1 {
		t.Fatalf("partial generation left behind: %v", ents)
	}
	if g := generations(t, r); len(g) != 1 {
		t.Fatalf("good generations %v", g)
	}
	if st := r.c.Status(); st.State != controls.Fail || st.Reason != "backup.last_run_failed" {
		t.Fatalf("status %+v", st)
	}
}

func TestCrashLeftoverIsNotGoodAndIsRemoved(t *testing.T) {
	r := newRig(t, t.TempDir())
	write(t, filepath.Join(r.src, "f.txt"), "f", t0)
	crashed := filepath.Join(r.dest, "pc-01", t0.Add(-time.Hour).UTC().Format(genLayout))
	write(t, filepath.Join(crashed, "half.txt"), "half", t0)
	if g := generations(t, r); len(g) != 0 {
		t.Fatalf("a generation without manifest counted as good: %v", g)
	}
	r.enforce(t, 7)
	r.cycle()
	if _, err := os.Stat(crashed); !os.IsNotExist(err) {
		t.Fatalf("crash leftover still there: %v", err)
	}
	if g := generations(t, r); len(g) != 1 {
		t.Fatalf("generations %v", g)
	}
}

func TestKeepsNGenerations(t *testing.T) {
	r := newRig(t, t.TempDir())
	write(t, filepath.Join(r.src, "f.txt"), "f", t0)
	r.enforce(t, 2)
	for i := 0; i < 4; i++ {
		r.cycle()
		r.clock.Advance(time.Hour)
	}
	if g := generations(t, r); len(g) != 2 || g[1].Time != t0.Add(3*time.Hour) {
		t.Fatalf("generations %v", g)
	}
	if n := len(r.rec.OfType(TypePruned)); n != 2 {
		t.Fatalf("pruned events %d", n)
	}
	if len(r.c.manifests) != 2 {
		t.Fatalf("manifest record %v", r.c.manifests)
	}
	// A rewritten manifest is caught by the hash recorded when it was written.
	g := generations(t, r)[1]
	mp := filepath.Join(g.Dir, ManifestName)
	b, _ := os.ReadFile(mp)
	os.WriteFile(mp, bytes.Replace(b, []byte(`"host": "pc-01"`), []byte(`"host": "pc-02"`), 1), 0o644)
	r.c.verifyAll(context.Background(), &engine{hostDir: filepath.Join(r.dest, "pc-01")})
	bad := r.rec.OfType(TypeCorrupt)
	if len(bad) != 1 || bad[0].Attrs["paths"].([]any)[0] != ManifestName {
		t.Fatalf("corrupt %+v", bad)
	}
}

func TestAuditReportsOverdueOnce(t *testing.T) {
	r := newRig(t, t.TempDir())
	write(t, filepath.Join(r.src, "f.txt"), "f", t0)
	r.enforce(t, 7)
	r.cycle()
	r.apply(t, policy.Backup{Mode: policy.Audit, Destination: r.dest, Sources: []string{r.src},
		MaxAge: policy.Duration(26 * time.Hour)})
	r.clock.Advance(27 * time.Hour)
	r.cycle()
	r.clock.Advance(time.Hour)
	r.cycle()
	if n := len(r.rec.OfType(TypeCompleted)); n != 1 {
		t.Fatalf("audit mode ran a backup: %d", n)
	}
	od := r.rec.OfType(TypeOverdue)
	if len(od) != 1 || attrInt(t, od[0], "age_seconds") != 27*3600 {
		t.Fatalf("overdue %+v", od)
	}
	if st := r.c.Status(); st.State != controls.Fail || st.Reason != "backup.overdue" {
		t.Fatalf("status %+v", st)
	}
}

// TestRunLoop drives Run with the fake clock: a backup at start, the next
// one when the schedule says.
func TestRunLoop(t *testing.T) {
	r := newRig(t, t.TempDir())
	write(t, filepath.Join(r.src, "f.txt"), "f", t0)
	r.enforce(t, 7)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.c.Run(ctx) }()
	// Nudge the fake clock a minute at a time: the loop may have computed
	// its next wake-up just before or just after an Advance.
	waitFor := func(n int) {
		deadline := time.Now().Add(10 * time.Second)
		for len(r.rec.OfType(TypeCompleted)) < n {
			if time.Now().After(deadline) {
				t.Fatalf("waiting for %d completed: %+v", n, r.rec.Events())
			}
			if r.clock.Waiters() > 0 && n > 1 {
				r.clock.Advance(time.Minute)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	waitFor(1)
	waitFor(2)
	done := r.rec.OfType(TypeCompleted)
	if got := done[1].Time.Sub(done[0].Time); got < time.Hour || got > time.Hour+2*time.Minute {
		t.Fatalf("second run %v after the first, schedule is 1h", got)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if st := r.rec.OfType(TypeStatus); len(st) == 0 || st[0].Attrs["status"] != "pass" {
		t.Fatalf("status events %+v", st)
	}
}

func TestParseConfig(t *testing.T) {
	abs := t.TempDir()
	src := filepath.Join(abs, "src")
	dst := filepath.Join(abs, "dst")
	for _, tc := range []struct {
		name string
		b    policy.Backup
		want string // error substring; "" = valid
	}{
		{"off", policy.Backup{}, ""},
		{"copy", policy.Backup{Mode: policy.Enforce, Sources: []string{src}, Destination: dst}, ""},
		{"observe", policy.Backup{Mode: policy.Audit, Method: MethodObserve, Destination: dst}, ""},
		{"bad mode", policy.Backup{Mode: "sometimes"}, "mode"},
		{"bad method", policy.Backup{Mode: policy.Audit, Method: "rsync", Destination: dst}, "method"},
		{"no destination", policy.Backup{Mode: policy.Audit, Sources: []string{src}}, "destination"},
		{"relative destination", policy.Backup{Mode: policy.Audit, Sources: []string{src}, Destination: "backup"}, "destination"},
		// Accepted: the register's folders are added per host, and a PC
		// with none must not fail its whole policy (see TestNoSources).
		{"no sources", policy.Backup{Mode: policy.Enforce, Destination: dst}, ""},
		{"relative source", policy.Backup{Mode: policy.Enforce, Sources: []string{"docs"}, Destination: dst}, "absolute"},
		{"dest inside source", policy.Backup{Mode: policy.Enforce, Sources: []string{abs}, Destination: dst}, "overlap"},
		{"negative generations", policy.Backup{Mode: policy.Enforce, Sources: []string{src}, Destination: dst, Generations: -1}, "generations"},
		{"tiny schedule", policy.Backup{Mode: policy.Enforce, Sources: []string{src}, Destination: dst, Schedule: policy.Duration(time.Second)}, "schedule"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseConfig(tc.b)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.mode.Enabled() && (cfg.schedule != cfg.maxAge/2 || cfg.generations != policy.DefaultGenerations) {
					t.Fatalf("defaults not applied: %+v", cfg)
				}
				if tc.name == "no sources" && (cfg.method != MethodCopy || len(cfg.sources) != 0 || cfg.destination != dst) {
					t.Fatalf("no sources: %+v", cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "backup: ") {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
	// A bad policy keeps the previous settings.
	r := newRig(t, dst)
	r.enforce(t, 3)
	bad := &policy.Policy{Controls: policy.Controls{Backup: policy.Backup{Mode: policy.Enforce}}}
	if err := r.c.Apply(context.Background(), bad); err == nil || r.c.config().generations != 3 {
		t.Fatalf("bad policy adopted: %v %+v", err, r.c.config())
	}
}

// TestNoSources: method copy with no sources and no register folders on
// this PC is accepted; the control runs no backup, verifies nothing, raises
// no overdue violation and reports unknown with backup.no_sources until a
// later policy names folders, which then back up as usual.
func TestNoSources(t *testing.T) {
	r := newRig(t, t.TempDir())
	write(t, filepath.Join(r.src, "f.txt"), "f", t0)
	none := policy.Backup{Mode: policy.Enforce, Destination: r.dest,
		MaxAge: policy.Duration(26 * time.Hour), Schedule: policy.Duration(time.Hour)}
	r.apply(t, none) // r.apply fails the test if Apply refuses the policy
	check := func(when string) {
		t.Helper()
		for _, typ := range []string{TypeCompleted, TypeFailed, TypeOverdue, TypeCorrupt, TypePruned} {
			if n := len(r.rec.OfType(typ)); n != 0 {
				t.Fatalf("%s: %d %s events: %+v", when, n, typ, r.rec.Events())
			}
		}
		st := r.c.Status()
		if st.State != controls.Unknown || st.Reason != "backup.no_sources" ||
			!strings.Contains(st.ReasonEN, "nothing to back up") || !strings.Contains(st.ReasonJA, "バックアップ対象がありません") {
			t.Fatalf("%s: status %+v", when, st)
		}
		if ents, err := os.ReadDir(r.dest); err != nil || len(ents) != 0 {
			t.Fatalf("%s: destination touched: %v %v", when, ents, err)
		}
	}

	if wait := r.c.cycle(context.Background(), r.c.config()); wait != statusInterval {
		t.Fatalf("wait %v, want the status interval %v", wait, statusInterval)
	}
	check("first cycle")
	sts := r.rec.OfType(TypeStatus)
	if len(sts) != 1 || sts[0].Attrs["status"] != "unknown" || sts[0].Attrs["reason"] != "backup.no_sources" ||
		sts[0].Severity != event.Warning || sts[0].Attrs["destination"] != r.dest {
		t.Fatalf("status events %+v", sts)
	}
	// Days later: still nothing to back up, still no overdue violation.
	r.clock.Advance(30 * time.Hour)
	r.cycle()
	check("after max_age")

	// Audit mode with nothing named says the same.
	audit := none
	audit.Mode = policy.Audit
	r.apply(t, audit)
	r.cycle()
	check("audit")

	// Run drives the same cycle and then sleeps on the clock.
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.c.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for r.clock.Waiters() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Run did not wait on the clock")
		}
		time.Sleep(2 * time.Millisecond)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	check("Run")

	// A later policy with register folders backs up at once.
	with := none
	with.Folders = []policy.Folder{{Path: r.src, RegisterID: "REG-001"}}
	r.apply(t, with)
	r.cycle()
	if n := len(r.rec.OfType(TypeCompleted)); n != 1 {
		t.Fatalf("folders added: %d completed: %+v", n, r.rec.Events())
	}
	if st := r.c.Status(); st.State != controls.Pass || st.Reason != "backup.ok" {
		t.Fatalf("status after folders added: %+v", st)
	}
}

func TestSourceDir(t *testing.T) {
	if runtime.GOOS == "windows" {
		for in, want := range map[string]string{`C:\Data\顧客`: "C/Data/顧客", `\\nas\share\x`: "UNC/nas/share/x", `D:\`: "D"} {
			if got := sourceDir(in); got != want {
				t.Errorf("sourceDir(%q) = %q, want %q", in, got, want)
			}
		}
		return
	}
	for in, want := range map[string]string{"/home/a/docs/": "home/a/docs", "/srv": "srv"} {
		if got := sourceDir(in); got != want {
			t.Errorf("sourceDir(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseFileHistoryName(t *testing.T) {
	f, err := os.Open("testdata/filehistory_names.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, want, _ := strings.Cut(line, "\t")
		got, ok := parseFileHistoryName(name)
		if want == "-" {
			if ok {
				t.Errorf("%q: got %v, want none", name, got)
			}
		} else if w, _ := time.Parse(time.RFC3339, want); !ok || !got.Equal(w) {
			t.Errorf("%q: got %v %v, want %v", name, got, ok, w)
		}
		n++
	}
	if n < 8 {
		t.Fatalf("fixture has %d cases", n)
	}
}

func TestObserve(t *testing.T) {
	root := t.TempDir()
	data := filepath.Join(root, "FileHistory", "yamada", "PC-01", "Data", "C", "Users", "yamada")
	// File History keeps the source mtime: the name, not the mtime, dates the backup.
	write(t, filepath.Join(data, "台帳 (2026_11_22 09_00_00 UTC).xlsx"), "x", t0.Add(-400*24*time.Hour))
	write(t, filepath.Join(data, "memo (2026_11_20 09_00_00 UTC).txt"), "x", t0.Add(-400*24*time.Hour))
	write(t, filepath.Join(root, "other", "nas-copy.bin"), "x", t0.Add(-72*time.Hour))
	o, err := observeNewest(context.Background(), root, maxObserveEntries)
	if err != nil {
		t.Fatal(err)
	}
	if !o.Newest.Equal(time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)) || o.Files != 3 || !strings.Contains(o.Path, "台帳") {
		t.Fatalf("observed %+v", o)
	}
	if o, _ := observeNewest(context.Background(), root, 2); !o.Truncated {
		t.Fatalf("walk not bounded: %+v", o)
	}
	if _, err := observeNewest(context.Background(), filepath.Join(root, "missing"), 10); err == nil {
		t.Fatal("missing destination gave no error")
	}

	r := newRig(t, root)
	r.apply(t, policy.Backup{Mode: policy.Audit, Method: MethodObserve, Destination: root, MaxAge: policy.Duration(26 * time.Hour)})
	r.cycle()
	if st := r.c.Status(); st.State != controls.Pass {
		t.Fatalf("status %+v", st)
	}
	r.clock.Advance(24 * time.Hour)
	r.cycle()
	if st := r.c.Status(); st.State != controls.Fail || st.Reason != "backup.overdue" || len(r.rec.OfType(TypeOverdue)) != 1 {
		t.Fatalf("status %+v", st)
	}
}

// flip changes one byte of p in place, keeping its size.
func flip(t *testing.T, p string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x01
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDamagedCopyIsNotLinked: a byte flipped in the newest generation (the
// source untouched) must not be hard-linked into the next one. The next run
// copies that file from the source again and its generation verifies.
func TestDamagedCopyIsNotLinked(t *testing.T) {
	r := newRig(t, t.TempDir())
	old := t0.Add(-48 * time.Hour)
	const ledger = "id,name\n1,山田\n"
	write(t, filepath.Join(r.src, "台帳.csv"), ledger, old)
	write(t, filepath.Join(r.src, "same.txt"), "unchanged", old)
	r.enforce(t, 7)
	r.cycle()
	gens := generations(t, r)
	if len(gens) != 1 {
		t.Fatalf("generations %v", gens)
	}
	base := sourceDir(r.src)
	at := func(g Generation, p string) string { return filepath.Join(g.Dir, filepath.FromSlash(base+"/"+p)) }
	flip(t, at(gens[0], "台帳.csv"))

	r.clock.Advance(time.Hour)
	r.cycle()
	done := r.rec.OfType(TypeCompleted)
	if len(done) != 2 {
		t.Fatalf("completed %d: %+v", len(done), r.rec.Events())
	}
	if e := done[1]; attrInt(t, e, "copied") != 1 || attrInt(t, e, "linked") != 1 {
		t.Fatalf("run after damage: copied %v linked %v, want the damaged file copied from the source",
			e.Attrs["copied"], e.Attrs["linked"])
	}
	gens = generations(t, r)
	if len(gens) != 2 {
		t.Fatalf("generations %v", gens)
	}
	if got, _ := os.ReadFile(at(gens[1], "台帳.csv")); string(got) != ledger {
		t.Fatalf("new generation holds %q, want the source's %q", got, ledger)
	}
	a, _ := os.Stat(at(gens[0], "台帳.csv"))
	b, _ := os.Stat(at(gens[1], "台帳.csv"))
	if os.SameFile(a, b) {
		t.Fatal("damaged copy hard-linked into the new generation")
	}
	a, _ = os.Stat(at(gens[0], "same.txt"))
	b, _ = os.Stat(at(gens[1], "same.txt"))
	if !os.SameFile(a, b) {
		t.Fatal("intact unchanged file copied, not linked")
	}
	for _, e := range r.rec.OfType(TypeCorrupt) {
		if e.Attrs["generation"] != gens[0].Name {
			t.Fatalf("corrupt event for %v, only %s is damaged", e.Attrs["generation"], gens[0].Name)
		}
	}
	bad, _, err := (&engine{hostDir: filepath.Join(r.dest, "pc-01")}).verify(context.Background(), r.c.manifests)
	if err != nil || len(bad) != 1 || bad[0].Generation != gens[0].Name {
		t.Fatalf("verify %+v %v, want only %s corrupt", bad, err, gens[0].Name)
	}

	// The next run links from the intact new generation again.
	r.clock.Advance(time.Hour)
	r.cycle()
	if e := r.rec.OfType(TypeCompleted)[2]; attrInt(t, e, "copied") != 0 || attrInt(t, e, "linked") != 2 {
		t.Fatalf("third run %+v", e.Attrs)
	}
}

// TestCorruptionDoesNotCostTheIntactCopy replays the field report with
// generations 2: a file copied into the newest generation is damaged while
// the older generation stays intact. Later runs and pruning must always
// leave an intact generation holding the source's content, and once the
// damaged generation is pruned the status is good again.
func TestCorruptionDoesNotCostTheIntactCopy(t *testing.T) {
	r := newRig(t, t.TempDir())
	old := t0.Add(-48 * time.Hour)
	write(t, filepath.Join(r.src, "x.txt"), "version 1", old)
	write(t, filepath.Join(r.src, "y.txt"), "y", old)
	r.enforce(t, 2)
	r.cycle()
	write(t, filepath.Join(r.src, "x.txt"), "version 2", t0)
	r.clock.Advance(time.Hour)
	r.cycle()
	gens := generations(t, r)
	if len(gens) != 2 {
		t.Fatalf("generations %v", gens)
	}
	base := sourceDir(r.src)
	flip(t, filepath.Join(gens[1].Dir, filepath.FromSlash(base+"/x.txt"))) // gens[0] keeps its own x.txt

	eng := &engine{hostDir: filepath.Join(r.dest, "pc-01")}
	for run := 3; run <= 4; run++ {
		r.clock.Advance(time.Hour)
		r.cycle()
		if n := len(r.rec.OfType(TypeCompleted)); n != run {
			t.Fatalf("run %d: completed %d", run, n)
		}
		gens = generations(t, r)
		bad, _, err := eng.verify(context.Background(), r.c.manifests)
		if err != nil {
			t.Fatal(err)
		}
		corrupt := map[string]bool{}
		for _, c := range bad {
			corrupt[c.Generation] = true
		}
		newest := gens[len(gens)-1]
		if corrupt[newest.Name] {
			t.Fatalf("run %d: newest generation %s is corrupt: %+v", run, newest.Name, bad)
		}
		if got, _ := os.ReadFile(filepath.Join(newest.Dir, filepath.FromSlash(base+"/x.txt"))); string(got) != "version 2" {
			t.Fatalf("run %d: newest generation holds %q", run, got)
		}
	}
	if gens = generations(t, r); len(gens) != 2 {
		t.Fatalf("generations %v", gens)
	}
	if st := r.c.Status(); st.State != controls.Pass || st.Reason != "backup.ok" {
		t.Fatalf("status after the damaged generation was pruned: %+v", st)
	}
}

// TestPolicyFixRunsAtOnce: after a run failed (a source that does not
// exist), a corrected policy runs at once and clears the old error; the
// same policy applied again keeps the retry wait.
func TestPolicyFixRunsAtOnce(t *testing.T) {
	r := newRig(t, t.TempDir())
	write(t, filepath.Join(r.src, "f.txt"), "f", t0)
	missing := filepath.Join(t.TempDir(), "gone")
	broken := policy.Backup{Mode: policy.Enforce, Destination: r.dest, Sources: []string{r.src, missing},
		MaxAge: policy.Duration(26 * time.Hour), Schedule: policy.Duration(time.Hour)}
	r.apply(t, broken)
	r.cycle()
	if n := len(r.rec.OfType(TypeFailed)); n != 1 {
		t.Fatalf("failed events %d: %+v", n, r.rec.Events())
	}
	r.apply(t, broken) // unchanged: still waits for the retry
	r.clock.Advance(time.Minute)
	r.cycle()
	if n := len(r.rec.OfType(TypeFailed)); n != 1 {
		t.Fatalf("same policy retried before %v: %d failed", retryAfter, n)
	}
	if st := r.c.Status(); st.Reason != "backup.last_run_failed" {
		t.Fatalf("status %+v", st)
	}
	fixed := broken
	fixed.Sources = []string{r.src}
	r.apply(t, fixed)
	r.clock.Advance(time.Minute)
	r.cycle()
	if n := len(r.rec.OfType(TypeCompleted)); n != 1 {
		t.Fatalf("corrected policy did not run: %d completed", n)
	}
	if st := r.c.Status(); st.State != controls.Pass || st.Reason != "backup.ok" {
		t.Fatalf("status after the corrected policy: %+v", st)
	}
}

// TestPruneKeepsNewestIntact: with the two newest generations corrupt (one
// damaged file, hard-linked into both), pruning to one generation keeps the
// older intact one as well.
func TestPruneKeepsNewestIntact(t *testing.T) {
	src, dest := t.TempDir(), t.TempDir()
	now := t0
	eng := &engine{hostDir: dest, host: "pc-01", now: func() time.Time { now = now.Add(time.Second); return now }}
	run := func() Generation {
		t.Helper()
		res, err := eng.run(context.Background(), []Source{{Path: src}})
		if err != nil {
			t.Fatal(err)
		}
		return Generation{Name: res.Generation, Dir: res.Dir}
	}
	write(t, filepath.Join(src, "x.txt"), "version 1", t0)
	g1 := run()
	write(t, filepath.Join(src, "x.txt"), "version 2", t0.Add(time.Hour))
	g2 := run()
	g3 := run() // links x.txt from g2
	flip(t, filepath.Join(g3.Dir, filepath.FromSlash(sourceDir(src)+"/x.txt")))
	bad, _, err := eng.verify(context.Background(), nil)
	if err != nil || len(bad) != 2 {
		t.Fatalf("verify %+v %v, want g2 and g3 corrupt", bad, err)
	}
	gone, err := eng.prune(1, bad)
	if err != nil || len(gone) != 1 || gone[0] != g2.Name {
		t.Fatalf("pruned %v %v, want only %s", gone, err, g2.Name)
	}
	gens, _ := eng.goodGenerations()
	if len(gens) != 2 || gens[0].Name != g1.Name || gens[1].Name != g3.Name {
		t.Fatalf("generations %v, want %s (intact) and %s (newest)", gens, g1.Name, g3.Name)
	}
	// Without corruption, keep means keep.
	if gone, err := eng.prune(1, nil); err != nil || len(gone) != 1 || gone[0] != g1.Name {
		t.Fatalf("pruned %v %v", gone, err)
	}
}

// TestRewrittenManifestIsNotLinkedFrom: a generation whose manifest is not
// the one written cannot vouch for its copies; the run links from the
// generation before it.
func TestRewrittenManifestIsNotLinkedFrom(t *testing.T) {
	src, dest := t.TempDir(), t.TempDir()
	now := t0
	eng := &engine{hostDir: dest, host: "pc-01", now: func() time.Time { now = now.Add(time.Second); return now },
		manifests: map[string]string{}}
	write(t, filepath.Join(src, "x.txt"), "x", t0)
	var dirs []string
	for i := 0; i < 2; i++ {
		res, err := eng.run(context.Background(), []Source{{Path: src}})
		if err != nil {
			t.Fatal(err)
		}
		eng.manifests[res.Generation] = res.ManifestHash
		dirs = append(dirs, res.Dir)
	}
	// Rewrite the newest manifest (content and hash together) and the copy to match.
	x := filepath.Join(dirs[1], filepath.FromSlash(sourceDir(src)+"/x.txt"))
	os.Remove(x)
	write(t, x, "y", t0)
	mp := filepath.Join(dirs[1], ManifestName)
	b, _ := os.ReadFile(mp)
	forged, _ := hashFile(x)
	want, _ := hashFile(filepath.Join(src, "x.txt"))
	if err := os.WriteFile(mp, bytes.Replace(b, []byte(want), []byte(forged), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := eng.run(context.Background(), []Source{{Path: src}})
	if err != nil || res.Linked != 1 {
		t.Fatalf("run %+v %v", res, err)
	}
	a, _ := os.Stat(filepath.Join(dirs[0], filepath.FromSlash(sourceDir(src)+"/x.txt")))
	n, _ := os.Stat(filepath.Join(res.Dir, filepath.FromSlash(sourceDir(src)+"/x.txt")))
	if !os.SameFile(a, n) {
		t.Fatal("linked from the generation with the rewritten manifest")
	}
}

// TestNonUTF8NameBacksUpAndVerifies: a file named in Shift_JIS bytes (not
// UTF-8) is copied, kept exactly in the manifest, verified as intact,
// linked by the next run, and named readably when its copy is damaged.
func TestNonUTF8NameBacksUpAndVerifies(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("file names that are not UTF-8 exist on Linux only")
	}
	r := newRig(t, t.TempDir())
	old := t0.Add(-48 * time.Hour)
	const name = "\x8c\xda\x8b\x71.csv" // 名簿.csv in Shift_JIS
	write(t, filepath.Join(r.src, name), "id,name\n", old)
	write(t, filepath.Join(r.src, "other.txt"), "x", old)
	r.enforce(t, 7)
	r.cycle()
	if bad := r.rec.OfType(TypeCorrupt); len(bad) != 0 {
		t.Fatalf("fresh backup reported corrupt: %+v", bad[0].Attrs)
	}
	if st := r.c.Status(); st.State != controls.Pass || st.Reason != "backup.ok" {
		t.Fatalf("status %+v", st)
	}
	gens := generations(t, r)
	m, _, err := readManifest(gens[0].Dir)
	if err != nil {
		t.Fatal(err)
	}
	base := sourceDir(r.src)
	var found bool
	for _, f := range m.Files {
		if f.Path == base+"/"+name && f.Source == filepath.Join(r.src, name) {
			found = true
		}
	}
	if !found {
		t.Fatalf("manifest lost the name's bytes: %+v", m.Files)
	}

	r.clock.Advance(time.Hour)
	r.cycle()
	if e := r.rec.OfType(TypeCompleted)[1]; attrInt(t, e, "linked") != 2 {
		t.Fatalf("second run: %v, want both files linked", e.Attrs)
	}
	gens = generations(t, r)
	flip(t, filepath.Join(gens[1].Dir, filepath.FromSlash(base+"/"+name)))
	r.clock.Advance(time.Minute)
	r.c.verifyAll(context.Background(), &engine{hostDir: filepath.Join(r.dest, "pc-01")})
	bad := r.rec.OfType(TypeCorrupt)
	if len(bad) != 2 { // the copy is hard-linked into both generations
		t.Fatalf("corrupt events %d", len(bad))
	}
	paths, _ := bad[0].Attrs["paths"].([]any)
	if len(paths) != 1 || paths[0] != base+`/\x8c`+"\u068bq.csv" || bad[0].Attrs["path_encoding"] != "escaped" {
		t.Fatalf("corrupt event %v", bad[0].Attrs)
	}
	for _, e := range r.rec.Events() {
		if err := e.Validate(); err != nil {
			t.Fatalf("%s: %v", e.Type, err)
		}
	}
	// An error naming such a file (backup.failed, status) is escaped too.
	if got := errText(&os.PathError{Op: "open", Path: "/s/" + name, Err: os.ErrPermission}); got != `open /s/\x8c`+"\u068bq.csv: permission denied" {
		t.Fatalf("errText = %q", got)
	}
}

// An empty folder in a source (a new year's folder not yet filled) is in
// the generation too: a restore brings back the folder layout people use.
func TestEmptyFoldersBackedUp(t *testing.T) {
	r := newRig(t, t.TempDir())
	write(t, filepath.Join(r.src, "f.txt"), "f", t0)
	if err := os.MkdirAll(filepath.Join(r.src, "2027年度", "空"), 0o700); err != nil {
		t.Fatal(err)
	}
	r.enforce(t, 2)
	r.cycle()
	g := generations(t, r)
	if len(g) != 1 {
		t.Fatalf("generations %v", g)
	}
	found := false
	filepath.WalkDir(g[0].Dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && strings.HasSuffix(filepath.ToSlash(p), "/2027年度/空") {
			found = true
		}
		return nil
	})
	if !found {
		t.Fatalf("the empty folder is not in generation %s", g[0].Dir)
	}
}
