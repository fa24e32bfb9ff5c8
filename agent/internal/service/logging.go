package service

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/rs/zerolog"
	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/mamori/mamori/agent/internal/uplink"
)

// The agent's log file in the state dir, size-rotated: under a service
// manager stderr may go nowhere (the Windows SCM discards it).
const (
	logDir        = "log"
	logFile       = "agent.log"
	logMaxMB      = 10
	logMaxBackups = 5
)

// LogPath is where `run` writes its log for the state dir dir.
func LogPath(dir string) string { return filepath.Join(dir, logDir, logFile) }

// openLogs makes the run logger: stderr, the rotated file, and the OS log
// (the Windows Application event log, source MamoriAgent) for warn and
// above. A sink that cannot be opened is reported on the others and
// skipped: logging never stops the agent. close flushes and closes them.
func openLogs(stderr io.Writer, dir, level string) (log zerolog.Logger, close func(), err error) {
	lv, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		return zerolog.Nop(), func() {}, usageError{fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", level)}
	}
	writers := []io.Writer{stderr}
	var problems []error
	var closers []func()
	if err := uplink.MakeStateDir(dir); err != nil {
		problems = append(problems, err)
	} else if err := os.MkdirAll(filepath.Join(dir, logDir), 0o700); err != nil {
		problems = append(problems, fmt.Errorf("service: log dir: %w", err))
	} else {
		lj := &lumberjack.Logger{Filename: LogPath(dir), MaxSize: logMaxMB, MaxBackups: logMaxBackups}
		writers = append(writers, lj)
		closers = append(closers, func() { lj.Close() })
	}
	if w, err := systemLog(); err != nil {
		problems = append(problems, err)
	} else if w != nil {
		writers = append(writers, warnAndAbove{w})
		closers = append(closers, func() { w.Close() })
	}
	log = zerolog.New(zerolog.MultiLevelWriter(writers...)).Level(lv).With().Timestamp().Logger()
	for _, p := range problems {
		log.Warn().Err(p).Msg("service: a log destination is not available")
	}
	return log, func() {
		for _, c := range closers {
			c()
		}
	}, nil
}

// systemLog opens the OS log sink; tests replace it to see what reaches it.
var systemLog = openSystemLog

// levelWriteCloser is an OS log taking whole zerolog lines by level.
type levelWriteCloser interface {
	zerolog.LevelWriter
	io.Closer
}

// warnAndAbove passes only warn, error, fatal and panic lines on.
type warnAndAbove struct{ w levelWriteCloser }

func (f warnAndAbove) Write(p []byte) (int, error) { return len(p), nil }

func (f warnAndAbove) WriteLevel(l zerolog.Level, p []byte) (int, error) {
	if l < zerolog.WarnLevel || l == zerolog.NoLevel {
		return len(p), nil
	}
	return f.w.WriteLevel(l, p)
}
