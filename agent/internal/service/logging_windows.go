package service

import (
	"strings"

	"github.com/rs/zerolog"
	"golang.org/x/sys/windows/svc/eventlog"
)

// systemLogName is what status names as the OS log.
var systemLogName = "Windows Application event log, source " + ServiceName + " (warnings and errors)"

// eventLogWriter writes to the Application event log under the source the
// MSI registers (ServiceName, EventCreate.exe as message file).
type eventLogWriter struct{ l *eventlog.Log }

// openSystemLog opens the Application event log source; an unregistered
// source is not an error: Windows then shows the text with a notice.
func openSystemLog() (levelWriteCloser, error) {
	l, err := eventlog.Open(ServiceName)
	if err != nil {
		return nil, err
	}
	return eventLogWriter{l}, nil
}

func (w eventLogWriter) Write(p []byte) (int, error) { return w.WriteLevel(zerolog.InfoLevel, p) }

// WriteLevel logs one JSON line; event id 1 (EventCreate.exe's ids 1-1000
// carry the text as is).
func (w eventLogWriter) WriteLevel(l zerolog.Level, p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	var err error
	switch {
	case l >= zerolog.ErrorLevel:
		err = w.l.Error(1, msg)
	case l == zerolog.WarnLevel:
		err = w.l.Warning(1, msg)
	default:
		err = w.l.Info(1, msg)
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

func (w eventLogWriter) Close() error { return w.l.Close() }
