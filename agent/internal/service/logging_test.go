package service

import (
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
)

// fakeSystemLog records the lines handed to the OS log.
type fakeSystemLog struct {
	mu     sync.Mutex
	lines  []string
	closed bool
}

func (f *fakeSystemLog) Write(p []byte) (int, error) { return f.WriteLevel(zerolog.NoLevel, p) }
func (f *fakeSystemLog) WriteLevel(l zerolog.Level, p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lines = append(f.lines, l.String()+" "+strings.TrimSpace(string(p)))
	return len(p), nil
}
func (f *fakeSystemLog) Close() error { f.mu.Lock(); f.closed = true; f.mu.Unlock(); return nil }

// run's logger sends every line at its level to stderr and the rotated file,
// and only warnings and errors to the OS log (the Windows Application event
// log), which is closed with the others.
func TestLogsReachFileAndSystemLogByLevel(t *testing.T) {
	fake := &fakeSystemLog{}
	systemLog = func() (levelWriteCloser, error) { return fake, nil }
	defer func() { systemLog = openSystemLog }()
	dir := t.TempDir()
	var stderr syncWriter
	log, closeLogs, err := openLogs(&stderr, dir, "debug")
	if err != nil {
		t.Fatal(err)
	}
	log.Debug().Msg("m-debug")
	log.Info().Msg("m-info")
	log.Warn().Msg("m-warn")
	log.Error().Msg("m-error")
	closeLogs()

	file, err := os.ReadFile(LogPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"m-debug", "m-info", "m-warn", "m-error"} {
		if !strings.Contains(string(file), m) || !strings.Contains(stderr.String(), m) {
			t.Errorf("%s missing from the log file or stderr", m)
		}
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if len(fake.lines) != 2 || !strings.HasPrefix(fake.lines[0], "warn ") || !strings.Contains(fake.lines[0], "m-warn") ||
		!strings.HasPrefix(fake.lines[1], "error ") || !strings.Contains(fake.lines[1], "m-error") {
		t.Fatalf("OS log got %q, want the warning and the error only", fake.lines)
	}
	if !fake.closed {
		t.Error("OS log not closed")
	}
}

type syncWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
