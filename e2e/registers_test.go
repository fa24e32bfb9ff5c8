package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestRegisterFolderReachesAgent: an entry of the 個人情報管理台帳 with a
// folder on this host reaches the running agent's policy (fileaccess and
// backup folders, with the register id) within seconds, through the
// long-poll, without restarting anything.
func TestRegisterFolderReachesAgent(t *testing.T) {
	srvBin, agentBin := binaries(t)
	s := startServer(t, srvBin, filepath.Join(t.TempDir(), "data"), freePort(t))
	a := enroll(t, agentBin, s)
	p := a.start(t, 0)
	defer func() {
		if t.Failed() {
			t.Logf("agent output:\n%s\nserver output:\n%s", p.out.String(), s.out.String())
		}
	}()
	policyFile := filepath.Join(a.dir, "policy.json")
	waitFor(t, 30*time.Second, "first policy saved", func() bool {
		_, err := os.Stat(policyFile)
		return err == nil
	})
	folder := t.TempDir()
	createPIEntry(t, s, "PI-E2E-1", folder)
	created := time.Now()
	folderJSON, _ := json.Marshal(map[string]string{"path": folder, "register_id": "PI-E2E-1"})
	waitFor(t, 10*time.Second, "agent policy with the register folder", func() bool {
		b, err := os.ReadFile(policyFile)
		return err == nil && bytes.Count(b, folderJSON[1:len(folderJSON)-1]) >= 2 // fileaccess and backup
	})
	t.Logf("register folder in the agent's saved policy %v after the entry was created", time.Since(created).Round(10*time.Millisecond))
}

// createPIEntry adds a 個人情報管理台帳 entry whose data lives in folder on
// this host.
func createPIEntry(t *testing.T, s *server, id, folder string) {
	t.Helper()
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	entry := map[string]any{"id": id, "name": "顧客名簿", "purpose": "商品発送", "medium": "electronic",
		"locations": []map[string]string{{"host": host, "folder": folder}}, "owner": "山田 太郎",
		"department": "総務部", "retention": "5y", "disposal_method": "データ消去"}
	body, _ := json.Marshal(entry)
	if st, b := s.adminDo(t, "POST", "/api/v1/register", body); st != http.StatusCreated {
		t.Fatalf("create register entry: %d %s", st, b)
	}
}
