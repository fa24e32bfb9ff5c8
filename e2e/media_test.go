package e2e

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/policy"
)

// The stick of the media fixtures (agent/internal/controls/media/testdata).
const (
	stickTree   = "../agent/internal/controls/media/testdata/linux/usb-sandisk-vfat.txt"
	stickSerial = "4C530001230512345678"
	stickMount  = `/media/taro/CRUZER\040BLADE` // as /proc/mounts escapes it
	// authorized attribute of the USB device 2-1, which blocking sets to 0.
	stickAuthorized = "sys/devices/pci0000:00/0000:00:14.0/usb2/2-1/authorized"
)

// mediaPack is the policy pack the media tests PUT and assign: block every
// medium nothing allows, and record what is written to allowed ones.
const mediaPack = `apiVersion: mamori/v1
kind: Policy
name: e2e-media
description: media blocked unless registered or approved (e2e)
controls:
  media: {mode: enforce, default: block, allow_registered: true, log_file_writes: true}
  agent: {heartbeat: 1m, silent_after: 30m}
`

// treeFile is one entry of a fixture tree: a file, or a symlink to link.
type treeFile struct {
	path, link string
	data       []byte
}

// readTree parses a media fixture ("-- path --" starts a file, "-- path ->
// target --" is a symlink; see the testdata README). The media package's
// own loader lives in its test files, which e2e cannot import.
func readTree(t *testing.T, name string) []treeFile {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []treeFile
	cur := -1 // index of the file taking lines; -1 before the first and after a link
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "-- ") && strings.HasSuffix(line, " --") {
			spec := strings.TrimSuffix(strings.TrimPrefix(line, "-- "), " --")
			from, to, isLink := strings.Cut(spec, " -> ")
			out = append(out, treeFile{path: from, link: to})
			cur = len(out) - 1
			if isLink {
				cur = -1
			}
			continue
		}
		if cur >= 0 {
			out[cur].data = append(out[cur].data, line+"\n"...)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func writeTree(t *testing.T, root string, files []treeFile) {
	t.Helper()
	for _, tf := range files {
		p := filepath.Join(root, tf.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if tf.link != "" {
			if err := os.Symlink(tf.link, p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, tf.data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// isStick: the fixture's entries that exist only while the stick is in
// (USB device 2-1 and below, its block device, its udev records).
func isStick(p string) bool {
	return strings.Contains(p, "/usb2/2-1") || strings.HasPrefix(p, "sys/bus/usb/devices/2-1") ||
		p == "sys/block/sdb" || strings.HasPrefix(p, "run/udev/data/b8:1")
}

// hostRoot is a sys/run/proc/dev tree for the agent's media probe
// (MAMORI_HOST_ROOT) with the fixture's host and no stick yet; insert adds
// the stick the way the kernel does, its /sys/block link last.
type hostRoot struct {
	dir, mnt string
	stick    []treeFile
}

func newHostRoot(t *testing.T) *hostRoot {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("the media probe reads a sysfs tree only on Linux")
	}
	h := &hostRoot{dir: t.TempDir(), mnt: filepath.Join(t.TempDir(), "CRUZER")}
	if err := os.Mkdir(h.mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	var base []treeFile
	for _, tf := range readTree(t, stickTree) {
		if tf.path == "proc/mounts" { // its file system is mounted on a real dir of the test
			tf.data = []byte(strings.ReplaceAll(string(tf.data), stickMount, strings.ReplaceAll(h.mnt, " ", `\040`)))
		}
		if isStick(tf.path) {
			h.stick = append(h.stick, tf)
		} else {
			base = append(base, tf)
		}
	}
	if len(h.stick) < 10 || len(base) < 5 {
		t.Fatalf("fixture split: %d stick entries, %d host entries", len(h.stick), len(base))
	}
	writeTree(t, h.dir, base)
	return h
}

func (h *hostRoot) insert(t *testing.T) {
	t.Helper()
	var link []treeFile
	var rest []treeFile
	for _, tf := range h.stick {
		if tf.path == "sys/block/sdb" {
			link = append(link, tf)
		} else {
			rest = append(rest, tf)
		}
	}
	writeTree(t, h.dir, rest)
	writeTree(t, h.dir, link)
}

// authorized reads the stick's USB authorized attribute in the tree.
func (h *hostRoot) authorized(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(h.dir, stickAuthorized))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// mediaAgent starts a server and an agent whose media probe reads h, with
// the media pack PUT and assigned to that agent, and waits until the agent
// applied it.
func mediaAgent(t *testing.T, h *hostRoot) (*server, *agent) {
	t.Helper()
	srvBin, agentBin := binaries(t)
	s := startServer(t, srvBin, filepath.Join(t.TempDir(), "data"), freePort(t))
	if st, b := s.adminDo(t, "PUT", "/api/v1/policies/e2e-media", []byte(mediaPack)); st >= 300 {
		t.Fatalf("PUT policy: %d %s", st, b)
	}
	a := enroll(t, agentBin, s)
	if st, b := s.adminDo(t, "PUT", "/api/v1/assignments/agents/"+a.id, []byte(`{"policy": "e2e-media"}`)); st >= 300 {
		t.Fatalf("assign policy: %d %s", st, b)
	}
	p := a.startEnv(t, 0, "MAMORI_HOST_ROOT="+h.dir)
	t.Cleanup(func() {
		if t.Failed() {
			for _, e := range s.query(t, url.Values{"agent": {a.id}, "control": {"media"}}) {
				t.Logf("%d %s %s %s %v", e.Seq, e.Type, e.Severity, e.Object, e.Attrs)
			}
			t.Logf("agent output:\n%s\nserver output:\n%s", p.out.String(), s.out.String())
		}
	})
	waitFor(t, 30*time.Second, "the agent applying e2e-media", func() bool {
		pol := a.appliedPolicy(t)
		return pol != nil && pol.Name == "e2e-media" && pol.Controls.Media.Mode == policy.Enforce
	})
	return s, a
}

// mediaEvents returns the agent's media events of type typ.
func mediaEvents(t *testing.T, s *server, a *agent, typ string) []event.Event {
	t.Helper()
	return s.query(t, url.Values{"agent": {a.id}, "type": {typ}})
}

// logMedia logs the agent's media events and policy changes in order.
func logMedia(t *testing.T, s *server, a *agent) {
	t.Helper()
	for _, e := range s.events(t, a.id) {
		if e.Control == "media" && e.Type != "media.status" || e.Type == "agent.policy_applied" {
			t.Logf("seq %3d %s %-20s %-9s reason=%v approval=%v %v", e.Seq, e.Time.Format("15:04:05.000"),
				e.Type, e.Severity, e.Attrs["reason"], e.Attrs["approval_id"], e.Attrs["enforcement"])
		}
	}
}

// checkStick asserts the device identity an event carries.
func checkStick(t *testing.T, e event.Event) {
	t.Helper()
	want := map[string]string{"serial": stickSerial, "vendor_id": "0781", "product_id": "5567",
		"vendor": "SanDisk", "product": "Cruzer Blade", "fs": "vfat", "bus": "usb"}
	for k, v := range want {
		if e.Attrs[k] != v {
			t.Errorf("%s: %s = %v, want %s", e.Type, k, e.Attrs[k], v)
		}
	}
	if e.Control != "media" || !strings.HasPrefix(e.Object, "/dev/sdb") {
		t.Errorf("%s: control %s object %q", e.Type, e.Control, e.Object)
	}
}

// TestMediaBlockedInsert (issue 6): with the media pack enforcing block, a
// SanDisk stick inserted into the agent's (fixture) sysfs is recorded as
// inserted, then blocked as a violation with its serial, and the agent
// deauthorizes the USB device (authorized = 0 in the tree).
func TestMediaBlockedInsert(t *testing.T) {
	h := newHostRoot(t)
	s, a := mediaAgent(t, h)
	h.insert(t)
	inserted := time.Now()
	var blocked []event.Event
	waitFor(t, 30*time.Second, "media.blocked on the server", func() bool {
		blocked = mediaEvents(t, s, a, "media.blocked")
		return len(blocked) > 0
	})
	t.Logf("media.blocked on the server %v after the insert", time.Since(inserted).Round(10*time.Millisecond))
	b := blocked[0]
	if b.Severity != event.Violation || b.Attrs["action"] != "block" || b.Attrs["reason"] != "default" {
		t.Errorf("media.blocked: severity %s attrs %v", b.Severity, b.Attrs)
	}
	checkStick(t, b)

	// The auditor's search for violations finds it too.
	var viol []event.Event
	for _, e := range s.query(t, url.Values{"agent": {a.id}, "control": {"media"}}) {
		if e.Severity == event.Violation {
			viol = append(viol, e)
		}
	}
	if len(viol) != 1 || viol[0].Hash != b.Hash {
		t.Errorf("violations of the media control: %d, want just the block", len(viol))
	}

	ins := mediaEvents(t, s, a, "media.inserted")
	if len(ins) != 1 || ins[0].Seq >= b.Seq {
		t.Fatalf("media.inserted: %d events, want one before the block", len(ins))
	}
	checkStick(t, ins[0])
	var enf []event.Event
	waitFor(t, 15*time.Second, "media.enforced", func() bool {
		enf = mediaEvents(t, s, a, "media.enforced")
		return len(enf) > 0
	})
	if enf[0].Seq <= b.Seq || enf[0].Attrs["enforcement"] != "authorized=0 2-1" {
		t.Errorf("media.enforced seq %d (block %d) attrs %v", enf[0].Seq, b.Seq, enf[0].Attrs)
	}
	if got := h.authorized(t); got != "0" {
		t.Errorf("USB device 2-1 authorized = %q after the block, want 0", got)
	}
	if n := len(mediaEvents(t, s, a, "media.file_written")); n != 0 {
		t.Errorf("%d files recorded on a blocked medium", n)
	}
	logMedia(t, s, a)
}

// TestMediaApprovalWindow (issue 8): a carry-out approval (持出し承認) for
// the stick's serial on this host, approved by the admin, lets the stick in
// and records what is written to it with the approval id; when the window
// ends the same stick, still plugged in, is blocked and deauthorized.
func TestMediaApprovalWindow(t *testing.T) {
	h := newHostRoot(t)
	s, a := mediaAgent(t, h)
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	// Long enough for approve, policy, insert and a file write on a loaded
	// 2-core box; the test waits for its end.
	from, to := time.Now().Add(-time.Minute).UTC().Truncate(time.Second), time.Now().Add(25*time.Second).UTC().Truncate(time.Second)
	body, _ := json.Marshal(map[string]any{"requester": "佐藤 一郎", "serial": stickSerial, "host": host,
		"purpose": "顧客訪問の資料持出し", "from": from, "to": to})
	st, resp := s.adminDo(t, "POST", "/api/v1/approvals", body)
	if st != http.StatusCreated {
		t.Fatalf("create approval: %d %s", st, resp)
	}
	var ap struct{ ID, Status string }
	if err := json.Unmarshal(resp, &ap); err != nil || ap.ID == "" || ap.Status != "requested" {
		t.Fatalf("created approval: %v %s", err, resp)
	}
	// Requested is not approved: the agent gets no window yet.
	time.Sleep(1500 * time.Millisecond)
	if pol := a.appliedPolicy(t); len(pol.Controls.Media.Approvals) != 0 {
		t.Fatalf("a requested approval reached the agent: %+v", pol.Controls.Media.Approvals)
	}
	if st, b := s.adminDo(t, "POST", "/api/v1/approvals/"+ap.ID+"/approve", nil); st != http.StatusOK {
		t.Fatalf("approve: %d %s", st, b)
	}
	waitFor(t, 10*time.Second, "the approved window in the agent's policy", func() bool {
		as := a.appliedPolicy(t).Controls.Media.Approvals
		return len(as) == 1 && as[0].ID == ap.ID && as[0].To.Equal(to)
	})

	h.insert(t)
	var allowed []event.Event
	waitFor(t, 20*time.Second, "media.allowed on the server", func() bool {
		allowed = mediaEvents(t, s, a, "media.allowed")
		return len(allowed) > 0
	})
	al := allowed[0]
	checkStick(t, al)
	if al.Attrs["approval_id"] != ap.ID || al.Attrs["reason"] != "approval" || al.Severity != event.Info {
		t.Errorf("media.allowed: %s %v", al.Severity, al.Attrs)
	}
	if got := h.authorized(t); got != "1" {
		t.Errorf("approved stick deauthorized (authorized = %q)", got)
	}
	// The carry-out record: a file written to the stick while approved.
	if time.Until(to) < 3*time.Second {
		t.Logf("window nearly over (%v left): file write not checked", time.Until(to).Round(time.Millisecond))
	} else {
		file := filepath.Join(h.mnt, "訪問先リスト.csv")
		if err := os.WriteFile(file, []byte("株式会社サンプル,東京都\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 15*time.Second, "media.file_written", func() bool {
			for _, e := range mediaEvents(t, s, a, "media.file_written") {
				if e.Object == file {
					if e.Attrs["approval_id"] != ap.ID || e.Attrs["serial"] != stickSerial {
						t.Errorf("media.file_written attrs %v", e.Attrs)
					}
					return true
				}
			}
			return false
		})
	}

	// The window ends; nobody touches the stick.
	var blocked []event.Event
	waitFor(t, time.Until(to)+20*time.Second, "media.blocked after the window", func() bool {
		blocked = mediaEvents(t, s, a, "media.blocked")
		return len(blocked) > 0
	})
	bl := blocked[0]
	t.Logf("window ended %s; block recorded %v later, without a re-insert", to.Format(time.RFC3339), bl.Time.Sub(to).Round(time.Millisecond))
	if bl.Time.Before(to) {
		t.Errorf("blocked at %v, before the window's end %v", bl.Time, to)
	}
	if al.Time.After(to) {
		t.Errorf("allowed at %v, after the window's end %v", al.Time, to)
	}
	if bl.Severity != event.Violation || bl.Attrs["reason"] != "default" || bl.Seq <= al.Seq {
		t.Errorf("media.blocked seq %d (allowed %d): %s %v", bl.Seq, al.Seq, bl.Severity, bl.Attrs)
	}
	checkStick(t, bl)
	if n := len(mediaEvents(t, s, a, "media.inserted")); n != 1 {
		t.Errorf("%d media.inserted: the stick was inserted once", n)
	}
	waitFor(t, 10*time.Second, "authorized = 0", func() bool { return h.authorized(t) == "0" })
	// The server recompiled at the window's end and woke the long-poll:
	// the expired approval is gone from the agent's policy.
	waitFor(t, 10*time.Second, "the expired approval leaving the agent's policy", func() bool {
		return len(a.appliedPolicy(t).Controls.Media.Approvals) == 0
	})
	logMedia(t, s, a)
}
