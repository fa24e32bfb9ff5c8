package media

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/agent/internal/controls/controlstest"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/policy"
)

func mediaPolicy(m policy.Media) *policy.Policy {
	p := &policy.Policy{APIVersion: policy.APIVersion, Kind: policy.Kind, Name: "t", Controls: policy.Controls{Media: m}}
	p.Normalize()
	return p
}

func newTestControl(t *testing.T, p probe) (*Control, *controlstest.Recorder, *controlstest.FakeClock) {
	t.Helper()
	rec := &controlstest.Recorder{}
	clk := controlstest.NewFakeClock(t0)
	c := newControl(controls.Env{Emit: rec, Clock: clk, Log: zerolog.Nop(), StateDir: t.TempDir()}, p)
	return c, rec, clk
}

func types(evs []event.Event) string {
	var s []string
	for _, e := range evs {
		if e.Type != "media.status" {
			s = append(s, e.Type)
		}
	}
	return strings.Join(s, " ")
}

// TestControlBlocksOnSysfsTree drives the control with the real sysfs probe
// on a fixture tree: insert, record, deauthorize, removal.
func TestControlBlocksOnSysfsTree(t *testing.T) {
	root := loadTree(t, "usb-sandisk-vfat.txt")
	link := filepath.Join(root, "sys/block/sdb")
	hidden := filepath.Join(root, "sdb.unplugged")
	if err := os.Rename(link, hidden); err != nil {
		t.Fatal(err)
	}
	c, rec, _ := newTestControl(t, newSysfsProbe(root))
	ctx := context.Background()
	if err := c.Apply(ctx, mediaPolicy(policy.Media{Mode: policy.Enforce, Default: policy.MediaBlock, AllowRegistered: true,
		Registered: []policy.RegisteredMed{{RegisterID: "MED-1", Serial: "OTHER"}}})); err != nil {
		t.Fatal(err)
	}
	c.tick(ctx)
	if got := types(rec.Events()); got != "" {
		t.Fatalf("before insert: %s", got)
	}
	if st := c.Status(); st.State != controls.Pass {
		t.Fatalf("status %+v", st)
	}
	if err := os.Rename(hidden, link); err != nil { // plug in
		t.Fatal(err)
	}
	c.tick(ctx)
	if got := types(rec.Events()); got != "media.inserted media.blocked media.enforced" {
		t.Fatalf("events: %s", got)
	}
	b := rec.OfType(TypeBlocked)[0]
	if b.Severity != event.Violation || b.Attrs["serial"] != "4C530001230512345678" || b.Object != "/dev/sdb /media/taro/CRUZER BLADE" ||
		b.Attrs["vendor_id"] != "0781" || b.Attrs["fs"] != "vfat" || b.Attrs["capacity_bytes"] != int64(30031872*512) || b.Attrs["mode"] != "enforce" {
		t.Fatalf("blocked event: %+v", b)
	}
	if e := rec.OfType(TypeEnforced)[0]; e.Attrs["enforcement"] != "authorized=0 2-1" {
		t.Fatalf("enforced event: %+v", e)
	}
	auth, _ := os.ReadFile(filepath.Join(root, "sys/bus/usb/devices/2-1/authorized"))
	if strings.TrimSpace(string(auth)) != "0" {
		t.Fatalf("authorized = %q", auth)
	}
	c.tick(ctx) // still there: nothing new
	if got := types(rec.Events()); got != "media.inserted media.blocked media.enforced" {
		t.Fatalf("second tick: %s", got)
	}
	if err := os.Remove(link); err != nil { // the kernel drops the disk
		t.Fatal(err)
	}
	c.tick(ctx)
	evs := rec.Events()
	if got := types(evs); got != "media.inserted media.blocked media.enforced media.removed" {
		t.Fatalf("after removal: %s", got)
	}
	for i, e := range evs {
		if err := e.Validate(); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
}

// TestControlNeverActsUnrecorded: when the spool refuses the decision event
// the device is left alone, and the next tick tries again.
func TestControlNeverActsUnrecorded(t *testing.T) {
	root := loadTree(t, "usb-sandisk-vfat.txt")
	c, rec, _ := newTestControl(t, newSysfsProbe(root))
	ctx := context.Background()
	if err := c.Apply(ctx, mediaPolicy(policy.Media{Mode: policy.Enforce, Default: policy.MediaBlock})); err != nil {
		t.Fatal(err)
	}
	rec.Err = errors.New("spool full")
	c.tick(ctx)
	auth, _ := os.ReadFile(filepath.Join(root, "sys/bus/usb/devices/2-1/authorized"))
	if strings.TrimSpace(string(auth)) != "1" {
		t.Fatalf("deauthorized without a record: %q", auth)
	}
	rec.Err = nil
	c.tick(ctx)
	if got := types(rec.Events()); got != "media.inserted media.blocked media.enforced" {
		t.Fatalf("events: %s", got)
	}
	// A removal the spool refuses is recorded on the next tick, not lost.
	if err := os.Remove(filepath.Join(root, "sys/block/sdb")); err != nil {
		t.Fatal(err)
	}
	rec.Err = errors.New("spool full")
	c.tick(ctx)
	rec.Err = nil
	c.tick(ctx)
	if got := types(rec.Events()); got != "media.inserted media.blocked media.enforced media.removed" {
		t.Fatalf("events: %s", got)
	}
}

func TestControlAuditDoesNotEnforce(t *testing.T) {
	root := loadTree(t, "usb-sandisk-vfat.txt")
	c, rec, _ := newTestControl(t, newSysfsProbe(root))
	ctx := context.Background()
	if err := c.Apply(ctx, mediaPolicy(policy.Media{Mode: policy.Audit, Default: policy.MediaBlock})); err != nil {
		t.Fatal(err)
	}
	c.tick(ctx)
	if got := types(rec.Events()); got != "media.inserted media.blocked" {
		t.Fatalf("events: %s", got)
	}
	if rec.OfType(TypeBlocked)[0].Attrs["mode"] != "audit" {
		t.Fatal("mode attr")
	}
	auth, _ := os.ReadFile(filepath.Join(root, "sys/bus/usb/devices/2-1/authorized"))
	if strings.TrimSpace(string(auth)) != "1" {
		t.Fatalf("audit mode deauthorized: %q", auth)
	}
}

// fakeProbe stands in for the OS in tests of the control's own logic.
type fakeProbe struct {
	mu         sync.Mutex
	devs       []Device
	listErr    error
	enforceErr error
	enforced   []string
	released   []string
	class      [][2]bool
}

func (f *fakeProbe) set(devs ...Device) { f.mu.Lock(); f.devs = devs; f.mu.Unlock() }

func (f *fakeProbe) list(context.Context) ([]Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Device(nil), f.devs...), f.listErr
}

func (f *fakeProbe) enforce(_ context.Context, d Device, action string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.enforced = append(f.enforced, d.Key+":"+action)
	if f.enforceErr != nil {
		return "", f.enforceErr
	}
	return "fake " + action, nil
}

func (f *fakeProbe) release(d Device) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.released = append(f.released, d.Key)
}

func (f *fakeProbe) classPolicy(_ context.Context, r, w bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.class = append(f.class, [2]bool{r, w})
	return nil
}

func TestControlApprovalWindowCloses(t *testing.T) {
	fp := &fakeProbe{}
	c, rec, clk := newTestControl(t, fp)
	ctx := context.Background()
	pol := policy.Media{Mode: policy.Enforce, Default: policy.MediaBlock, LogFileWrites: true,
		Approvals: []policy.Approval{{ID: "AP-9", Serial: serial, From: t0, To: t0.Add(2 * time.Hour)}}}
	if err := c.Apply(ctx, mediaPolicy(pol)); err != nil {
		t.Fatal(err)
	}
	fp.set(stick)
	c.tick(ctx)
	if got := types(rec.Events()); got != "media.inserted media.allowed" {
		t.Fatalf("in window: %s", got)
	}
	if a := rec.OfType(TypeAllowed)[0]; a.Attrs["approval_id"] != "AP-9" || a.Attrs["reason"] != ReasonApproval {
		t.Fatalf("allowed: %+v", a.Attrs)
	}
	clk.Advance(2*time.Hour - time.Nanosecond)
	c.tick(ctx)
	if len(fp.enforced) != 0 {
		t.Fatalf("enforced inside the window: %v", fp.enforced)
	}
	clk.Advance(time.Nanosecond) // To: the window is closed
	c.tick(ctx)
	if got := types(rec.Events()); got != "media.inserted media.allowed media.blocked media.enforced" {
		t.Fatalf("after window: %s", got)
	}
	if fp.enforced[0] != "sdb:block" {
		t.Fatalf("enforced %v", fp.enforced)
	}
	// A new approval arrives: the held block is released.
	pol.Approvals = append(pol.Approvals, policy.Approval{ID: "AP-10", Serial: serial, From: clk.Now(), To: clk.Now().Add(time.Hour)})
	if err := c.Apply(ctx, mediaPolicy(pol)); err != nil {
		t.Fatal(err)
	}
	c.tick(ctx)
	if got := types(rec.Events()); !strings.HasSuffix(got, "media.enforced media.allowed") {
		t.Fatalf("after new approval: %s", got)
	}
	if len(fp.released) != 1 || rec.OfType(TypeAllowed)[1].Attrs["approval_id"] != "AP-10" {
		t.Fatalf("released %v", fp.released)
	}
	fp.set()
	c.tick(ctx)
	if len(fp.released) != 2 {
		t.Fatalf("not released on removal: %v", fp.released)
	}
}

func TestControlReadOnlyFollowsNewMounts(t *testing.T) {
	fp := &fakeProbe{}
	c, _, _ := newTestControl(t, fp)
	ctx := context.Background()
	if err := c.Apply(ctx, mediaPolicy(policy.Media{Mode: policy.Enforce, Default: policy.MediaReadOnly})); err != nil {
		t.Fatal(err)
	}
	d := stick
	fp.set(d)
	c.tick(ctx)
	c.tick(ctx)
	d.MountPoints = []string{"/media/x"}
	fp.set(d)
	c.tick(ctx)
	c.tick(ctx)
	if strings.Join(fp.enforced, ",") != "sdb:read_only,sdb:read_only" {
		t.Fatalf("enforced %v", fp.enforced)
	}
}

func TestControlEnforceFailureIsOneEvent(t *testing.T) {
	fp := &fakeProbe{enforceErr: errors.New("permission denied")}
	c, rec, _ := newTestControl(t, fp)
	ctx := context.Background()
	if err := c.Apply(ctx, mediaPolicy(policy.Media{Mode: policy.Enforce, Default: policy.MediaReadOnly})); err != nil {
		t.Fatal(err)
	}
	fp.set(stick)
	for i := 0; i < 3; i++ {
		c.tick(ctx)
	}
	if got := types(rec.Events()); got != "media.inserted media.read_only media.enforce_failed" {
		t.Fatalf("events: %s", got)
	}
	f := rec.OfType(TypeEnforceFailed)[0]
	if f.Severity != event.Violation || f.Attrs["error"] != "permission denied" || f.Attrs["action"] != "read_only" {
		t.Fatalf("enforce_failed: %+v", f)
	}
	if len(fp.enforced) != 3 {
		t.Fatalf("retries: %v", fp.enforced)
	}
	if st := c.Status(); st.State != controls.Fail || st.Reason != "media.enforce_failed" {
		t.Fatalf("status %+v", st)
	}
	fp.mu.Lock()
	fp.enforceErr = nil
	fp.mu.Unlock()
	c.tick(ctx)
	if got := types(rec.Events()); !strings.HasSuffix(got, "media.enforce_failed media.enforced") {
		t.Fatalf("after recovery: %s", got)
	}
	if st := c.Status(); st.State != controls.Pass {
		t.Fatalf("status %+v", st)
	}
}

func TestControlUnsupportedReportsOnce(t *testing.T) {
	fp := &fakeProbe{listErr: fmt.Errorf("media: here: %w", errors.ErrUnsupported)}
	c, rec, _ := newTestControl(t, fp)
	ctx := context.Background()
	if err := c.Apply(ctx, mediaPolicy(policy.Media{Mode: policy.Audit})); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		c.tick(ctx)
	}
	st := rec.OfType("media.status")
	if len(st) != 1 || st[0].Attrs["status"] != "unknown" || st[0].Attrs["reason"] != "media.unsupported" {
		t.Fatalf("status events: %+v", st)
	}
}

func TestApplyValidatesAndSetsClassPolicy(t *testing.T) {
	fp := &fakeProbe{}
	c, _, _ := newTestControl(t, fp)
	ctx := context.Background()
	for _, tc := range []struct {
		m    policy.Media
		want [2]bool
	}{
		{policy.Media{Mode: policy.Enforce, Default: policy.MediaBlock}, [2]bool{true, true}},
		{policy.Media{Mode: policy.Enforce, Default: policy.MediaReadOnly}, [2]bool{false, true}},
		{policy.Media{Mode: policy.Enforce, Default: policy.MediaAllow}, [2]bool{false, false}},
		{policy.Media{Mode: policy.Enforce, Default: policy.MediaBlock, AllowSerials: []string{serial}}, [2]bool{false, false}},
		{policy.Media{Mode: policy.Enforce, Default: policy.MediaBlock, AllowRegistered: true, Registered: []policy.RegisteredMed{{RegisterID: "M", Serial: serial}}}, [2]bool{false, false}},
		{policy.Media{Mode: policy.Enforce, Default: policy.MediaBlock, Registered: []policy.RegisteredMed{{RegisterID: "M", Serial: serial}}}, [2]bool{true, true}},
		{policy.Media{Mode: policy.Audit, Default: policy.MediaBlock}, [2]bool{false, false}},
	} {
		fp.class = nil
		if err := c.Apply(ctx, mediaPolicy(tc.m)); err != nil {
			t.Fatal(err)
		}
		if len(fp.class) != 1 || fp.class[0] != tc.want {
			t.Errorf("%+v: class policy %v, want %v", tc.m, fp.class, tc.want)
		}
	}
	before := c.pol
	bad := mediaPolicy(policy.Media{Mode: policy.Enforce})
	bad.Controls.Media.Default = "maybe"
	if err := c.Apply(ctx, bad); err == nil {
		t.Fatal("bad default accepted")
	}
	bad = mediaPolicy(policy.Media{Mode: "sometimes"})
	if err := c.Apply(ctx, bad); err == nil {
		t.Fatal("bad mode accepted")
	}
	if c.pol.Mode != before.Mode || c.pol.Default != before.Default {
		t.Fatalf("bad policy changed the settings: %+v", c.pol)
	}
	if err := c.Apply(ctx, nil); err == nil {
		t.Fatal("nil policy accepted")
	}
}

// fakeWatcher delivers writes the test makes up, like fswatch would.
type fakeWatcher struct {
	mu      sync.Mutex
	dirs    []string
	onWrite func(string, int64)
	stopped int
}

func (w *fakeWatcher) watch(_ context.Context, dir string, on func(string, int64)) (func(), error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.dirs = append(w.dirs, dir)
	w.onWrite = on
	return func() { w.mu.Lock(); w.stopped++; w.mu.Unlock() }, nil
}

func TestFileWritesCarryTheApproval(t *testing.T) {
	fp := &fakeProbe{}
	c, rec, _ := newTestControl(t, fp)
	fw := &fakeWatcher{}
	c.watch = fw
	ctx := context.Background()
	pol := policy.Media{Mode: policy.Audit, Default: policy.MediaBlock, LogFileWrites: true,
		Registered: []policy.RegisteredMed{{RegisterID: "MED-3", Serial: serial}},
		Approvals:  []policy.Approval{{ID: "AP-1", Serial: serial, From: t0, To: t0.Add(time.Hour)}}}
	if err := c.Apply(ctx, mediaPolicy(pol)); err != nil {
		t.Fatal(err)
	}
	d := stick
	fp.set(d) // inserted, not mounted yet: nothing to watch
	c.tick(ctx)
	if len(fw.dirs) != 0 {
		t.Fatalf("watching %v before mount", fw.dirs)
	}
	d.MountPoints = []string{"/media/taro/CRUZER"}
	fp.set(d)
	c.tick(ctx)
	if len(fw.dirs) != 1 || fw.dirs[0] != "/media/taro/CRUZER" {
		t.Fatalf("watching %v", fw.dirs)
	}
	fw.onWrite("/media/taro/CRUZER/顧客一覧.xlsx", 48213)
	w := rec.OfType(TypeFileWritten)
	if len(w) != 1 || w[0].Attrs["approval_id"] != "AP-1" || w[0].RegisterID != "MED-3" || w[0].Attrs["size"] != int64(48213) ||
		w[0].Object != "/media/taro/CRUZER/顧客一覧.xlsx" || w[0].Severity != event.Info {
		t.Fatalf("file_written: %+v", w)
	}
	fp.set() // unplugged
	c.tick(ctx)
	if fw.stopped != 1 {
		t.Fatalf("watch not stopped on removal: %d", fw.stopped)
	}
	fw.onWrite("/media/taro/CRUZER/late.txt", 1) // a late delivery is dropped, the device is gone
	if n := len(rec.OfType(TypeFileWritten)); n != 1 {
		t.Fatalf("%d file_written", n)
	}
}

func TestRunPollsWithTheClock(t *testing.T) {
	fp := &fakeProbe{}
	c, rec, clk := newTestControl(t, fp)
	ctx, cancel := context.WithCancel(context.Background())
	if err := c.Apply(ctx, mediaPolicy(policy.Media{Mode: policy.Audit})); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	waitSleeping := func() {
		deadline := time.Now().Add(5 * time.Second)
		for clk.Waiters() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("Run never slept")
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitSleeping()
	fp.set(stick)
	clk.Advance(DefaultPollInterval)
	waitSleeping()
	if got := types(rec.Events()); got != "media.inserted media.allowed" {
		t.Fatalf("events: %s", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestRunRedecidesOnPolicyChange: an approval retired on the server reaches
// the agent as a new policy; the stick still plugged in is blocked at once,
// not at the next poll (the fake clock never advances here).
func TestRunRedecidesOnPolicyChange(t *testing.T) {
	fp := &fakeProbe{}
	c, rec, _ := newTestControl(t, fp)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pol := policy.Media{Mode: policy.Enforce, Default: policy.MediaBlock,
		Approvals: []policy.Approval{{ID: "AP-1", Serial: serial, From: t0, To: t0.Add(time.Hour)}}}
	if err := c.Apply(ctx, mediaPolicy(pol)); err != nil {
		t.Fatal(err)
	}
	fp.set(stick)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	waitEvents := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for types(rec.Events()) != want {
			if time.Now().After(deadline) {
				t.Fatalf("events: %s, want %s", types(rec.Events()), want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitEvents("media.inserted media.allowed")
	pol.Approvals = nil
	if err := c.Apply(ctx, mediaPolicy(pol)); err != nil {
		t.Fatal(err)
	}
	waitEvents("media.inserted media.allowed media.blocked media.enforced")
	if b := rec.OfType(TypeBlocked)[0]; b.Attrs["reason"] != ReasonDefault || b.Time != t0 {
		t.Fatalf("blocked %v at %v", b.Attrs, b.Time)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestFileWrittenWithFswatch writes real files into a directory standing in
// for a mounted stick and expects the carry-out record from the real watcher.
func TestFileWrittenWithFswatch(t *testing.T) {
	fp := &fakeProbe{}
	rec := &controlstest.Recorder{}
	env := controls.Env{Emit: rec, Clock: controls.RealClock{}, Log: zerolog.Nop()}
	c := newControl(env, fp)
	c.watch = fsWatcher{clock: env.Clock, log: env.Log}
	ctx := context.Background()
	now := time.Now()
	if err := c.Apply(ctx, mediaPolicy(policy.Media{Mode: policy.Enforce, Default: policy.MediaBlock, LogFileWrites: true,
		Approvals: []policy.Approval{{ID: "AP-42", Serial: serial, From: now.Add(-time.Hour), To: now.Add(time.Hour)}}})); err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	d := stick
	d.MountPoints = []string{mnt}
	fp.set(d)
	c.tick(ctx)
	defer c.stopAll()
	if got := types(rec.Events()); got != "media.inserted media.allowed" {
		t.Fatalf("events: %s", got)
	}
	if err := os.MkdirAll(filepath.Join(mnt, "持出"), 0o755); err != nil {
		t.Fatal(err)
	}
	data := []byte(strings.Repeat("顧客,住所\n", 100))
	target := filepath.Join(mnt, "持出", "顧客一覧.csv")
	if err := os.WriteFile(target, data, 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(rec.OfType(TypeFileWritten)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no media.file_written; events: %s", types(rec.Events()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	w := rec.OfType(TypeFileWritten)[0]
	if w.Object != target || w.Attrs["size"] != int64(len(data)) || w.Attrs["approval_id"] != "AP-42" || w.Attrs["serial"] != serial {
		t.Fatalf("file_written: object %q attrs %+v", w.Object, w.Attrs)
	}
	fp.set() // unplugged: the watch stops
	c.tick(ctx)
	if got := types(rec.Events()); !strings.HasSuffix(got, "media.removed") {
		t.Fatalf("events: %s", got)
	}
}

// TestUnobservableHostIsUnknown: on the captured sandbox (no USB bus in
// /sys/bus/usb/devices, no /run/udev) no stick could ever be seen or
// blocked, so the control says so instead of passing with "devices: 0".
func TestUnobservableHostIsUnknown(t *testing.T) {
	c, rec, _ := newTestControl(t, newSysfsProbe(loadTree(t, "captured-virtio.txt")))
	ctx := context.Background()
	if err := c.Apply(ctx, mediaPolicy(policy.Media{Mode: policy.Enforce, Default: policy.MediaBlock})); err != nil {
		t.Fatal(err)
	}
	c.tick(ctx)
	st := c.Status()
	if st.State != controls.Unknown || st.Reason != "media.unobservable" || st.ReasonJA == "" ||
		!strings.Contains(st.ReasonEN, "bus/usb/devices") || !strings.Contains(st.ReasonEN, "run/udev") {
		t.Fatalf("status %+v", st)
	}
	evs := rec.OfType("media.status")
	if len(evs) != 1 || evs[0].Attrs["status"] != "unknown" || evs[0].Attrs["reason"] != "media.unobservable" {
		t.Fatalf("status events %+v", evs)
	}
}

// TestPassCarriesReason: a pass says why (nothing attached, or what was
// done with what is attached), so the evidence reads on its own.
func TestPassCarriesReason(t *testing.T) {
	fp := &fakeProbe{}
	c, _, _ := newTestControl(t, fp)
	ctx := context.Background()
	m := policy.Media{Mode: policy.Enforce, Default: policy.MediaBlock, AllowRegistered: true,
		Registered: []policy.RegisteredMed{{RegisterID: "MED-1", Serial: "SER-1"}}}
	if err := c.Apply(ctx, mediaPolicy(m)); err != nil {
		t.Fatal(err)
	}
	check := func(what, reason string) {
		t.Helper()
		c.tick(ctx)
		st := c.Status()
		if st.State != controls.Pass || st.Reason != reason || st.ReasonJA == "" || st.ReasonEN == "" {
			t.Fatalf("%s: status %+v, want pass %s with texts", what, st, reason)
		}
	}
	check("nothing attached", "media.none_attached")
	fp.set(Device{Key: "sdb", Path: "/dev/sdb", Serial: "SER-1"}, Device{Key: "sdc", Path: "/dev/sdc", Serial: "OTHER"})
	check("registered and blocked", "media.policy_applied")
	m.Mode = policy.Audit
	if err := c.Apply(ctx, mediaPolicy(m)); err != nil {
		t.Fatal(err)
	}
	check("audit", "media.recorded")
}

// Turned off by policy, the status says why with the server's code and
// words, as every control does (before: off with no reason at all).
func TestOffSaysPolicy(t *testing.T) {
	c, _, _ := newTestControl(t, &fakeProbe{})
	if err := c.Apply(context.Background(), mediaPolicy(policy.Media{Mode: policy.Off})); err != nil {
		t.Fatal(err)
	}
	if st := c.Status(); st != controls.PolicyOff() {
		t.Fatalf("status %+v, want %+v", st, controls.PolicyOff())
	}
}

// Media events name who was at the PC: the one local user as the event's
// user; several are listed, none chosen.
func TestEventsNameTheLocalUser(t *testing.T) {
	fp := &fakeProbe{}
	c, rec, _ := newTestControl(t, fp)
	users := []string{`CORP\tanaka`}
	c.users = func(context.Context) ([]string, error) { return users, nil }
	ctx := context.Background()
	if err := c.Apply(ctx, mediaPolicy(policy.Media{Mode: policy.Audit, Default: policy.MediaAllow})); err != nil {
		t.Fatal(err)
	}
	fp.set(Device{Key: "sdb", Path: "/dev/sdb", Serial: "SER-1"})
	c.tick(ctx)
	ins := rec.OfType(TypeInserted)
	if len(ins) != 1 || ins[0].User != `CORP\tanaka` {
		t.Fatalf("inserted: %+v", ins)
	}
	users = []string{"a", "b"}
	c.usersAt = time.Time{} // past the cache
	fp.set()
	c.tick(ctx)
	rm := rec.OfType(TypeRemoved)
	if len(rm) != 1 || rm[0].User != "" || rm[0].Attrs["local_users"] != "a, b" {
		t.Fatalf("removed with two users: %+v", rm)
	}
}
