package e2e

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mamori/mamori/shared/event"
)

// written is one file the writer created, and when.
type written struct {
	path string
	at   time.Time
}

// TestFileAccessAgentKilled (issue 18): the agent is killed with SIGKILL 10
// times while a writer keeps creating files in a register folder, and the
// test modifies and deletes a file while it is down. After each restart
// every change made while it was down is reported, marked
// attribution_source while_agent_stopped with the window, every created
// file exactly once; the server records each of the 10 outages; and a
// clean stop ships agent.stopping before the agent exits.
func TestFileAccessAgentKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("10 kills, about 60 s")
	}
	const rounds = 10
	srvBin, agentBin := binaries(t)
	s := startServer(t, srvBin, filepath.Join(t.TempDir(), "data"), freePort(t))
	a := enroll(t, agentBin, s)
	var p *proc
	defer func() {
		if t.Failed() && p != nil {
			t.Logf("agent output (last run):\n%s", p.out.String())
		}
	}()
	p = a.start(t, 0)
	waitFor(t, 30*time.Second, "first policy applied", func() bool { return a.appliedPolicy(t) != nil })
	folder, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	createPIEntry(t, s, "PI-E2E-18", folder)
	// watching waits until this run of the agent (pid) watches the folder.
	watching := func(pid int) bool {
		st := a.status(t)
		c, _ := st["controls"].(map[string]any)
		fa, _ := c["fileaccess"].(map[string]any)
		return st["running"] == true && int(st["pid"].(float64)) == pid && fa["state"] == "pass"
	}
	waitFor(t, 30*time.Second, "agent watching the folder", func() bool { return watching(p.cmd.Process.Pid) })

	// The writer creates a file every 40 ms (about 25/s, under the bulk
	// threshold) until stopped.
	var mu sync.Mutex
	var files []written
	stopWriter := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for i := 0; ; i++ {
			select {
			case <-stopWriter:
				return
			case <-time.After(40 * time.Millisecond):
			}
			f := filepath.Join(folder, fmt.Sprintf("w-%05d.csv", i))
			if err := os.WriteFile(f, []byte(fmt.Sprintf("row %d\n", i)), 0o600); err != nil {
				t.Errorf("writer: %v", err)
				return
			}
			mu.Lock()
			files = append(files, written{f, time.Now()})
			mu.Unlock()
		}
	}()
	type outage struct{ killed, restarted time.Time }
	var outages []outage
	var modified, deleted []string
	for k := range rounds {
		time.Sleep(time.Duration(700+k*97) * time.Millisecond) // writes going on
		p.stop(t, syscall.SIGKILL)
		killed := time.Now()
		// While it is down: besides the writer, modify one earlier file and
		// delete another (never touched again).
		mu.Lock()
		m, d := files[2*k].path, files[2*k+1].path
		mu.Unlock()
		time.Sleep(150 * time.Millisecond)
		if err := os.WriteFile(m, []byte("changed while the agent was down\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(d); err != nil {
			t.Fatal(err)
		}
		modified, deleted = append(modified, m), append(deleted, d)
		time.Sleep(350 * time.Millisecond)
		restarted := time.Now()
		outages = append(outages, outage{killed, restarted})
		p = a.start(t, 0)
		waitFor(t, 30*time.Second, "restarted agent watching", func() bool { return watching(p.cmd.Process.Pid) })
	}
	close(stopWriter)
	<-writerDone
	all := append([]written(nil), files...)

	// Every created file is on the server, once.
	byPrefix := url.Values{"agent": {a.id}, "object_prefix": {folder}}
	var evs []event.Event
	createdEv := map[string][]event.Event{}
	waitFor(t, 60*time.Second, "every file's create on the server", func() bool {
		evs = s.query(t, byPrefix)
		createdEv = map[string][]event.Event{}
		for _, e := range evs {
			if e.Type == "file.created" {
				createdEv[e.Object] = append(createdEv[e.Object], e)
			}
		}
		for _, f := range all {
			if len(createdEv[f.path]) == 0 {
				return false
			}
		}
		return true
	})
	// The clean stop: agent.stopping reaches the server before the agent exits.
	p.stop(t, syscall.SIGTERM)
	if n := countType(s.query(t, url.Values{"agent": {a.id}, "type": {"agent.stopping"}}), "agent.stopping"); n != 1 {
		t.Errorf("agent.stopping on the server right after the clean stop: %d, want 1", n)
	}

	stopped := func(e event.Event) bool { return e.Attrs["attribution_source"] == "while_agent_stopped" }
	inOutage := func(at time.Time) bool {
		for _, o := range outages {
			if at.After(o.killed) && at.Before(o.restarted) {
				return true
			}
		}
		return false
	}
	// near: at a kill or a restart, where a change may be either recorded
	// live or found at the next start (pending in the debounce at the kill,
	// or made before the restarted agent compared the folder).
	near := func(at time.Time) bool {
		for _, o := range outages {
			if at.After(o.killed.Add(-3*time.Second)) && at.Before(o.restarted.Add(5*time.Second)) {
				return true
			}
		}
		return false
	}
	down, whileStopped := 0, 0
	for _, f := range all {
		c := createdEv[f.path]
		if len(c) != 1 {
			t.Errorf("%s: %d create events, want 1", f.path, len(c))
			continue
		}
		if stopped(c[0]) {
			whileStopped++
			if !near(f.at) {
				t.Errorf("%s created at %v, far from any outage, reported as %v", f.path, f.at, c[0].Attrs)
			}
		}
		if inOutage(f.at) {
			down++
			if !stopped(c[0]) {
				t.Errorf("%s created while the agent was down, reported as %v", f.path, c[0].Attrs)
			}
		}
	}
	check := func(typ string, paths []string) {
		for _, f := range paths {
			n := 0
			for _, e := range evs {
				if e.Type == typ && e.Object == f {
					n++
					if !stopped(e) || e.Attrs["window_from"] == nil || e.Attrs["window_to"] == nil {
						t.Errorf("%s %s: %v, want while_agent_stopped with the window", typ, f, e.Attrs)
					}
				}
			}
			if n != 1 {
				t.Errorf("%s %s: %d events, want 1", typ, f, n)
			}
		}
	}
	check("file.modified", modified)
	check("file.deleted", deleted)
	for _, e := range evs {
		if stopped(e) {
			from, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(e.Attrs["window_from"]))
			to, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(e.Attrs["window_to"]))
			if !from.Before(to) || e.User != "" || e.RegisterID != "PI-E2E-18" {
				t.Errorf("while_agent_stopped event %s %s: window %v..%v user %q", e.Type, e.Object, from, to, e.User)
			}
		}
	}
	if down == 0 || whileStopped < down {
		t.Errorf("%d files created while down, %d reported while_agent_stopped", down, whileStopped)
	}

	// The server lists each outage, as a stop without agent.stopping.
	var got []event.Event
	for _, e := range s.query(t, url.Values{"agent": {event.ServerStream}, "type": {"agent.outage"}}) {
		if e.Object == a.id {
			got = append(got, e)
		}
	}
	sort.Slice(got, func(i, j int) bool { return fmt.Sprint(got[i].Attrs["to"]) < fmt.Sprint(got[j].Attrs["to"]) })
	if len(got) != rounds {
		t.Fatalf("server recorded %d outages, want %d: %v", len(got), rounds, got)
	}
	for i, e := range got {
		from, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(e.Attrs["from"]))
		to, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(e.Attrs["to"]))
		o := outages[i]
		if e.Attrs["clean_stop"] != false || from.After(o.killed) || to.Before(o.restarted) || e.Severity != event.Warning {
			t.Errorf("outage %d: %v..%v (%v), killed %v restarted %v", i, from, to, e.Attrs, o.killed, o.restarted)
		}
	}
	// The agent list shows the OS version the agent sent at enrollment.
	if st, b := s.adminDo(t, "GET", "/api/v1/agents", nil); st != 200 || !strings.Contains(string(b), `"os_version":"`) ||
		strings.Contains(string(b), `"os_version":""`) {
		t.Errorf("agents list without os_version: %d %s", st, b)
	}
	t.Logf("%d kills: %d files created (%d while down), %d creates + %d modified + %d deleted reported while_agent_stopped, %d outages on the server",
		rounds, len(all), down, whileStopped, len(modified), len(deleted), len(got))
}
