package host

import (
	"context"
	"fmt"
	"strings"
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
	if len(out) == 0 {
		// No session names its user (Wine; a WTS service that is off): the
		// owners of the desktop shells are the logged-on users.
		return shellUsers(ctx)
	}
	return out, nil
}

// shellUsers lists the owners of explorer.exe processes, one per session.
func shellUsers(ctx context.Context) ([]User, error) {
	snap, err := windows.CreateToolhelp32Snapshot(windows.TH32CS_SNAPPROCESS, 0)
	if err != nil {
		return nil, fmt.Errorf("CreateToolhelp32Snapshot: %w", err)
	}
	defer windows.CloseHandle(snap)
	out := []User{}
	seen := map[string]bool{}
	var pe windows.ProcessEntry32
	pe.Size = uint32(unsafe.Sizeof(pe))
	for err = windows.Process32First(snap, &pe); err == nil; err = windows.Process32Next(snap, &pe) {
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		if !strings.EqualFold(windows.UTF16ToString(pe.ExeFile[:]), "explorer.exe") {
			continue
		}
		u, ok := processUser(pe.ProcessID)
		if !ok || seen[u.Domain+`\`+u.Name+fmt.Sprint(u.Session)] {
			continue
		}
		seen[u.Domain+`\`+u.Name+fmt.Sprint(u.Session)] = true
		out = append(out, u)
	}
	return out, nil
}

// processUser is the account a process runs as, with its session.
func processUser(pid uint32) (User, bool) {
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, pid)
	if err != nil {
		return User{}, false
	}
	defer windows.CloseHandle(h)
	var tok windows.Token
	if err := windows.OpenProcessToken(h, windows.TOKEN_QUERY, &tok); err != nil {
		return User{}, false
	}
	defer tok.Close()
	tu, err := tok.GetTokenUser()
	if err != nil {
		return User{}, false
	}
	name, domain, _, err := tu.User.Sid.LookupAccount("")
	if err != nil || name == "" {
		return User{}, false
	}
	var session uint32
	_ = windows.ProcessIdToSessionId(pid, &session)
	return User{Name: name, Domain: domain, Session: session, Terminal: "explorer.exe"}, true
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
