package state

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Roles of admin-plane principals.
const (
	RoleAdmin   = "admin"
	RoleAuditor = "auditor"
	RoleManager = "manager"
)

// tokenBytes is the entropy of generated tokens (256 bits).
const tokenBytes = 32

// minTokenLen is the shortest plaintext accepted by Ensure*: 22 base64url
// characters carry 132 bits.
const minTokenLen = 22

// EnrollToken is the stored record of an enrollment token; the plaintext is
// never stored, only its SHA-256.
type EnrollToken struct {
	ID         string    `json:"id"` // first 16 hex digits of the SHA-256, safe to show and log
	Expires    time.Time `json:"expires"`
	UsesLeft   int       `json:"uses_left"`
	Created    time.Time `json:"created"`
	CreatedBy  string    `json:"created_by"`
	Department string    `json:"department,omitempty"`
}

// APIToken is the stored record of an admin-plane bearer token.
type APIToken struct {
	ID      string    `json:"id"` // first 16 hex digits of the SHA-256
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	Created time.Time `json:"created"`
	// Expires is zero for the bootstrap admin token and set for tokens
	// made for people (CreatePersonToken).
	Expires   time.Time `json:"expires,omitzero"`
	CreatedBy string    `json:"created_by,omitempty"`
}

// NewToken returns a fresh random URL-safe token (256 bits, 43 characters),
// for callers that must write the plaintext somewhere before Ensure*Token.
func NewToken() (string, error) {
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("state: random token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// tokenHash returns the hex SHA-256 of a plaintext token.
func tokenHash(plaintext string) string {
	h := sha256.Sum256([]byte(plaintext))
	return hex.EncodeToString(h[:])
}

// checkTokenText rejects plaintexts that are too short or not URL-safe.
func checkTokenText(plaintext string) error {
	if len(plaintext) < minTokenLen || len(plaintext) > 256 {
		return fmt.Errorf("state: %w: token must be %d..256 characters", ErrInvalid, minTokenLen)
	}
	for _, r := range plaintext {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
		if !ok {
			return fmt.Errorf("state: %w: token may hold only base64url characters", ErrInvalid)
		}
	}
	return nil
}

func checkRole(role string) error {
	switch role {
	case RoleAdmin, RoleAuditor, RoleManager:
		return nil
	}
	return fmt.Errorf("state: %w: role %q is not admin, auditor or manager", ErrInvalid, role)
}

func checkEnrollParams(ttl time.Duration, uses int) error {
	if ttl <= 0 {
		return fmt.Errorf("state: %w: token ttl must be positive", ErrInvalid)
	}
	if uses <= 0 {
		return fmt.Errorf("state: %w: token uses must be positive", ErrInvalid)
	}
	return nil
}

// CreateEnrollToken makes a new enrollment token valid for ttl and uses
// enrollments, and returns its plaintext (shown once) and record.
func (s *State) CreateEnrollToken(ctx context.Context, ttl time.Duration, uses int, createdBy string) (string, EnrollToken, error) {
	if err := checkEnrollParams(ttl, uses); err != nil {
		return "", EnrollToken{}, err
	}
	plain, err := NewToken()
	if err != nil {
		return "", EnrollToken{}, err
	}
	t, err := s.putEnrollToken(ctx, plain, ttl, uses, createdBy)
	if err != nil {
		return "", EnrollToken{}, err
	}
	return plain, t, nil
}

// EnsureEnrollToken stores the given plaintext as an enrollment token once
// per site: a token with the same hash is left as it is (uses and expiry are
// not reset on restart), and one revoked since is not made again.
func (s *State) EnsureEnrollToken(ctx context.Context, plaintext string, ttl time.Duration, uses int) error {
	if err := checkTokenText(plaintext); err != nil {
		return err
	}
	if err := checkEnrollParams(ttl, uses); err != nil {
		return err
	}
	return s.ensureOnce(ctx, enrollTokensDir+tokenHash(plaintext), func() error {
		_, err := s.putEnrollToken(ctx, plaintext, ttl, uses, "bootstrap")
		return err
	})
}

// bootstrapDir marks the bootstrap secrets made once (ensureOnce).
const bootstrapDir = "bootstrapped/"

// ensureOnce runs create (ErrConflict: made already) unless marker was set,
// then sets it. The bootstrap tokens, whose plaintext sits in the data dir
// and was printed at first start, are ensured at every start: without the
// marker a token an admin revoked after a leak, its record deleted, came
// back with fresh uses at the next restart.
func (s *State) ensureOnce(ctx context.Context, marker string, create func() error) error {
	if _, _, err := s.get(ctx, bootstrapDir+marker); err == nil {
		return nil
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	if err := create(); err != nil && !errors.Is(err, ErrConflict) {
		return err
	}
	if _, err := s.putIf(ctx, bootstrapDir+marker, []byte("{}"), 0); err != nil && !errors.Is(err, ErrConflict) {
		return err
	}
	return nil
}

// putEnrollToken creates the record; ErrConflict if the hash exists.
func (s *State) putEnrollToken(ctx context.Context, plain string, ttl time.Duration, uses int, createdBy string) (EnrollToken, error) {
	h := tokenHash(plain)
	now := s.now().UTC()
	t := EnrollToken{ID: h[:16], Expires: now.Add(ttl), UsesLeft: uses, Created: now, CreatedBy: createdBy}
	b, err := json.Marshal(t)
	if err != nil {
		return EnrollToken{}, fmt.Errorf("state: encode token: %w", err)
	}
	if _, err := s.putIf(ctx, enrollTokensDir+h, b, 0); err != nil {
		return EnrollToken{}, err
	}
	return t, nil
}

// ConsumeEnrollToken checks the token and uses it up by one, atomically: a
// compare-and-swap on the record's mod revision, retried on contention. An
// unknown, expired or used-up token returns an error wrapping ErrTokenInvalid
// and changes nothing. The returned record has the remaining uses.
func (s *State) ConsumeEnrollToken(ctx context.Context, plaintext string) (EnrollToken, error) {
	if checkTokenText(plaintext) != nil {
		return EnrollToken{}, fmt.Errorf("state: malformed token: %w", ErrTokenInvalid)
	}
	k := enrollTokensDir + tokenHash(plaintext)
	for {
		b, rev, err := s.get(ctx, k)
		if errors.Is(err, ErrNotFound) {
			return EnrollToken{}, fmt.Errorf("state: unknown token: %w", ErrTokenInvalid)
		}
		if err != nil {
			return EnrollToken{}, err
		}
		var t EnrollToken
		if err := json.Unmarshal(b, &t); err != nil {
			return EnrollToken{}, fmt.Errorf("state: decode token %s: %w", k, err)
		}
		if !s.now().Before(t.Expires) {
			return EnrollToken{}, fmt.Errorf("state: token %s expired at %s: %w", t.ID, t.Expires.Format(time.RFC3339), ErrTokenInvalid)
		}
		if t.UsesLeft <= 0 {
			return EnrollToken{}, fmt.Errorf("state: token %s is used up: %w", t.ID, ErrTokenInvalid)
		}
		t.UsesLeft--
		nb, err := json.Marshal(t)
		if err != nil {
			return EnrollToken{}, fmt.Errorf("state: encode token: %w", err)
		}
		_, err = s.putIf(ctx, k, nb, rev)
		if err == nil {
			return t, nil
		}
		if !errors.Is(err, ErrConflict) {
			return EnrollToken{}, err
		}
		if ctx.Err() != nil {
			return EnrollToken{}, fmt.Errorf("state: consume token: %w", ctx.Err())
		}
	}
}

// ListEnrollTokens returns all enrollment token records, including expired
// and used-up ones, ordered by hash.
func (s *State) ListEnrollTokens(ctx context.Context) ([]EnrollToken, error) {
	_, vals, err := s.list(ctx, enrollTokensDir, false)
	if err != nil {
		return nil, err
	}
	out := make([]EnrollToken, 0, len(vals))
	for _, v := range vals {
		var t EnrollToken
		if err := json.Unmarshal(v, &t); err != nil {
			return nil, fmt.Errorf("state: decode token: %w", err)
		}
		out = append(out, t)
	}
	return out, nil
}

// RevokeEnrollToken deletes the enrollment token with the given ID
// (EnrollToken.ID). ErrNotFound if there is none.
func (s *State) RevokeEnrollToken(ctx context.Context, id string) error {
	if len(id) != 16 {
		return fmt.Errorf("state: %w: token id must be 16 hex digits", ErrInvalid)
	}
	if _, err := hex.DecodeString(id); err != nil {
		return fmt.Errorf("state: %w: token id must be 16 hex digits", ErrInvalid)
	}
	ctx, cancel, err := s.writeCtx(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	defer s.avail.forget(enrollTokensDir)
	// The id is a prefix of the hash, so the key is found by prefix.
	resp, err := s.cli.Delete(ctx, key(enrollTokensDir+id), clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("state: revoke token %s: %w", id, s.etcdErr(ctx, err))
	}
	if resp.Deleted == 0 {
		return fmt.Errorf("state: token %s: %w", id, ErrNotFound)
	}
	return nil
}

// CreateAPIToken makes a new admin-plane bearer token with a role and returns
// its plaintext (shown once) and record.
func (s *State) CreateAPIToken(ctx context.Context, name, role string) (string, APIToken, error) {
	if err := checkAPIParams(name, role); err != nil {
		return "", APIToken{}, err
	}
	plain, err := NewToken()
	if err != nil {
		return "", APIToken{}, err
	}
	t, err := s.putAPIToken(ctx, plain, name, role)
	if err != nil {
		return "", APIToken{}, err
	}
	return plain, t, nil
}

// EnsureAPIToken stores the given plaintext as an API token once per site:
// one with the same hash is left as it is, and one revoked since is not made
// again (ensureOnce).
func (s *State) EnsureAPIToken(ctx context.Context, plaintext, name, role string) error {
	if err := checkTokenText(plaintext); err != nil {
		return err
	}
	if err := checkAPIParams(name, role); err != nil {
		return err
	}
	return s.ensureOnce(ctx, apiTokensDir+tokenHash(plaintext), func() error {
		_, err := s.putAPIToken(ctx, plaintext, name, role)
		return err
	})
}

func checkAPIParams(name, role string) error {
	if !ValidTokenName(name) {
		return fmt.Errorf("state: %w: token name %q: %s", ErrInvalid, name, TokenNameRule)
	}
	return checkRole(role)
}

// MaxTokenNameLen bounds an API token's name, in characters.
const MaxTokenNameLen = 64

// TokenNameRule says what ValidTokenName takes.
const TokenNameRule = "want 1 to 64 letters or digits of any script (山田, 経理-スクリプト) and - _ . @ ・, no spaces"

// ValidTokenName reports whether s can name an API token: the person or
// script it is for, in any script. It takes letters, marks and digits of
// any script and - _ . @ ・; it refuses spaces (a name is one word in
// command lines and lists), control and format characters (a line break or
// a direction override would forge log lines), slashes and other
// punctuation, "." and "..", and text that is not UTF-8.
func ValidTokenName(s string) bool {
	if s == "" || !utf8.ValidString(s) || utf8.RuneCountInString(s) > MaxTokenNameLen || s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		switch {
		case unicode.IsLetter(r), unicode.IsMark(r), unicode.IsNumber(r):
		case r == '-', r == '_', r == '.', r == '@', r == '・':
		default:
			return false
		}
	}
	return true
}

func (s *State) putAPIToken(ctx context.Context, plain, name, role string) (APIToken, error) {
	h := tokenHash(plain)
	t := APIToken{ID: h[:16], Name: name, Role: role, Created: s.now().UTC()}
	b, err := json.Marshal(t)
	if err != nil {
		return APIToken{}, fmt.Errorf("state: encode token: %w", err)
	}
	if _, err := s.putIf(ctx, apiTokensDir+h, b, 0); err != nil {
		return APIToken{}, err
	}
	return t, nil
}

// LookupAPIToken returns the record of a bearer token, or an error wrapping
// ErrNotFound. The lookup is by SHA-256, so no plaintext comparison leaks timing.
func (s *State) LookupAPIToken(ctx context.Context, plaintext string) (APIToken, error) {
	if checkTokenText(plaintext) != nil {
		return APIToken{}, fmt.Errorf("state: api token: %w", ErrNotFound)
	}
	b, _, err := s.get(ctx, apiTokensDir+tokenHash(plaintext))
	if errors.Is(err, ErrNotFound) {
		return APIToken{}, fmt.Errorf("state: api token: %w", ErrNotFound)
	}
	if err != nil {
		return APIToken{}, err
	}
	var t APIToken
	if err := json.Unmarshal(b, &t); err != nil {
		return APIToken{}, fmt.Errorf("state: decode api token: %w", err)
	}
	if !t.Expires.IsZero() && !s.now().Before(t.Expires) {
		return APIToken{}, &TokenExpiredError{ID: t.ID, Expires: t.Expires}
	}
	return t, nil
}

// TokenExpiredError is LookupAPIToken's error for a token that exists but
// expired (at Expires or later). It wraps ErrNotFound, so it is refused as
// an unknown token is; unlike one, it may say when it expired, since only
// the holder of the token's secret can learn it.
type TokenExpiredError struct {
	ID      string
	Expires time.Time
}

func (e *TokenExpiredError) Error() string {
	return fmt.Sprintf("state: api token %s expired at %s", e.ID, e.Expires.UTC().Format(time.RFC3339))
}

func (e *TokenExpiredError) Unwrap() error { return ErrNotFound }
