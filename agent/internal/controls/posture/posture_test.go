package posture

import (
	"bytes"
	"compress/gzip"
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

var t0 = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

func goodFacts() facts {
	return facts{
		disk:   diskFact{Encrypted: true, Method: "bitlocker", Volume: "C:"},
		av:     avFact{Product: "Windows Defender", Running: true, Signatures: t0.Add(-2 * time.Hour)},
		update: updateFact{Last: t0.Add(-24 * time.Hour), Source: "test"},
		fw:     firewallFact{On: true, Detail: "Domain=on Standard=on Public=on"},
	}
}

func req(b bool) string {
	if b {
		return policy.Required
	}
	return policy.Optional
}

// Every combination of required/optional against every combination of a
// failing check: the host fails exactly when a required check fails.
func TestDecideRequiredOptional(t *testing.T) {
	breaks := []struct {
		name  string
		key   string
		apply func(*facts)
	}{
		{CheckDisk, "posture.disk_not_encrypted", func(f *facts) { f.disk.Encrypted = false }},
		{CheckAV, "posture.antivirus_not_running", func(f *facts) { f.av.Running = false }},
		{CheckFirewall, "posture.firewall_off", func(f *facts) { f.fw.On = false }},
	}
	for mask := 0; mask < 8; mask++ { // which checks are required
		for bmask := 0; bmask < 8; bmask++ { // which checks are broken
			reqd := [3]bool{mask&1 != 0, mask&2 != 0, mask&4 != 0}
			cfg, err := configFrom(policy.Posture{Mode: policy.Audit, DiskEncryption: req(reqd[0]), Antivirus: req(reqd[1]), Firewall: req(reqd[2])})
			if err != nil {
				t.Fatal(err)
			}
			f := goodFacts()
			wantFail, firstKey := false, ""
			var wantNames []string
			optionalBroken := 0
			for i, b := range breaks {
				if bmask&(1<<i) == 0 {
					continue
				}
				b.apply(&f)
				if !reqd[i] {
					optionalBroken++
				}
				if reqd[i] {
					wantFail = true
					wantNames = append(wantNames, b.name)
					if firstKey == "" {
						firstKey = b.key
					}
				}
			}
			st, attrs := decide(cfg, f, t0)
			name := fmt.Sprintf("required=%v broken=%03b", reqd, bmask)
			if wantFail {
				if st.State != controls.Fail || st.Reason != firstKey {
					t.Fatalf("%s: got %+v, want fail %s", name, st, firstKey)
				}
				// Every check not met is named; the optional ones marked.
				if n := strings.Count(st.ReasonEN, ";") + 1; n != len(wantNames)+optionalBroken {
					t.Fatalf("%s: reason %q should name %d checks", name, st.ReasonEN, len(wantNames)+optionalBroken)
				}
				if n := strings.Count(st.ReasonEN, "(optional)"); n != optionalBroken || strings.Count(st.ReasonJA, "（任意の項目）") != n {
					t.Fatalf("%s: reason %q / %q should mark %d optional checks", name, st.ReasonEN, st.ReasonJA, optionalBroken)
				}
				if st.ReasonJA == "" {
					t.Fatalf("%s: no Japanese reason", name)
				}
			} else if mask == 0 {
				if st.State != controls.Unknown || st.Reason != "posture.nothing_to_check" {
					t.Fatalf("%s: got %+v, want unknown posture.nothing_to_check", name, st)
				}
			} else if st.State != controls.Pass || st.Reason != "posture.ok" || st.ReasonJA == "" || st.ReasonEN == "" {
				t.Fatalf("%s: got %+v, want pass posture.ok with texts", name, st)
			}
			for i, b := range breaks {
				a := attrs[b.name].(map[string]any)
				wantState := "pass"
				if bmask&(1<<i) != 0 {
					wantState = "fail"
				}
				if a["state"] != wantState || a["required"] != reqd[i] {
					t.Fatalf("%s: attrs %s = %v", name, b.name, a)
				}
			}
		}
	}
}

func TestDecideAgesAtTheEdge(t *testing.T) {
	cfg, err := configFrom(policy.Posture{Mode: policy.Audit, Antivirus: policy.Required,
		SignatureMaxAge: policy.Duration(72 * time.Hour), OSUpdateMaxAge: policy.Duration(720 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		sigAge time.Duration
		updAge time.Duration
		state  controls.State
		reason string
	}{
		{"both fresh", time.Hour, time.Hour, controls.Pass, "posture.ok"},
		{"signatures exactly at max", 72 * time.Hour, time.Hour, controls.Pass, "posture.ok"},
		{"signatures 1s over", 72*time.Hour + time.Second, time.Hour, controls.Fail, "posture.signatures_outdated"},
		{"update exactly at max", time.Hour, 720 * time.Hour, controls.Pass, "posture.ok"},
		{"update 1s over", time.Hour, 720*time.Hour + time.Second, controls.Fail, "posture.os_update_old"},
		{"both over: first named first", 100 * time.Hour, 800 * time.Hour, controls.Fail, "posture.signatures_outdated"},
	}
	for _, c := range cases {
		f := goodFacts()
		f.av.Signatures = t0.Add(-c.sigAge)
		f.update.Last = t0.Add(-c.updAge)
		st, attrs := decide(cfg, f, t0)
		if st.State != c.state || st.Reason != c.reason {
			t.Errorf("%s: got %s %s, want %s %s", c.name, st.State, st.Reason, c.state, c.reason)
		}
		if a := attrs[CheckUpdate].(map[string]any); a["age_h"] != int64(c.updAge/time.Hour) {
			t.Errorf("%s: update attrs %v", c.name, a)
		}
	}
	// No max age: any age passes and updates do not decide.
	cfg0, _ := configFrom(policy.Posture{Mode: policy.Audit, Antivirus: policy.Required})
	f := goodFacts()
	f.av.Signatures, f.update.Last = t0.Add(-5000*time.Hour), t0.Add(-5000*time.Hour)
	if st, _ := decide(cfg0, f, t0); st.State != controls.Pass {
		t.Fatalf("no max ages: %+v", st)
	}
}

func TestDecideUnknown(t *testing.T) {
	cfg, _ := configFrom(policy.Posture{Mode: policy.Audit, DiskEncryption: policy.Required, Antivirus: policy.Required,
		Firewall: policy.Optional, SignatureMaxAge: policy.Duration(72 * time.Hour)})
	unsupported := fmt.Errorf("probe: %w", errors.ErrUnsupported)

	f := goodFacts()
	f.diskErr = unsupported
	st, attrs := decide(cfg, f, t0)
	if st.State != controls.Unknown || st.Reason != "posture.disk_encryption_unsupported" || !strings.Contains(st.ReasonJA, "ディスク暗号化") {
		t.Fatalf("unsupported disk: %+v", st)
	}
	if a := attrs[CheckDisk].(map[string]any); a["state"] != "unknown" || a["error"] == nil {
		t.Fatalf("attrs %v", a)
	}

	// A failed required check outweighs an unknown one.
	f.av.Running = false
	if st, _ := decide(cfg, f, t0); st.State != controls.Fail || st.Reason != "posture.antivirus_not_running" {
		t.Fatalf("fail + unknown: %+v", st)
	}

	// Signature age needed but not known.
	f = goodFacts()
	f.av.Signatures = time.Time{}
	if st, _ := decide(cfg, f, t0); st.State != controls.Unknown || st.Reason != "posture.signature_age_unknown" {
		t.Fatalf("unknown signature age: %+v", st)
	}
	// The product says it is outdated: fail even without a time.
	f.av.Outdated = true
	if st, _ := decide(cfg, f, t0); st.State != controls.Fail || st.Reason != "posture.signatures_outdated" {
		t.Fatalf("outdated: %+v", st)
	}
	// No AV product, or none that can be recognised.
	f = goodFacts()
	f.av = avFact{}
	if st, _ := decide(cfg, f, t0); st.State != controls.Fail || st.Reason != "posture.antivirus_missing" {
		t.Fatalf("missing av: %+v", st)
	}
	f.avErr = errNotDetected
	if st, _ := decide(cfg, f, t0); st.State != controls.Unknown || st.Reason != "posture.antivirus_not_detected" {
		t.Fatalf("undetected av: %+v", st)
	}
	// An optional check that cannot be made does not matter.
	f = goodFacts()
	f.fwErr = unsupported
	if st, _ := decide(cfg, f, t0); st.State != controls.Pass {
		t.Fatalf("optional unknown: %+v", st)
	}
}

func TestConfigValidation(t *testing.T) {
	bad := []policy.Posture{
		{Mode: "sometimes"},
		{Mode: policy.Audit, DiskEncryption: "mandatory"},
		{Mode: policy.Audit, Firewall: "yes"},
		{Mode: policy.Audit, SignatureMaxAge: policy.Duration(-time.Hour)},
	}
	for _, p := range bad {
		if _, err := configFrom(p); err == nil {
			t.Errorf("%+v accepted", p)
		}
	}
	c := newControl(controls.Env{Emit: &controlstest.Recorder{}, Log: zerolog.Nop()}, &fakeProbe{f: goodFacts()})
	good := &policy.Policy{Controls: policy.Controls{Posture: policy.Posture{Mode: policy.Audit, DiskEncryption: policy.Required}}}
	if err := c.Apply(context.Background(), good); err != nil {
		t.Fatal(err)
	}
	badP := &policy.Policy{Controls: policy.Controls{Posture: bad[1]}}
	if err := c.Apply(context.Background(), badP); err == nil {
		t.Fatal("bad policy applied")
	}
	if !c.cfg.disk || c.cfg.mode != policy.Audit {
		t.Fatalf("previous settings not kept: %+v", c.cfg)
	}
}

// fakeProbe returns set facts and counts rounds.
type fakeProbe struct {
	mu     sync.Mutex
	f      facts
	rounds int
}

func (p *fakeProbe) count() int  { p.mu.Lock(); defer p.mu.Unlock(); return p.rounds }
func (p *fakeProbe) set(f facts) { p.mu.Lock(); p.f = f; p.mu.Unlock() }
func (p *fakeProbe) diskEncryption(context.Context) (diskFact, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rounds++
	return p.f.disk, p.f.diskErr
}
func (p *fakeProbe) antivirus(context.Context) (avFact, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.f.av, p.f.avErr
}
func (p *fakeProbe) lastUpdate(context.Context) (updateFact, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.f.update, p.f.updateErr
}
func (p *fakeProbe) firewall(context.Context) (firewallFact, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.f.fw, p.f.fwErr
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// Run reports on start, on change, and re-reports every hour.
func TestRunReports(t *testing.T) {
	clock := controlstest.NewFakeClock(t0)
	rec := &controlstest.Recorder{}
	fp := &fakeProbe{f: goodFacts()}
	c := newControl(controls.Env{Emit: rec, Clock: clock, Log: zerolog.Nop()}, fp)
	if err := c.Apply(context.Background(), &policy.Policy{Controls: policy.Controls{Posture: policy.Posture{
		Mode: policy.Audit, DiskEncryption: policy.Required, Antivirus: policy.Required, Firewall: policy.Required}}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	statuses := func() []event.Event { return rec.OfType("posture.status") }

	waitFor(t, "start report", func() bool { return len(statuses()) == 1 && clock.Waiters() == 1 })
	if e := statuses()[0]; e.Severity != event.Info || e.Attrs["status"] != "pass" || e.Attrs[CheckDisk] == nil {
		t.Fatalf("start report %+v", e)
	}
	// Unchanged after one check interval: nothing new.
	clock.Advance(DefaultCheckInterval)
	waitFor(t, "second round", func() bool { return fp.count() == 2 && clock.Waiters() == 1 })
	if len(statuses()) != 1 {
		t.Fatalf("unchanged status re-emitted after %v", DefaultCheckInterval)
	}
	// A change is reported at the next check.
	f := goodFacts()
	f.fw.On = false
	fp.set(f)
	clock.Advance(DefaultCheckInterval)
	waitFor(t, "change report", func() bool { return len(statuses()) == 2 && clock.Waiters() == 1 })
	e := statuses()[1]
	if e.Severity != event.Violation || e.Attrs["status"] != "fail" || e.Attrs["reason"] != "posture.firewall_off" {
		t.Fatalf("change report %+v", e)
	}
	if c.Status().State != controls.Fail {
		t.Fatalf("Status() %+v", c.Status())
	}
	// Unchanged for an hour: re-reported.
	for i := 0; i < int(DefaultReportInterval/DefaultCheckInterval); i++ {
		n := fp.count()
		clock.Advance(DefaultCheckInterval)
		waitFor(t, "round", func() bool { return fp.count() > n && clock.Waiters() == 1 })
	}
	// The probe count moves at the start of a round, the report at its end:
	// wait for the report rather than assume it (under Wine it lags).
	waitFor(t, "hourly re-report", func() bool { return len(statuses()) >= 3 })
	if got := len(statuses()); got != 3 {
		t.Fatalf("after an hour unchanged: %d status events, want 3", got)
	}
	// Turning the control off reports off once.
	if err := c.Apply(ctx, &policy.Policy{Controls: policy.Controls{Posture: policy.Posture{Mode: policy.Off}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "off report", func() bool { return len(statuses()) == 4 })
	if statuses()[3].Attrs["status"] != "off" {
		t.Fatalf("off report %+v", statuses()[3])
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if i, err := event.VerifyChain("test", 0, "", rec.Events()); err != nil {
		t.Fatalf("chain %d: %v", i, err)
	}
}

func read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseLinuxFixtures(t *testing.T) {
	for _, c := range []struct {
		file, majmin, fstype string
	}{
		{"mountinfo_lvm_luks.txt", "253:1", "ext4"},
		{"mountinfo_plain.txt", "8:1", "ext4"},
		{"mountinfo_overlay.txt", "0:52", "overlay"},
	} {
		mm, _, fs, err := rootDevice(read(t, c.file))
		if err != nil || mm != c.majmin || fs != c.fstype {
			t.Errorf("%s: %s %s %v", c.file, mm, fs, err)
		}
	}
	if _, _, _, err := rootDevice([]byte("garbage\n")); err == nil {
		t.Error("garbage mountinfo accepted")
	}
	for _, c := range []struct {
		file string
		on   bool
		fn   func([]byte) (bool, string)
	}{
		{"nft_ruleset_drop.txt", true, parseNftRuleset},
		{"nft_ruleset_default.txt", false, parseNftRuleset},
		{"iptables_save_rules.txt", true, parseIptablesSave},
		{"iptables_save_empty.txt", false, parseIptablesSave},
	} {
		if on, d := c.fn(read(t, c.file)); on != c.on || d == "" {
			t.Errorf("%s: on=%v %q", c.file, on, d)
		}
	}
	if on, known := parseUfwStatus(read(t, "ufw_status_active.txt")); !on || !known {
		t.Error("ufw active")
	}
	if on, known := parseUfwStatus(read(t, "ufw_status_inactive.txt")); on || !known {
		t.Error("ufw inactive")
	}
	if _, known := parseUfwStatus([]byte("ERROR: You need to be root to run this script")); known {
		t.Error("ufw error taken as a status")
	}
}

// sysfs builds a /sys/block tree: root on LVM (dm-1) on LUKS (dm-0) on sda3.
func sysfs(t *testing.T, luksUUID string) string {
	t.Helper()
	root := tempDir(t)
	write := func(p, s string) {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(s+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("block/sda/dev", "8:0")
	write("block/sda/sda1/dev", "8:1")
	write("block/sda/sda3/dev", "8:3")
	write("block/dm-0/dev", "253:0")
	write("block/dm-0/dm/uuid", luksUUID)
	write("block/dm-0/dm/name", "dm_crypt-0")
	write("block/dm-0/slaves/sda3/dev", "8:3") // stands in for the symlink
	write("block/dm-1/dev", "253:1")
	write("block/dm-1/dm/uuid", "LVM-Xl3cE2Ff0Ddg1rGq5Yq9Wf0Zc0aZ3nYyN7k8kPjYx1BJ6fWQkq9bqCq3UOz2M3uQ")
	write("block/dm-1/dm/name", "ubuntu--vg-ubuntu--lv")
	write("block/dm-1/slaves/dm-0/dev", "253:0")
	return root
}

func TestLUKSDetection(t *testing.T) {
	luks := os.DirFS(sysfs(t, "CRYPT-LUKS2-5f3c6e8a9b1d4c2e8f7a6b5c4d3e2f1a-dm_crypt-0"))
	for _, c := range []struct {
		majmin, want string
	}{{"253:1", "luks2"}, {"253:0", "luks2"}, {"8:1", ""}, {"8:3", ""}} {
		got, err := luksForRoot(luks, c.majmin)
		if err != nil || got != c.want {
			t.Errorf("%s: %q %v, want %q", c.majmin, got, err, c.want)
		}
	}
	if _, err := luksForRoot(luks, "0:52"); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("overlay root: %v", err)
	}
	plain := os.DirFS(sysfs(t, "LVM-notcrypt"))
	if got, err := luksForRoot(plain, "253:1"); err != nil || got != "" {
		t.Errorf("LVM without LUKS: %q %v", got, err)
	}
	v1 := os.DirFS(sysfs(t, "CRYPT-LUKS1-0123456789abcdef0123456789abcdef-sda3_crypt"))
	if got, _ := luksForRoot(v1, "253:1"); got != "luks1" {
		t.Errorf("luks1: %q", got)
	}
}

func TestParseWindowsFixtures(t *testing.T) {
	vols, err := decodeCIMJSON[encryptableVolume](read(t, "encryptable_volume.json"))
	if err != nil || len(vols) != 2 {
		t.Fatalf("volumes %v %v", vols, err)
	}
	// Old builds list no VolumeType: C: on, D: off, both fixed.
	if f, err := bitlockerVolumes(vols, "C:"); err != nil || f.Encrypted || f.Method != "bitlocker" ||
		f.Volume != "C: D:" || strings.Join(f.Unencrypted, ",") != "D:" {
		t.Errorf("C: on, D: off: %+v %v", f, err)
	}
	off, _ := decodeCIMJSON[encryptableVolume](read(t, "encryptable_volume_off.json"))
	if f, err := bitlockerVolumes(off, "c:"); err != nil || f.Encrypted || len(off) != 1 || strings.Join(f.Unencrypted, ",") != "C:" {
		t.Errorf("off: %+v %v", f, err)
	}
	// Several volumes: the recovery partition (no letter) and the removable
	// F: (the media control's) are not judged; D: is named.
	multi, err := decodeCIMJSON[encryptableVolume](read(t, "encryptable_volume_multi.json"))
	if err != nil || len(multi) != 5 || multi[4].VolumeType != volumeRemovable || multi[1].DriveLetter != "" {
		t.Fatalf("multi: %+v %v", multi, err)
	}
	if f, err := bitlockerVolumes(multi, "C:"); err != nil || f.Encrypted || f.Volume != "C: D: E:" || strings.Join(f.Unencrypted, ",") != "D:" {
		t.Errorf("multi: %+v %v", f, err)
	}
	on, _ := decodeCIMJSON[encryptableVolume](read(t, "encryptable_volume_multi_on.json"))
	if f, err := bitlockerVolumes(on, "C:"); err != nil || !f.Encrypted || f.Volume != "C: D:" || len(f.Unencrypted) != 0 {
		t.Errorf("all fixed on: %+v %v", f, err)
	}
	// The system drive missing from BitLocker's list is not encrypted.
	if f, err := bitlockerVolumes(on, "G:"); err != nil || f.Encrypted || strings.Join(f.Unencrypted, ",") != "G:" {
		t.Errorf("system drive not listed: %+v %v", f, err)
	}
	if f, _ := bitlockerVolumes(nil, "C:"); f.Encrypted || f.Method != "" {
		t.Errorf("no volumes: %+v", f)
	}
	if _, err := bitlockerVolumes([]encryptableVolume{{"C:", 2, 0}}, "C:"); err == nil {
		t.Error("locked volume status 2 taken as known")
	}
	if _, err := bitlockerVolumes([]encryptableVolume{{"C:", 1, 0}, {"D:", 2, 1}}, "C:"); err == nil || !strings.Contains(err.Error(), "D:") {
		t.Errorf("locked D: %v", err)
	}
	// An unencrypted volume fails even when another is locked.
	if f, err := bitlockerVolumes([]encryptableVolume{{"C:", 0, 0}, {"D:", 2, 1}}, "C:"); err != nil || f.Encrypted {
		t.Errorf("C: off, D: locked: %+v %v", f, err)
	}

	for _, c := range []struct {
		state             uint32
		running, outdated bool
	}{{397568, true, false}, {393472, false, false}, {266240, true, false}, {397584, true, true}, {262160, false, true}} {
		r, o := decodeProductState(c.state)
		if r != c.running || o != c.outdated {
			t.Errorf("productState %d (%#x): running %v outdated %v", c.state, c.state, r, o)
		}
	}
	prods, err := decodeCIMJSON[antiVirusProduct](read(t, "antivirusproduct.json"))
	if err != nil || len(prods) != 2 {
		t.Fatalf("products %v %v", prods, err)
	}
	mps, err := decodeCIMJSON[mpComputerStatus](read(t, "mpcomputerstatus.json"))
	if err != nil || len(mps) != 1 {
		t.Fatalf("mp %v %v", mps, err)
	}
	// Defender off (third-party AV took over): ESET is the one that counts.
	if f, err := antivirusFrom(prods, &mps[0]); err != nil || f.Product != "ESET Security" || !f.Running || !f.Signatures.IsZero() {
		t.Errorf("eset: %+v %v", f, err)
	}
	def, _ := decodeCIMJSON[antiVirusProduct](read(t, "antivirusproduct_defender.json"))
	f, err := antivirusFrom(def, &mps[0])
	if err != nil || f.Product != "Windows Defender" || !f.Running || !f.Signatures.Equal(time.Date(2026, 11, 22, 12, 4, 33, 0, time.UTC)) {
		t.Errorf("defender: %+v %v", f, err)
	}
	if f, err := antivirusFrom(nil, &mps[0]); err != nil || f.Product != "Windows Defender" {
		t.Errorf("server SKU (no security center): %+v %v", f, err)
	}
	if f, err := antivirusFrom([]antiVirusProduct{}, nil); err != nil || f.Product != "" {
		t.Errorf("security center lists none: %+v %v", f, err)
	}
	if _, err := antivirusFrom(nil, nil); !errors.Is(err, errNotDetected) {
		t.Errorf("nothing readable: %v", err)
	}

	for _, file := range []string{"quickfixengineering.json", "quickfixengineering_ja.json"} {
		fixes, err := decodeCIMJSON[quickFix](read(t, file))
		if err != nil {
			t.Fatal(err)
		}
		if last, id := newestHotfix(fixes); !last.Equal(time.Date(2026, 11, 12, 0, 0, 0, 0, time.UTC)) || id != "KB5048652" {
			t.Errorf("%s: %v %s", file, last, id)
		}
	}
	if tm, ok := parseInstalledOn("01dc3d9ea1b00000"); !ok || tm.Year() < 2020 {
		t.Errorf("filetime: %v %v", tm, ok)
	}
	if _, ok := parseInstalledOn("someday"); ok {
		t.Error("garbage date accepted")
	}

	all := map[string]uint32{"DomainProfile": 1, "StandardProfile": 1, "PublicProfile": 1}
	if f := firewallEffective(all, nil); !f.On || f.Detail != "Domain=on Standard=on Public=on" {
		t.Errorf("all on: %+v", f)
	}
	if f := firewallEffective(map[string]uint32{"DomainProfile": 1, "StandardProfile": 1, "PublicProfile": 0}, nil); f.On || !strings.Contains(f.Detail, "Public=off") {
		t.Errorf("public off: %+v", f)
	}
	if f := firewallEffective(map[string]uint32{"DomainProfile": 1, "StandardProfile": 1}, nil); f.On {
		t.Errorf("missing profile: %+v", f)
	}
	// Group Policy wins over the local value, both ways.
	if f := firewallEffective(all, map[string]uint32{"DomainProfile": 0}); f.On || f.Detail != "Domain=off(GPO) Standard=on Public=on" {
		t.Errorf("GPO turns domain off: %+v", f)
	}
	if f := firewallEffective(map[string]uint32{"PublicProfile": 0}, map[string]uint32{"DomainProfile": 1, "StandardProfile": 1, "PublicProfile": 1}); !f.On ||
		f.Detail != "Domain=on(GPO) Standard=on(GPO) Public=on(GPO)" {
		t.Errorf("GPO turns all on: %+v", f)
	}
	if f := firewallEffective(nil, nil); f.On {
		t.Errorf("nothing configured: %+v", f)
	}
}

func TestParseDarwinFixtures(t *testing.T) {
	if f, err := parseFdesetup(read(t, "fdesetup_on.txt")); err != nil || !f.Encrypted {
		t.Errorf("on: %+v %v", f, err)
	}
	if f, err := parseFdesetup(read(t, "fdesetup_off.txt")); err != nil || f.Encrypted {
		t.Errorf("off: %+v %v", f, err)
	}
	if _, err := parseFdesetup([]byte("fdesetup: command not found")); err == nil {
		t.Error("garbage fdesetup accepted")
	}
	if f, err := parseSocketfilterfw(read(t, "socketfilterfw_on.txt")); err != nil || !f.On {
		t.Errorf("fw on: %+v %v", f, err)
	}
	if f, err := parseSocketfilterfw(read(t, "socketfilterfw_off.txt")); err != nil || f.On {
		t.Errorf("fw off: %+v %v", f, err)
	}
	if f, err := parseSocketfilterfw([]byte("Firewall is blocking all non-essential incoming connections. (State = 2)")); err != nil || !f.On {
		t.Errorf("block all: %+v %v", f, err)
	}
	jst := time.FixedZone("JST", 9*3600)
	if got := parseSoftwareUpdateHistory(read(t, "softwareupdate_history.txt"), jst); !got.Equal(time.Date(2026, 11, 19, 3, 12, 44, 0, jst)) {
		t.Errorf("history newest %v", got)
	}
	if v := parseXProtectVersion(read(t, "xprotect_info.plist")); v != "5278" {
		t.Errorf("xprotect version %q", v)
	}
}

// The real probe of this OS runs: whatever it finds, the status is
// well-formed and carries a reason, pass included.
func TestRealProbe(t *testing.T) {
	rec := &controlstest.Recorder{}
	c := newControl(controls.Env{Emit: rec, Clock: controls.RealClock{}, Log: zerolog.Nop()}, newProbe(controls.Env{}))
	if err := c.Apply(context.Background(), &policy.Policy{Controls: policy.Controls{Posture: policy.Posture{
		Mode: policy.Audit, DiskEncryption: policy.Required, Antivirus: policy.Required, Firewall: policy.Required,
		SignatureMaxAge: policy.Duration(72 * time.Hour), OSUpdateMaxAge: policy.Duration(720 * time.Hour)}}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := c.CheckNow(ctx); err != nil {
		t.Fatal(err)
	}
	evs := rec.OfType("posture.status")
	if len(evs) != 1 {
		t.Fatalf("%d status events", len(evs))
	}
	e := evs[0]
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
	st := c.Status()
	t.Logf("status %s %s: %s / %s", st.State, st.Reason, st.ReasonEN, st.ReasonJA)
	for _, k := range []string{CheckDisk, CheckAV, CheckUpdate, CheckFirewall} {
		a, ok := e.Attrs[k].(map[string]any)
		if !ok {
			t.Fatalf("attrs lack %s: %v", k, e.Attrs)
		}
		t.Logf("%s: %v", k, a)
		switch a["state"] {
		case "pass":
		case "fail", "unknown":
			if a["reason"] == nil {
				t.Errorf("%s is %s without a reason", k, a["state"])
			}
		default:
			t.Errorf("%s state %v", k, a["state"])
		}
	}
	if st.Reason == "" || st.ReasonJA == "" || st.ReasonEN == "" {
		t.Fatalf("verdict without reason: %+v", st)
	}
}

// tempDir is t.TempDir without failing the test when removal fails: under
// Wine, Go's RemoveAll gets "Invalid function" from unlinkat.
func tempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "posturetest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("cleanup: %v", err)
		}
	})
	return dir
}

// A data drive left unencrypted fails the host and is named, in the reason
// and in attrs, though the system drive is encrypted.
func TestDecideNamesUnencryptedDrives(t *testing.T) {
	cfg, _ := configFrom(policy.Posture{Mode: policy.Audit, DiskEncryption: policy.Required})
	vols, err := decodeCIMJSON[encryptableVolume](read(t, "encryptable_volume_multi.json"))
	if err != nil {
		t.Fatal(err)
	}
	f := goodFacts()
	f.disk, f.diskErr = bitlockerVolumes(vols, "C:")
	st, attrs := decide(cfg, f, t0)
	if st.State != controls.Fail || st.Reason != "posture.disk_not_encrypted" ||
		!strings.Contains(st.ReasonEN, "D:") || !strings.Contains(st.ReasonJA, "D:") || strings.Contains(st.ReasonEN, "C:") {
		t.Fatalf("status %+v", st)
	}
	a := attrs[CheckDisk].(map[string]any)
	if u, _ := a["unencrypted"].([]string); len(u) != 1 || u[0] != "D:" || a["volume"] != "C: D: E:" {
		t.Fatalf("attrs %v", a)
	}
}

// TestNothingRequiredIsNotPass: with every check optional (and no update
// age) nothing decides, so the host is not a compliant pass whatever the
// facts: unknown posture.nothing_to_check, as screenlock reports it.
func TestNothingRequiredIsNotPass(t *testing.T) {
	cfg, err := configFrom(policy.Posture{Mode: policy.Enforce, DiskEncryption: policy.Optional,
		Antivirus: policy.Optional, Firewall: policy.Optional})
	if err != nil {
		t.Fatal(err)
	}
	unsupported := fmt.Errorf("probe: %w", errors.ErrUnsupported)
	bad := goodFacts()
	bad.disk = diskFact{Volume: "/"}
	bad.avErr, bad.fwErr = errNotDetected, unsupported
	for name, f := range map[string]facts{"as found by the tester": bad, "all fine": goodFacts()} {
		st, attrs := decide(cfg, f, t0)
		if st.State != controls.Unknown || st.Reason != "posture.nothing_to_check" || st.ReasonJA == "" || st.ReasonEN == "" {
			t.Errorf("%s: %+v", name, st)
		}
		if attrs[CheckDisk] == nil {
			t.Errorf("%s: the optional checks are still reported: %v", name, attrs)
		}
	}
}

// TestPassCarriesReason: a pass names what was checked.
func TestPassCarriesReason(t *testing.T) {
	cfg, _ := configFrom(policy.Posture{Mode: policy.Audit, DiskEncryption: policy.Required, Firewall: policy.Required})
	st, _ := decide(cfg, goodFacts(), t0)
	if st.State != controls.Pass || st.Reason != "posture.ok" || !strings.Contains(st.ReasonEN, CheckDisk) ||
		!strings.Contains(st.ReasonEN, CheckFirewall) || strings.Contains(st.ReasonEN, CheckAV) || !strings.Contains(st.ReasonJA, "ファイアウォール") {
		t.Fatalf("%+v", st)
	}
}

// gz compresses b as logrotate's compress does.
func gz(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func controlsEnv() controls.Env { return controls.Env{Log: zerolog.Nop()} }

// Update-history parsers on fixtures: only upgrade runs count (apt
// upgrade/full-upgrade, unattended-upgrade, PackageKit's update; dnf/yum
// upgrade), not installs that pulled an upgraded dependency, and not runs
// that ended in an error.
func TestParseUpdateHistories(t *testing.T) {
	// Captured from this Debian 12 build host (long package lists cut):
	// every later entry is an install, some upgrading dependencies.
	run, oldest, n := parseAptHistory(read(t, "apt_history_debian12.log"), time.UTC)
	if !run.End.Equal(time.Date(2025, 6, 24, 14, 36, 25, 0, time.UTC)) || run.Command != "apt-get -qqy upgrade" || run.Upgraded != 2 ||
		!oldest.Equal(time.Date(2025, 6, 24, 14, 36, 25, 0, time.UTC)) || n != 14 {
		t.Errorf("debian 12: %+v oldest %v entries %d", run, oldest, n)
	}
	run, _, n = parseAptHistory(read(t, "apt_history_ubuntu.log"), time.UTC)
	if !run.End.Equal(time.Date(2026, 11, 18, 12, 42, 3, 0, time.UTC)) || run.Command != "packagekit role='update-packages'" || run.Upgraded != 3 || n != 6 {
		t.Errorf("ubuntu: %+v entries %d", run, n)
	}
	if run, _, n := parseAptHistory([]byte("garbage\n"), time.UTC); !run.End.IsZero() || n != 0 {
		t.Errorf("garbage: %+v %d", run, n)
	}
	for cmd, want := range map[string]bool{
		"apt-get -qqy upgrade": true, "apt full-upgrade": true, "apt-get -y dist-upgrade": true, "aptitude safe-upgrade": true,
		"/usr/bin/unattended-upgrade": true, "/usr/bin/unattended-upgrade --verbose": true, "packagekit role='update-packages'": true,
		"aptdaemon role='role-upgrade-system' sender=':1.108'": true,
		"apt-get install -y tzdata":                            false, "apt-get install --only-upgrade tzdata": false, "apt install vlc": false, "": false,
		"packagekit role='install-packages'": false,
	} {
		if got := isUpgradeCommand(cmd); got != want {
			t.Errorf("isUpgradeCommand(%q) = %v", cmd, got)
		}
	}

	last, detail := parseUnattendedUpgradesLog(read(t, "unattended_upgrades.log"), time.UTC)
	if !last.Equal(time.Date(2026, 11, 20, 6, 12, 47, 0, time.UTC)) || detail == "" {
		t.Errorf("unattended-upgrades: %v %q", last, detail)
	}

	last, detail, rows := parseDnfHistory(read(t, "dnf_history_list.txt"), time.UTC)
	if !last.Equal(time.Date(2026, 11, 18, 3, 15, 0, 0, time.UTC)) || !strings.Contains(detail, "upgrade") || rows != 6 {
		t.Errorf("dnf: %v %q %d", last, detail, rows)
	}
	last, _, rows = parseDnfHistory(read(t, "yum_history_list.txt"), time.UTC)
	if !last.Equal(time.Date(2026, 11, 17, 2, 10, 0, 0, time.UTC)) || rows != 4 {
		t.Errorf("yum: %v %d", last, rows)
	}
}

// The tester's host under the baseline policy: the disk fails, anti-virus
// and firewall cannot be told. The reason names all three in both
// languages, and attrs carry one row per check with its texts.
func TestReasonNamesEveryCheckAndChecksAttr(t *testing.T) {
	cfg, err := configFrom(policy.Posture{Mode: policy.Audit, DiskEncryption: policy.Required, Antivirus: policy.Required,
		Firewall: policy.Required, OSUpdateMaxAge: policy.Duration(720 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	f := goodFacts()
	f.disk = diskFact{Volume: "/"}
	// As the Linux probe says it (probe_linux.go).
	f.avErr = why(fmt.Errorf("%w (clamav not installed)", errNotDetected),
		"ClamAVがインストールされていません。ほかの製品はLinuxでは判別できません", "ClamAV not installed; other products are not recognised on Linux")
	f.fwErr = why(fmt.Errorf("%w: none of ufw, firewalld, nft, iptables-save could be run", errors.ErrUnsupported),
		"ufw・firewalld・nft・iptables-saveのいずれも実行できません", "none of ufw, firewalld, nft, iptables-save could be run")
	st, attrs := decide(cfg, f, t0)
	if st.State != controls.Fail || st.Reason != "posture.disk_not_encrypted" {
		t.Fatalf("%+v", st)
	}
	for _, w := range []string{"暗号化されていません", "ウイルス対策", "ファイアウォール"} {
		if !strings.Contains(st.ReasonJA, w) {
			t.Errorf("reason_ja %q lacks %q", st.ReasonJA, w)
		}
	}
	for _, w := range []string{"not encrypted", "anti-virus", "firewall"} {
		if !strings.Contains(st.ReasonEN, w) {
			t.Errorf("reason_en %q lacks %q", st.ReasonEN, w)
		}
	}
	checks, ok := attrs["checks"].(map[string]any)
	if !ok {
		t.Fatalf("no checks attr: %v", attrs)
	}
	want := map[string]string{CheckDisk: "fail", CheckAV: "unknown", CheckUpdate: "pass", CheckFirewall: "unknown"}
	for name, state := range want {
		c, ok := checks[name].(map[string]any)
		if !ok {
			t.Fatalf("checks lacks %s: %v", name, checks)
		}
		if c["state"] != state || c["required"] != true {
			t.Errorf("%s: %v", name, c)
		}
		ja, _ := c["reason_ja"].(string)
		en, _ := c["reason_en"].(string)
		if ja == "" || en == "" {
			t.Errorf("%s texts: %q / %q", name, ja, en)
		}
		if _, ok := c["reason"]; !ok {
			t.Errorf("%s lacks reason: %v", name, c)
		}
	}
	if ja := checks[CheckAV].(map[string]any)["reason_ja"].(string); !strings.Contains(ja, "ClamAV") {
		t.Errorf("anti-virus unknown without the why in Japanese: %q", ja)
	}
	if len(checks) != 4 {
		t.Errorf("checks %v", checks)
	}
	// Optional checks that are not met are named too, marked optional;
	// they do not decide.
	cfg.fw = false
	st, _ = decide(cfg, f, t0)
	if st.State != controls.Fail || !strings.Contains(st.ReasonJA, "任意") || !strings.Contains(st.ReasonEN, "optional") {
		t.Errorf("optional firewall: %+v", st)
	}
}

// An age limit reads as people write it, not as Go prints a duration.
func TestAgeWords(t *testing.T) {
	for d, want := range map[time.Duration][2]string{
		720 * time.Hour:  {"30日", "30 days"},
		36 * time.Hour:   {"36時間", "36 hours"},
		90 * time.Minute: {"2時間", "2 hours"},
	} {
		if ja, en := ageJA(d), ageEN(d); ja != want[0] || en != want[1] {
			t.Errorf("%v: %q %q, want %q", d, ja, en, want)
		}
	}
}
