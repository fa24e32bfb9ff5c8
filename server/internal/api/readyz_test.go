package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/state"
)

// cutOffState is etcd without quorum: every read is unavailable.
type cutOffState struct{ *memState }

func (cutOffState) GetAgent(ctx context.Context, id string) (Agent, error) {
	return Agent{}, fmt.Errorf("state: get agent: %w", state.ErrUnavailable)
}

// TestReadyzStandbyWithoutEtcd: a standby cut off from etcd only remembers
// who the writer was; that writer may be the node whose death took the
// quorum with it. /readyz must not call that writer ok.
func TestReadyzStandbyWithoutEtcd(t *testing.T) {
	for _, tc := range []struct {
		name      string
		st        ControlPlane
		wantCheck string
	}{
		{"etcd answers", newMemState(), "ok"},
		{"etcd unavailable", cutOffState{newMemState()}, "unconfirmed: etcd unavailable, last known https://10.0.0.1:8443"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(Config{Store: newMemStore(), State: tc.st, CA: newTestCA("test CA"), AgentID: cnAgentID,
				NewAgentID: newTestAgentID, Log: zerolog.Nop(),
				Writer: func() (bool, string) { return false, "https://10.0.0.1:8443" }})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			w := httptest.NewRecorder()
			s.handleReadyz(w, httptest.NewRequest("GET", "/readyz", nil))
			var v readyView
			if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			// A standby names the writer it sends agents to, so an operator
			// need not poll every node's ?role=writer.
			if w.Code != http.StatusOK || v.Role != "standby" || v.Checks["writer"] != tc.wantCheck || v.Writer != "https://10.0.0.1:8443" {
				t.Fatalf("/readyz %d %s, want writer %q", w.Code, w.Body, tc.wantCheck)
			}
			if tc.name == "etcd unavailable" && !strings.HasPrefix(v.Checks["etcd"], "unavailable") {
				t.Fatalf("etcd check %q", v.Checks["etcd"])
			}
		})
	}
}
