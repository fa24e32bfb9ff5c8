package service

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"

	"github.com/mamori/mamori/agent/internal/host"
	"github.com/mamori/mamori/agent/internal/session"
	"github.com/mamori/mamori/shared/winservice"
)

// isService is decided once: the answer does not change while we run.
var isService = sync.OnceValue(func() bool {
	ok, err := svc.IsWindowsService()
	return err == nil && ok
})

// runAsService runs the agent under the SCM with our own handler, because
// kardianos's accepts only Stop and Shutdown and drops session changes that
// the screenlock control records.
func runAsService(run func(context.Context) error, log zerolog.Logger) (bool, error) {
	if !isService() {
		return false, nil
	}
	// The MSI could not set these; the agent does at every start, so a
	// repaired or upgraded install gets them back.
	if err := hardenService(); err != nil {
		log.Warn().Err(err).Msg("service: service settings not all applied")
	}
	h := &handler{run: run, log: log}
	if err := svc.Run(ServiceName, h); err != nil {
		return true, fmt.Errorf("service: %w", err)
	}
	return true, h.err
}

type handler struct {
	run func(context.Context) error
	log zerolog.Logger
	err error
}

const accepted = svc.AcceptStop | svc.AcceptShutdown | svc.AcceptSessionChange

// Execute is the SCM loop: stop and shutdown cancel the root context;
// session changes go to session.Default.
func (h *handler) Execute(_ []string, req <-chan svc.ChangeRequest, st chan<- svc.Status) (bool, uint32) {
	st <- svc.Status{State: svc.StartPending}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.run(ctx) }()
	st <- svc.Status{State: svc.Running, Accepts: accepted}
	for {
		select {
		case err := <-done:
			// Ended on its own: an error exit code lets the recovery
			// actions (set for non-crash failures too) restart us.
			h.err = err
			if err != nil {
				h.log.Error().Err(err).Msg("service: agent stopped with an error")
				return false, 1
			}
			return false, 0
		case c := <-req:
			switch c.Cmd {
			case svc.Interrogate:
				st <- c.CurrentStatus
			case svc.Stop, svc.Shutdown:
				st <- svc.Status{State: svc.StopPending}
				cancel()
				h.err = <-done
				return false, 0
			case svc.SessionChange:
				publishSession(session.Default, c.EventType, c.EventData, sessionUser)
			}
		}
	}
}

// sessionKinds maps WTS_SESSION_* codes to session kinds.
var sessionKinds = map[uint32]session.Kind{
	windows.WTS_SESSION_LOCK:   session.Lock,
	windows.WTS_SESSION_UNLOCK: session.Unlock,
	windows.WTS_SESSION_LOGON:  session.Logon,
	windows.WTS_SESSION_LOGOFF: session.Logoff,
}

// sessionUser resolves a session's user; tests replace it (Wine has no WTS sessions).
var sessionUser = host.SessionUser

// publishSession forwards a session change with the session id from its
// WTSSESSION_NOTIFICATION and that session's user, so an RDP or
// fast-user-switching session is not taken for the console's. When the
// notification cannot be read the console session is named, without a user
// (the one an office PC's lock and logon concern most). A user that cannot
// be resolved (a logoff can come after the session is gone) is left empty.
func publishSession(bus *session.Bus, code uint32, data uintptr, lookup func(uint32) (string, error)) {
	kind, ok := sessionKinds[code]
	if !ok {
		return
	}
	now := time.Now()
	c := session.Change{Kind: kind, Time: now}
	b, err := readNotification(data) // first: the buffer is the SCM's, not ours
	id, ok := decodeNotification(b)
	if err != nil || !ok {
		c.SessionID = windows.WTSGetActiveConsoleSessionId()
	} else {
		c.SessionID = id
		c.User, _ = lookup(id)
	}
	bus.Publish(c)
}

// notificationSize is sizeof(WTSSESSION_NOTIFICATION): cbSize, dwSessionId.
const notificationSize = 8

// readNotification copies the WTSSESSION_NOTIFICATION at data. x/sys's svc
// hands EventData over after its HandlerEx callback has returned
// (golang/go#65832), when the SCM's buffer may already be freed:
// ReadProcessMemory turns an unmapped address into an error instead of a
// crash, and decodeNotification's cbSize check rejects a reused one.
func readNotification(data uintptr) ([]byte, error) {
	if data == 0 {
		return nil, fmt.Errorf("service: session change without event data")
	}
	b := make([]byte, notificationSize)
	var n uintptr
	if err := windows.ReadProcessMemory(windows.CurrentProcess(), data, &b[0], uintptr(len(b)), &n); err != nil {
		return nil, fmt.Errorf("service: read WTSSESSION_NOTIFICATION: %w", err)
	}
	return b[:n], nil
}

// decodeNotification returns dwSessionId of a WTSSESSION_NOTIFICATION
// (little-endian DWORDs), ok only when cbSize is the structure's size.
func decodeNotification(b []byte) (uint32, bool) {
	if len(b) < notificationSize || binary.LittleEndian.Uint32(b) != notificationSize {
		return 0, false
	}
	id := binary.LittleEndian.Uint32(b[4:])
	return id, id != 0xFFFFFFFF // WTS's "no session"
}

// hardenService: the agent starts late (delayed auto start) so that the
// PC's boot is not slowed by it.
func hardenService() error { return winservice.Harden(ServiceName, true) }

// processAlive says whether pid runs: a process that exited has an exit
// code other than STILL_ACTIVE, or no longer opens (invalid parameter).
// known is false when it cannot tell (access denied).
func processAlive(pid int) (alive, known bool) {
	if pid <= 0 {
		return false, false
	}
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, uint32(pid))
	if err != nil {
		if errors.Is(err, windows.ERROR_INVALID_PARAMETER) {
			return false, true
		}
		return false, false
	}
	defer windows.CloseHandle(h)
	var code uint32
	if err := windows.GetExitCodeProcess(h, &code); err != nil {
		return false, false
	}
	const stillActive = 259 // STILL_ACTIVE
	return code == stillActive, true
}
