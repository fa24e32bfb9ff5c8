package keyring

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"

	"golang.org/x/crypto/chacha20poly1305"
)

// EnvKEK is the environment variable that can carry the key-encryption key
// instead of a file.
const EnvKEK = "MAMORI_KEK"

// kekBytes is the size of a key-encryption key: 256 random bits.
const kekBytes = 32

// KEK is a site's key-encryption key: it seals the shared keys stored in
// etcd. Its ID, derived from it one-way, is stored next to what it sealed, so
// a node given another key says so instead of failing to decrypt.
type KEK struct {
	aead cipher.AEAD
	id   string
}

// ID names the key without revealing it (16 hex digits).
func (k *KEK) ID() string { return k.id }

// NewKEKText returns a fresh key-encryption key as written to a KEK file or
// MAMORI_KEK: 32 random bytes in standard base64.
func NewKEKText() string {
	b := make([]byte, kekBytes)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.StdEncoding.EncodeToString(b)
}

// ParseKEK reads a key-encryption key: 32 bytes in standard base64,
// surrounding white space ignored.
func ParseKEK(text string) (*KEK, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(text))
	if err != nil || len(raw) != kekBytes {
		return nil, fmt.Errorf("keyring: a key-encryption key is %d random bytes in base64 (make one with: mamori-server kek new, or openssl rand -base64 32)", kekBytes)
	}
	// Separate keys for sealing and for the id, so the id says nothing
	// about the sealing key.
	sealKey, err := hkdf.Key(sha256.New, raw, nil, "mamori keyring v1 xchacha20poly1305", chacha20poly1305.KeySize)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	idKey, err := hkdf.Key(sha256.New, raw, nil, "mamori keyring v1 key id", 8)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	aead, err := chacha20poly1305.NewX(sealKey)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	return &KEK{aead: aead, id: hex.EncodeToString(idKey)}, nil
}

// ReadKEKFile reads a key-encryption key from a file that only its owner
// can read (mode 0600 or tighter on Unix; on Windows its ACL is the
// operator's, as for the data dir).
func ReadKEKFile(path string) (*KEK, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("keyring: key-encryption key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("keyring: key-encryption key file %s is not a regular file", path)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("keyring: key-encryption key file %s is open to others (mode %#o): chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keyring: key-encryption key file: %w", err)
	}
	k, err := ParseKEK(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// LoadKEK returns the key-encryption key from path when it is set, else from
// the value of MAMORI_KEK, else nil (no KEK: keys stay in the data dir).
// Both at once is refused: which one wins would be a guess.
func LoadKEK(path, env string) (*KEK, error) {
	switch {
	case path != "" && env != "":
		return nil, errors.New("keyring: the key-encryption key is given both by file and by " + EnvKEK + ": give one")
	case path != "":
		return ReadKEKFile(path)
	case env != "":
		k, err := ParseKEK(env)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvKEK, err)
		}
		return k, nil
	}
	return nil, nil
}
