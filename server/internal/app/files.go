package app

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/rs/zerolog"
	"golang.org/x/mod/sumdb/note"

	"github.com/mamori/mamori/server/internal/state"
	"github.com/mamori/mamori/shared/securefs"
)

func writeIfMissing(path string, data []byte, perm os.FileMode) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("app: %w", err)
	}
	return securefs.WriteFile(path, data, perm)
}

// loadOrCreateSecret returns the secret in path, creating a random one
// (private: securefs) when the file does not exist.
func loadOrCreateSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", fmt.Errorf("app: %s is empty; delete it to have a new secret made", path)
		}
		return v, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("app: %w", err)
	}
	v, err := state.NewToken()
	if err != nil {
		return "", fmt.Errorf("app: %w", err)
	}
	if err := securefs.WriteSecretFile(path, []byte(v+"\n")); err != nil {
		return "", fmt.Errorf("app: %w", err)
	}
	return v, nil
}

// loadOrCreateLogKey makes the Ed25519 note key pair that signs log
// checkpoints (log-key, 0600) and verifies them (log-key.pub), and returns
// the verifier key.
func loadOrCreateLogKey(dir, origin string) (skey, vkey string, err error) {
	skPath, vkPath := filepath.Join(dir, FileLogKey), filepath.Join(dir, FileLogKeyPub)
	sk, err := os.ReadFile(skPath)
	if errors.Is(err, fs.ErrNotExist) {
		skey, vkey, err = note.GenerateKey(rand.Reader, origin)
		if err != nil {
			return "", "", fmt.Errorf("app: log key: %w", err)
		}
		if err := securefs.WriteSecretFile(skPath, []byte(skey+"\n")); err != nil {
			return "", "", fmt.Errorf("app: log key: %w", err)
		}
		if err := securefs.WriteFile(vkPath, []byte(vkey+"\n"), 0o644); err != nil {
			return "", "", err
		}
		return skey, vkey, nil
	}
	if err != nil {
		return "", "", fmt.Errorf("app: log key: %w", err)
	}
	skey = strings.TrimSpace(string(sk))
	if _, err := note.NewSigner(skey); err != nil {
		return "", "", fmt.Errorf("app: %s: %w", skPath, err)
	}
	vkey, err = verifierFromSigner(skey)
	if err != nil {
		return "", "", fmt.Errorf("app: %s: %w", skPath, err)
	}
	if err := writeIfMissing(vkPath, []byte(vkey+"\n"), 0o644); err != nil {
		return "", "", err
	}
	return skey, vkey, nil
}

// verifierFromSigner derives the verifier key from a note signer key
// ("PRIVATE+KEY+name+hash+base64(1 || seed)").
func verifierFromSigner(skey string) (string, error) {
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 {
		return "", errors.New("malformed signer key")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return "", errors.New("malformed signer key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	return note.NewEd25519VerifierKey(parts[2], pub)
}

// newStdLog routes net/http's internal errors (TLS handshake failures,
// mostly) to zerolog at debug level: scanners would flood the log.
func newStdLog(l zerolog.Logger) *log.Logger {
	return log.New(stdWriter{l.With().Str("component", "http").Logger()}, "", 0)
}

type stdWriter struct{ l zerolog.Logger }

func (w stdWriter) Write(p []byte) (int, error) {
	w.l.Debug().Msg(string(bytes.TrimSpace(p)))
	return len(p), nil
}
