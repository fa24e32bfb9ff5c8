package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/rs/zerolog"
	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/mgr"

	"github.com/mamori/mamori/agent/internal/session"
)

// TestInstallUninstall installs the service through kardianos, checks what
// the SCM holds (LocalSystem, auto start, run arguments, our recovery
// actions) and uninstalls it. Starting it is not tested: Wine's SCM cannot.
func TestInstallUninstall(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	var out, errb bytes.Buffer
	Main([]string{"uninstall"}, nil, &out, &errb) // a leftover from an interrupted run
	out.Reset()
	errb.Reset()
	code := Main([]string{"install", "--state-dir", dir}, nil, &out, &errb)
	// Wine has no ChangeServiceConfig2 ("Invalid level"): the service is
	// installed but the recovery actions cannot be set there.
	wineNoRecovery := underWine() && code == 1 && strings.Contains(errb.String(), "not all settings applied")
	if code != 0 && !wineNoRecovery {
		t.Fatalf("install: exit %d: %s", code, errb.String())
	}
	t.Cleanup(func() {
		var o, e bytes.Buffer
		Main([]string{"uninstall"}, nil, &o, &e)
	})
	m, err := mgr.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Disconnect()
	s, err := m.OpenService(ServiceName)
	if err != nil {
		t.Fatalf("service not installed: %v", err)
	}
	cfg, err := queryConfig(s)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DisplayName != ServiceDisplayName || cfg.StartType != mgr.StartAutomatic || cfg.ServiceType != windows.SERVICE_WIN32_OWN_PROCESS {
		t.Errorf("config %+v", cfg)
	}
	if cfg.ServiceStartName != "" && !strings.EqualFold(cfg.ServiceStartName, "LocalSystem") {
		t.Errorf("runs as %q, want LocalSystem", cfg.ServiceStartName)
	}
	if !strings.Contains(cfg.BinaryPathName, "run") || !strings.Contains(cfg.BinaryPathName, dir) {
		t.Errorf("command line %q", cfg.BinaryPathName)
	}
	if wineNoRecovery {
		t.Log("Wine cannot set service recovery actions (ChangeServiceConfig2); checked on real Windows only")
	} else if acts, err := s.RecoveryActions(); err != nil {
		t.Fatal(err)
	} else if len(acts) != 3 || acts[0].Delay != 5*time.Second || acts[2].Delay != 60*time.Second || acts[1].Type != mgr.ServiceRestart {
		t.Errorf("recovery actions %+v", acts)
	} else if on, err := s.RecoveryActionsOnNonCrashFailures(); err != nil || !on {
		t.Errorf("non-crash failures: %v %v", on, err)
	}
	s.Close()
	if code := Main([]string{"uninstall"}, nil, &out, &errb); code != 0 {
		t.Fatalf("uninstall: exit %d: %s", code, errb.String())
	}
	if s, err := m.OpenService(ServiceName); err == nil {
		s.Close()
		t.Fatal("service still there after uninstall")
	}
}

func TestDefaultStateDirWindows(t *testing.T) {
	t.Setenv("ProgramData", `D:\PD`)
	if d := DefaultStateDir(); d != `D:\PD\Mamori` {
		t.Fatalf("got %q", d)
	}
	os.Unsetenv("ProgramData")
	if d := DefaultStateDir(); d != `C:\ProgramData\Mamori` {
		t.Fatalf("got %q", d)
	}
}

// underWine reports whether ntdll is Wine's (it exports wine_get_version).
func underWine() bool {
	return windows.NewLazySystemDLL("ntdll.dll").NewProc("wine_get_version").Find() == nil
}

// queryConfig is QueryServiceConfig alone: mgr.Service.Config also calls
// QueryServiceConfig2, which Wine lacks.
func queryConfig(s *mgr.Service) (mgr.Config, error) {
	n := uint32(1024)
	for {
		buf := make([]byte, n)
		p := (*windows.QUERY_SERVICE_CONFIG)(unsafe.Pointer(&buf[0]))
		err := windows.QueryServiceConfig(s.Handle, p, n, &n)
		if err == windows.ERROR_INSUFFICIENT_BUFFER {
			continue
		}
		if err != nil {
			return mgr.Config{}, err
		}
		return mgr.Config{ServiceType: p.ServiceType, StartType: p.StartType,
			BinaryPathName:   windows.UTF16PtrToString(p.BinaryPathName),
			DisplayName:      windows.UTF16PtrToString(p.DisplayName),
			ServiceStartName: windows.UTF16PtrToString(p.ServiceStartName)}, nil
	}
}

// TestServiceHandler drives the SCM handler as the SCM would: it reports
// running with session changes accepted, forwards lock/unlock to the
// session bus, and a stop cancels the agent's context.
func TestServiceHandler(t *testing.T) {
	defer func(f func(uint32) (string, error)) { sessionUser = f }(sessionUser)
	sessionUser = func(id uint32) (string, error) { return fmt.Sprintf(`PC\user%d`, id), nil }
	sub := session.Default.Subscribe()
	defer session.Default.Unsubscribe(sub)
	stopped := make(chan struct{})
	h := &handler{run: func(ctx context.Context) error { <-ctx.Done(); close(stopped); return nil }}
	req := make(chan svc.ChangeRequest)
	st := make(chan svc.Status, 10)
	exited := make(chan uint32, 1)
	go func() { _, code := h.Execute(nil, req, st); exited <- code }()
	if s := <-st; s.State != svc.StartPending {
		t.Fatalf("first status %v", s.State)
	}
	if s := <-st; s.State != svc.Running || s.Accepts&svc.AcceptSessionChange == 0 || s.Accepts&svc.AcceptStop == 0 {
		t.Fatalf("running status %+v", s)
	}
	for _, c := range []struct {
		code uint32
		kind session.Kind
	}{{windows.WTS_SESSION_LOCK, session.Lock}, {windows.WTS_SESSION_UNLOCK, session.Unlock}, {windows.WTS_SESSION_LOGON, session.Logon}} {
		n := &windows.WTSSESSION_NOTIFICATION{Size: 8, SessionID: 2}
		req <- svc.ChangeRequest{Cmd: svc.SessionChange, EventType: c.code, EventData: uintptr(unsafe.Pointer(n))}
		select {
		case got := <-sub:
			if got.Kind != c.kind || got.SessionID != 2 || got.User != `PC\user2` {
				t.Fatalf("published %+v, want %v in session 2 by PC\\user2", got, c.kind)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%v not published", c.kind)
		}
		runtime.KeepAlive(n)
	}
	req <- svc.ChangeRequest{Cmd: svc.SessionChange, EventType: 0x1} // WTS_CONSOLE_CONNECT: not ours
	req <- svc.ChangeRequest{Cmd: svc.Stop}
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("stop did not cancel the agent")
	}
	if code := <-exited; code != 0 {
		t.Fatalf("exit code %d", code)
	}
	select {
	case got := <-sub:
		t.Fatalf("unexpected change %v", got)
	default:
	}
}

// TestServiceHandlerFailureExitCode: an agent that stops by itself with an
// error exits with a code, so the non-crash recovery actions restart it.
func TestServiceHandlerFailureExitCode(t *testing.T) {
	h := &handler{run: func(context.Context) error { return errors.New("spool: disk gone") }}
	req := make(chan svc.ChangeRequest)
	st := make(chan svc.Status, 10)
	if _, code := h.Execute(nil, req, st); code != 1 || h.err == nil {
		t.Fatalf("exit code %d err %v", code, h.err)
	}
}

func TestDecodeNotification(t *testing.T) {
	for _, c := range []struct {
		b  []byte
		id uint32
		ok bool
	}{
		{[]byte{8, 0, 0, 0, 3, 0, 0, 0}, 3, true},
		{[]byte{8, 0, 0, 0, 0x2a, 0x01, 0, 0}, 298, true},
		{[]byte{8, 0, 0, 0, 0, 0, 0, 0}, 0, true},              // session 0 is a real session
		{[]byte{8, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}, 0, false}, // no session
		{[]byte{0x10, 0, 0, 0, 3, 0, 0, 0}, 0, false},          // not a notification (reused buffer)
		{[]byte{8, 0, 0, 0, 3}, 0, false},                      // short read
		{nil, 0, false},
	} {
		id, ok := decodeNotification(c.b)
		if ok != c.ok || ok && id != c.id {
			t.Errorf("%x: %d %v, want %d %v", c.b, id, ok, c.id, c.ok)
		}
	}
}

// TestPublishSessionFromEventData: the session id comes from the
// WTSSESSION_NOTIFICATION, the user from a lookup of that session (faked:
// Wine has no WTS sessions to query); data that cannot be read names the
// console session without a user, and never crashes.
func TestPublishSessionFromEventData(t *testing.T) {
	users := map[uint32]string{3: `PC\yamada`}
	lookup := func(id uint32) (string, error) {
		if u, ok := users[id]; ok {
			return u, nil
		}
		return "", errors.New("no such session")
	}
	var bus session.Bus
	sub := bus.Subscribe()
	publish := func(code uint32, data uintptr) session.Change {
		t.Helper()
		publishSession(&bus, code, data, lookup)
		select {
		case c := <-sub:
			return c
		default:
			t.Fatalf("code %d not published", code)
			return session.Change{}
		}
	}
	n := &windows.WTSSESSION_NOTIFICATION{Size: 8, SessionID: 3}
	if c := publish(windows.WTS_SESSION_LOCK, uintptr(unsafe.Pointer(n))); c.Kind != session.Lock || c.SessionID != 3 || c.User != `PC\yamada` || c.Time.IsZero() {
		t.Fatalf("lock: %+v", c)
	}
	n.SessionID = 7 // an RDP session whose user cannot be found (already logged off)
	if c := publish(windows.WTS_SESSION_LOGOFF, uintptr(unsafe.Pointer(n))); c.Kind != session.Logoff || c.SessionID != 7 || c.User != "" {
		t.Fatalf("logoff: %+v", c)
	}
	console := windows.WTSGetActiveConsoleSessionId()
	n.Size = 0x55 // the buffer was reused: not a notification any more
	if c := publish(windows.WTS_SESSION_UNLOCK, uintptr(unsafe.Pointer(n))); c.SessionID != console || c.User != "" {
		t.Fatalf("bad cbSize: %+v, want console session %d", c, console)
	}
	runtime.KeepAlive(n)
	for _, bad := range []uintptr{0, 0x10} { // no data; an address never mapped
		if c := publish(windows.WTS_SESSION_LOGON, bad); c.Kind != session.Logon || c.SessionID != console || c.User != "" {
			t.Fatalf("data %#x: %+v", bad, c)
		}
	}
	publishSession(&bus, 0x1, uintptr(unsafe.Pointer(n)), lookup) // WTS_CONSOLE_CONNECT: not ours
	select {
	case c := <-sub:
		t.Fatalf("console connect published: %+v", c)
	default:
	}
}

// The Application event log sink opens under the service's source and takes
// a warning and an error (Wine accepts the calls but keeps no log to read
// back; on Windows they show in Event Viewer under source MamoriAgent).
func TestEventLogWriter(t *testing.T) {
	w, err := openSystemLog()
	if err != nil {
		t.Fatalf("open the Application event log as %s: %v", ServiceName, err)
	}
	defer w.Close()
	for _, l := range []zerolog.Level{zerolog.WarnLevel, zerolog.ErrorLevel} {
		line := []byte(`{"level":"` + l.String() + `","message":"mamori-agent test: event log sink"}` + "\n")
		if n, err := w.WriteLevel(l, line); err != nil || n != len(line) {
			t.Fatalf("%s line: wrote %d of %d: %v", l, n, len(line), err)
		}
	}
}
