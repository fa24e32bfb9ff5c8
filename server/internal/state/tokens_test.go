package state

import (
	"errors"
	"testing"
	"time"
)

// An expired person token is still not found (401), but says since when,
// so the API can tell the admin to make a new one; a token that never
// existed says nothing of the kind.
func TestLookupAPITokenExpiry(t *testing.T) {
	ctx := ctxT(t)
	s := openTest(t)
	clk := &fakeNow{t: time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)}
	s.now = clk.now
	plain, tok, err := s.CreatePersonToken(ctx, "山田", RoleAuditor, time.Hour, "admin")
	if err != nil {
		t.Fatal(err)
	}
	clk.add(time.Hour - time.Nanosecond) // the last instant it is valid
	if got, err := s.LookupAPIToken(ctx, plain); err != nil || got.ID != tok.ID {
		t.Fatalf("before expiry: %+v %v", got, err)
	}
	clk.add(time.Nanosecond) // at Expires it is expired
	_, err = s.LookupAPIToken(ctx, plain)
	var exp *TokenExpiredError
	if !errors.Is(err, ErrNotFound) || !errors.As(err, &exp) || exp.ID != tok.ID || !exp.Expires.Equal(tok.Expires) {
		t.Fatalf("at expiry: %v", err)
	}
	other, _ := NewToken()
	if _, err := s.LookupAPIToken(ctx, other); !errors.Is(err, ErrNotFound) || errors.As(err, &exp) {
		t.Fatalf("unknown token: %v", err)
	}
	if _, err := s.LookupAPIToken(ctx, "short"); !errors.Is(err, ErrNotFound) || errors.As(err, &exp) {
		t.Fatalf("malformed token: %v", err)
	}
}
