package api

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/state"
	"github.com/mamori/mamori/shared/wire"
)

// expiringState answers LookupAPIToken for expired tokens as the app's
// adapter does for state's: ErrNotFound wrapping state's expiry error.
type expiringState struct {
	*memState
	expired map[string]time.Time
}

func (s expiringState) LookupAPIToken(ctx context.Context, plaintext string) (APIToken, error) {
	if at, ok := s.expired[plaintext]; ok {
		return APIToken{}, fmt.Errorf("%w: %w", ErrNotFound, &state.TokenExpiredError{ID: "e1", Expires: at})
	}
	return s.memState.LookupAPIToken(ctx, plaintext)
}

// An expired API token used to get "invalid token" alone, although tokens
// list shows it as expired: the admin did not know to make a new one.
func TestExpiredTokenSaysSo(t *testing.T) {
	e := &env{t: t, store: newMemStore(), state: newMemState(), ca: newTestCA("test CA")}
	at := time.Date(2026, 12, 7, 9, 30, 0, 0, time.UTC)
	var err error
	e.api, err = New(Config{Store: e.store, State: expiringState{e.state, map[string]time.Time{"expired-secret": at}},
		CA: e.ca, AgentID: cnAgentID, NewAgentID: newTestAgentID, Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewUnstartedServer(e.api.Handler())
	e.srv.TLS = &tls.Config{MinVersion: tls.VersionTLS13}
	e.srv.StartTLS()
	t.Cleanup(func() { e.srv.Close(); e.api.Close() })
	e.roots = x509.NewCertPool()
	e.roots.AddCert(e.srv.Certificate())
	c := e.client(nil)

	var out wire.Error
	want := "token expired at 2026-12-07 18:30:00 JST (09:30:00 UTC); create a new one with mamori-server tokens create"
	if st := e.doJSON(c, "GET", "/api/v1/events", "expired-secret", nil, &out); st != 401 || out.Error != want {
		t.Fatalf("expired token: %d %q, want 401 %q", st, out.Error, want)
	}
	// A token that does not exist reveals nothing.
	if st := e.doJSON(c, "GET", "/api/v1/events", "no-such-secret", nil, &out); st != 401 || out.Error != "invalid token" {
		t.Fatalf("unknown token: %d %q", st, out.Error)
	}
	if strings.Contains(out.Error, "expired") {
		t.Fatal("unknown token called expired")
	}
}

// The UTC time carries its date when it is not JST's.
func TestExpiredTokenMessageDates(t *testing.T) {
	at := time.Date(2026, 12, 7, 23, 15, 4, 0, time.UTC) // 08:15 on the 8th in Japan
	want := "token expired at 2026-12-08 08:15:04 JST (2026-12-07 23:15:04 UTC); create a new one with mamori-server tokens create"
	if got := expiredTokenMessage(at); got != want {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	if got := expiredTokenMessage(at.In(time.FixedZone("X", -5*3600))); got != want {
		t.Fatalf("another zone: %q", got)
	}
}
