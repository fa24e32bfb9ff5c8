package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mamori/mamori/shared/event"
)

// compliancePolicy turns every control on in audit mode, with folders in
// the test's temp dir so backup and file access have something real.
const compliancePolicy = `apiVersion: mamori/v1
kind: Policy
name: default
controls:
  screenlock: {mode: audit, max_idle: 10m, require_password: true}
  media:      {mode: audit, default: allow}
  fileaccess: {mode: audit, paths: [%q]}
  backup:     {mode: enforce, sources: [%q], destination: %q, max_age: 26h, generations: 2}
  posture:    {mode: audit, disk_encryption: required, antivirus: optional}
  agent:      {heartbeat: 1m, silent_after: 30m}
`

func (s *server) adminDo(t testing.TB, method, path string, body []byte) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, s.url+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+s.adminToken)
	resp, err := s.admin.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

type complianceControl struct {
	Status   string     `json:"status"`
	Reason   string     `json:"reason"`
	ReasonJA string     `json:"reason_ja"`
	ReasonEN string     `json:"reason_en"`
	Since    *time.Time `json:"since"`
	Index    *int64     `json:"index"`
}

type complianceReport struct {
	Hosts []struct {
		Agent    string                       `json:"agent"`
		Hostname string                       `json:"hostname"`
		Silent   bool                         `json:"silent"`
		Controls map[string]complianceControl `json:"controls"`
	} `json:"hosts"`
	Fleet map[string]struct {
		Pass, Fail, Unknown, Off int
		Rate                     float64
	} `json:"fleet"`
}

// TestComplianceOfRealAgent: every control status the real agent reports
// is what /api/v1/compliance shows for it (status, reason, since, and the
// log position of that very event); controls it has not reported yet show
// unknown with status.missing.
func TestComplianceOfRealAgent(t *testing.T) {
	srvBin, agentBin := binaries(t)
	s := startServer(t, srvBin, filepath.Join(t.TempDir(), "data"), freePort(t))
	root := t.TempDir()
	src, dst := filepath.Join(root, "顧客"), filepath.Join(root, "backup")
	for _, d := range []string{src, dst} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(src, "名簿.csv"), []byte("山田,太郎\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if st, b := s.adminDo(t, "PUT", "/api/v1/policies/default", fmt.Appendf(nil, compliancePolicy, src, src, dst)); st >= 300 {
		t.Fatalf("PUT policy: %d %s", st, b)
	}
	a := enroll(t, agentBin, s)
	a.start(t, 0)

	// Latest status event per control, as stored.
	type stored struct {
		event.Event
		Index int64 `json:"index"`
	}
	latest := func() map[string]event.Event {
		out := map[string]event.Event{}
		for _, e := range s.events(t, a.id) {
			if e.Type == e.Control+".status" {
				out[e.Control] = e
			}
		}
		return out
	}
	var statuses map[string]event.Event
	waitFor(t, 90*time.Second, "status events from the agent's controls", func() bool {
		statuses = latest()
		return len(statuses) >= 2
	})
	time.Sleep(2 * time.Second) // let the controls' first round finish
	statuses = latest()
	t.Logf("agent reported %d controls", len(statuses))

	st, b := s.adminDo(t, "GET", "/api/v1/compliance?agent="+a.id, nil)
	if st != 200 {
		t.Fatalf("GET compliance: %d %s", st, b)
	}
	var rep complianceReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Hosts) != 1 || rep.Hosts[0].Agent != a.id || rep.Hosts[0].Silent {
		t.Fatalf("hosts: %s", b)
	}
	host := rep.Hosts[0]
	after := latest() // a status arriving around the GET is not compared
	for _, c := range []string{"screenlock", "media", "fileaccess", "backup", "posture"} {
		got := host.Controls[c]
		e, ok := statuses[c]
		if e2, ok2 := after[c]; ok != ok2 || e.Hash != e2.Hash {
			t.Logf("%s: a status arrived during the check; not compared", c)
			continue
		}
		if !ok {
			if got.Status != "unknown" || got.Reason != "status.missing" {
				t.Errorf("%s: not reported, yet compliance shows %+v", c, got)
			}
			continue
		}
		want, _ := e.Attrs["status"].(string)
		reason, _ := e.Attrs["reason"].(string)
		if got.Status != want || got.Reason != reason {
			t.Errorf("%s: compliance %s/%s, latest event %s/%s", c, got.Status, got.Reason, want, reason)
		}
		if since, _ := e.Attrs["since"].(string); got.Since == nil || got.Since.UTC().Format(time.RFC3339) != since {
			t.Errorf("%s: since %v, event says %s", c, got.Since, since)
		}
		if got.Index == nil {
			t.Errorf("%s: no log index", c)
			continue
		}
		// The index names the very event: the events API finds it there.
		var page struct {
			Events []stored `json:"events"`
		}
		q := fmt.Sprintf("/api/v1/events?agent=%s&type=%s.status&limit=1000", a.id, c)
		if st, b := s.adminDo(t, "GET", q, nil); st != 200 || json.Unmarshal(b, &page) != nil || len(page.Events) == 0 {
			t.Fatalf("events: %d %s", st, b)
		}
		if last := page.Events[len(page.Events)-1]; last.Hash != e.Hash {
			t.Logf("%s: a newer status arrived meanwhile; index not compared", c)
		} else if *got.Index != last.Index {
			t.Errorf("%s: compliance index %d, latest status event at %d", c, *got.Index, last.Index)
		}
		t.Logf("%-10s %-7s %-28s %s", c, got.Status, got.Reason, got.ReasonJA)
	}
	if f, ok := rep.Fleet["screenlock"]; !ok || f.Pass+f.Fail+f.Unknown != 1 {
		t.Errorf("fleet screenlock: %+v", rep.Fleet)
	}
}
