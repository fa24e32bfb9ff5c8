package host

import (
	"context"
	"fmt"
	"unsafe"

	"golang.org/x/sys/windows"
)

// WTS_INFO_CLASS values (wtsapi32.h).
const (
	wtsUserName   = 5
	wtsDomainName = 7
)

// loggedOnUsers lists the sessions with a user through the WTS API
// (gopsutil has no Users() on Windows). Works for console and RDP sessions.
func loggedOnUsers(ctx context.Context) ([]User, error) {
	var sessions *windows.WTS_SESSION_INFO
	var count uint32
	if err := windows.WTSEnumerateSessions(0, 0, 1, &sessions, &count); err != nil {
		return nil, fmt.Errorf("WTSEnumerateSessions: %w", err)
	}
	defer windows.WTSFreeMemory(uintptr(unsafe.Pointer(sessions)))
	out := []User{}
	for _, s := range unsafe.Slice(sessions, count) {
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		name, err := sessionString(s.SessionID, wtsUserName)
		if err != nil || name == "" {
			continue // services session 0 and listeners have no user
		}
		domain, _ := sessionString(s.SessionID, wtsDomainName)
		out = append(out, User{
			Name: name, Domain: domain, Session: s.SessionID,
			Terminal: windows.UTF16PtrToString(s.WindowStationName),
		})
	}
	return out, nil
}

func sessionString(session uint32, class uint32) (string, error) {
	var buf *uint16
	var n uint32
	if err := wtsQuerySessionInformation(0, session, class, &buf, &n); err != nil {
		return "", err
	}
	defer windows.WTSFreeMemory(uintptr(unsafe.Pointer(buf)))
	return windows.UTF16PtrToString(buf), nil
}

// SessionUser names the user of a Windows session as DOMAIN\user (user
// alone when the domain is unknown); "" for a session without a user
// (session 0, listeners). It fails when the session does not exist.
func SessionUser(session uint32) (string, error) {
	name, err := sessionString(session, wtsUserName)
	if err != nil {
		return "", fmt.Errorf("host: WTSQuerySessionInformation(%d): %w", session, err)
	}
	if name == "" {
		return "", nil
	}
	if domain, _ := sessionString(session, wtsDomainName); domain != "" {
		return domain + `\` + name, nil
	}
	return name, nil
}
