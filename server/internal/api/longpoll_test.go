package api

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
)

// goneState answers like etcd does for a request whose client went away:
// with the context's error.
type goneState struct{ *memState }

func (g goneState) Assignment(ctx context.Context, agentID string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("state: assignment: %w", err)
	}
	return g.memState.Assignment(ctx, agentID)
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// TestClientGoneIsNotAnError: a long-poll or a batch whose client went away
// (the agent stopped, its timeout fired, 10,000 long-polls woke at once and
// some clients left) is not a server error: nothing logged at error level,
// no 500 counted.
func TestClientGoneIsNotAnError(t *testing.T) {
	logs := &lockedBuf{}
	store := newMemStore()
	s, err := New(Config{Store: store, State: goneState{newMemState()}, CA: newTestCA("test CA"),
		AgentID: cnAgentID, NewAgentID: newTestAgentID, Log: zerolog.New(logs).Level(zerolog.DebugLevel)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), agentKey, "ag-0000000000000001"))
	cancel() // the client is gone

	w := httptest.NewRecorder()
	s.handlePolicy(w, httptest.NewRequest("GET", "/v1/policy?version=x&wait=55s", nil).WithContext(ctx))
	if w.Code == http.StatusInternalServerError {
		t.Errorf("long-poll of a gone client answered 500")
	}

	w = httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/v1/events", strings.NewReader(`{"events":[]}`)).WithContext(ctx)
	req.Header.Set("Content-Type", "application/json")
	s.handleIngest(w, req)

	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, `"level":"error"`) || strings.Contains(line, `"level":"warn"`) {
			t.Errorf("logged for a gone client: %s", line)
		}
	}
}
