package api

import (
	"testing"
	"time"
)

// A spent enrollment token with time left is used_up, not expired: the
// admin needs more uses, not a longer life.
func TestTokenState(t *testing.T) {
	now := time.Now()
	zero, five := 0, 5
	for _, tc := range []struct {
		expires time.Time
		uses    *int
		want    string
	}{
		{now.Add(time.Hour), &five, tokenValid},
		{now.Add(time.Hour), &zero, tokenUsedUp},
		{now.Add(-time.Hour), &five, tokenExpired},
		{now.Add(-time.Hour), &zero, tokenExpired},
		{time.Time{}, nil, tokenValid}, // an API token that does not expire
		{now, nil, tokenExpired},
	} {
		if got := tokenState(now, tc.expires, tc.uses); got != tc.want {
			t.Errorf("expires %v, uses %v: %s, want %s", tc.expires, tc.uses, got, tc.want)
		}
	}
}
