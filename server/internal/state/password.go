package state

import (
	"bufio"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"
)

// Password rules after NIST SP 800-63B §3.1.1.2 (memorized secrets):
// length counted in characters, not bytes; long passphrases allowed; no
// composition rules; refused when common, repetitive or sequential, or
// when it contains the user's name or the service's.
const (
	MinPasswordChars = 12
	MaxPasswordChars = 128
)

// bcryptMax is the most bytes bcrypt reads; longer passwords are pre-hashed.
const bcryptMax = 72

//go:embed common-passwords.txt
var commonPasswordsText string

var commonPasswords = sync.OnceValue(func() map[string]struct{} {
	m := make(map[string]struct{}, 20000)
	sc := bufio.NewScanner(strings.NewReader(commonPasswordsText))
	for sc.Scan() {
		if l := sc.Text(); l != "" && !strings.HasPrefix(l, "#") {
			m[l] = struct{}{}
		}
	}
	return m
})

// keyboardRuns are sequences people type as passwords.
var keyboardRuns = []string{"qwertyuiopasdfghjklzxcvbnm", "1234567890qwertyuiop", "1qaz2wsx3edc4rfv5tgb6yhn7ujm",
	"abcdefghijklmnopqrstuvwxyz", "zyxwvutsrqponmlkjihgfedcba", "01234567890123456789", "98765432109876543210"}

// CheckPassword reports why password is not acceptable for user name, or
// nil. The reasons are for the person choosing it.
func CheckPasswordPolicy(name, password string) error {
	bad := func(why string) error { return fmt.Errorf("state: %w: password %s", ErrInvalid, why) }
	if !utf8.ValidString(password) {
		return bad("is not valid UTF-8")
	}
	n := utf8.RuneCountInString(password)
	switch {
	case n < MinPasswordChars:
		return bad(fmt.Sprintf("must be at least %d characters (it has %d)", MinPasswordChars, n))
	case n > MaxPasswordChars:
		return bad(fmt.Sprintf("must be at most %d characters", MaxPasswordChars))
	}
	for _, r := range password {
		if unicode.IsControl(r) {
			return bad("must not contain control characters")
		}
	}
	low := strings.ToLower(password)
	if _, ok := commonPasswords()[low]; ok {
		return bad("is on the list of common or breached passwords")
	}
	// "dragon123456", "password!!!!": a listed word padded with digits.
	if core := strings.TrimRightFunc(low, func(r rune) bool { return unicode.IsDigit(r) || unicode.IsPunct(r) || unicode.IsSymbol(r) }); core != low {
		if _, ok := commonPasswords()[core]; ok {
			return bad("is a common password with digits or symbols added")
		}
	}
	if name = strings.ToLower(name); len(name) >= 3 && strings.Contains(low, name) {
		return bad("must not contain the user name")
	}
	if strings.Contains(low, "mamori") || strings.Contains(password, "守り") {
		return bad("must not contain the name of this service")
	}
	if repetitive(low) {
		return bad("is too repetitive or sequential")
	}
	return nil
}

// repetitive reports passwords of few distinct characters ("aaaaaaaaaaaa",
// "121212121212"), a run of one step ("123456789012", "abcdefghijkl") or
// part of a keyboard run ("qwertyuiopas").
func repetitive(s string) bool {
	distinct := map[rune]bool{}
	for _, r := range s {
		distinct[r] = true
	}
	if len(distinct) < 4 {
		return true
	}
	rs := []rune(s)
	step := 0
	for i := 1; i < len(rs); i++ {
		d := rs[i] - rs[i-1]
		if d == 1 || d == -1 || (rs[i-1] == '9' && rs[i] == '0') || (rs[i-1] == '0' && rs[i] == '9') {
			step++
		}
	}
	if step*4 >= (len(rs)-1)*3 {
		return true
	}
	for _, k := range keyboardRuns {
		if strings.Contains(k, s) || strings.Contains(k+k, s) {
			return true
		}
	}
	return false
}

// hashPassword checks the policy for user name and returns the bcrypt hash.
// A password over bcrypt's 72 bytes (e.g. 25 Japanese characters) is
// pre-hashed with SHA-256 so that every character counts; such hashes are
// marked with prehashPrefix.
func hashPassword(name, password string) ([]byte, error) {
	if err := CheckPasswordPolicy(name, password); err != nil {
		return nil, err
	}
	in, prefix := bcryptInput(password, true)
	hash, err := bcrypt.GenerateFromPassword(in, bcrypt.DefaultCost)
	if err != nil {
		return nil, fmt.Errorf("state: hash password: %w", err)
	}
	return append([]byte(prefix), hash...), nil
}

// prehashPrefix marks a hash of the SHA-256 of the password.
const prehashPrefix = "sha256+"

// bcryptInput is what bcrypt hashes for password: itself when it fits, else
// the base64 of its SHA-256 (prefix says which, for new hashes).
func bcryptInput(password string, long bool) ([]byte, string) {
	if !long || len(password) <= bcryptMax {
		return []byte(password), ""
	}
	sum := sha256.Sum256([]byte(password))
	return []byte(base64.StdEncoding.EncodeToString(sum[:])), prehashPrefix
}

// comparePassword checks password against a stored hash of either form.
func comparePassword(stored []byte, password string) error {
	if rest, ok := strings.CutPrefix(string(stored), prehashPrefix); ok {
		in, _ := bcryptInput(password, true)
		return bcrypt.CompareHashAndPassword([]byte(rest), in)
	}
	if len(password) > bcryptMax {
		return bcrypt.ErrMismatchedHashAndPassword // never a prefix match
	}
	return bcrypt.CompareHashAndPassword(stored, []byte(password))
}
