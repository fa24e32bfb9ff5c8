package state

import (
	"errors"
	"strings"
	"testing"
)

// The cases were accepted by the old 12..72-byte rule.
func TestPasswordPolicy(t *testing.T) {
	for _, pw := range []string{
		"aaaaaaaaaaaa", "123456789012", "あいうえ", "パスワード", "abcdefghijkl", "qwertyuiopas", "121212121212",
		"password1234", "Password!!!!", "dragon123456", "iloveyou2026", "admin-of-the-office", "mamori-server-2026",
		"short", strings.Repeat("長", MaxPasswordChars+1), "tab\there1234567",
	} {
		if err := CheckPasswordPolicy("admin", pw); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q accepted", pw)
		}
	}
	for _, pw := range []string{
		"correct horse battery staple", "個人情報は鍵付きの棚に保管", "tsukimi-dango-kyoto-7", "Zq8#vLp2!mRt",
		strings.Repeat("春はあけぼの", 12), // 72 characters, 216 bytes
	} {
		if err := CheckPasswordPolicy("admin", pw); err != nil {
			t.Errorf("%q refused: %v", pw, err)
		}
	}
}

// Long passphrases count in full: two that differ only after byte 72 are
// different passwords (bcrypt alone would truncate them).
func TestLongPassphrase(t *testing.T) {
	ctx := ctxT(t)
	s := openTest(t)
	long := strings.Repeat("春はあけぼの", 10) // 180 bytes
	if err := s.CreateUser(ctx, "sei", RoleAuditor, long+"やうやう"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckPassword(ctx, "sei", long+"やうやう"); err != nil {
		t.Fatalf("right passphrase: %v", err)
	}
	if _, err := s.CheckPassword(ctx, "sei", long+"しろく"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("passphrase differing after 72 bytes: %v", err)
	}
}
