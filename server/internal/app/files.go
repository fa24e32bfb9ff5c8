package app

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log"
	"os"
	"strings"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/state"
	"github.com/mamori/mamori/shared/securefs"
)

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
