package winservice

import (
	"errors"
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc/mgr"
)

// recoveryActions restart after 5 s, 30 s and 60 s; the count resets after
// a day without failure.
var recoveryActions = []mgr.RecoveryAction{
	{Type: mgr.ServiceRestart, Delay: 5 * time.Second},
	{Type: mgr.ServiceRestart, Delay: 30 * time.Second},
	{Type: mgr.ServiceRestart, Delay: 60 * time.Second},
}

const recoveryReset = 24 * 60 * 60 // seconds

// Harden sets on service name what the MSI (wixl has no ServiceConfig) and
// kardianos cannot: a quoted ImagePath, three restart actions also for
// exits with an error code, and, with delayedStart, delayed auto start.
// Each step is tried; the errors of those that failed are returned
// together (Wine, for one, refuses the last two).
func Harden(name string, delayedStart bool) error {
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("winservice: %w", err)
	}
	defer m.Disconnect()
	s, err := m.OpenService(name)
	if err != nil {
		return fmt.Errorf("winservice: open %s: %w", name, err)
	}
	defer s.Close()
	var errs []error
	if path, err := binaryPath(s.Handle); err != nil {
		errs = append(errs, fmt.Errorf("read ImagePath: %w", err))
	} else if q := QuoteImagePath(path); q != path {
		nc := uint32(windows.SERVICE_NO_CHANGE)
		if err := windows.ChangeServiceConfig(s.Handle, nc, nc, nc, windows.StringToUTF16Ptr(q),
			nil, nil, nil, nil, nil, nil); err != nil {
			errs = append(errs, fmt.Errorf("quote ImagePath: %w", err))
		}
	}
	if err := s.SetRecoveryActions(recoveryActions, recoveryReset); err != nil {
		errs = append(errs, fmt.Errorf("recovery actions: %w", err))
	} else if err := s.SetRecoveryActionsOnNonCrashFailures(true); err != nil {
		// Without this, an exit with an error code (not a crash) is
		// "stopped" and never restarted.
		errs = append(errs, fmt.Errorf("recovery on non-crash failures: %w", err))
	}
	if delayedStart {
		info := windows.SERVICE_DELAYED_AUTO_START_INFO{IsDelayedAutoStartUp: 1}
		if err := windows.ChangeServiceConfig2(s.Handle, windows.SERVICE_CONFIG_DELAYED_AUTO_START_INFO,
			(*byte)(unsafe.Pointer(&info))); err != nil {
			errs = append(errs, fmt.Errorf("delayed auto start: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("winservice: %s: %w", name, err)
	}
	return nil
}

// binaryPath reads the service's command line with QueryServiceConfig
// alone: mgr's Config also asks QueryServiceConfig2 for the description,
// which some SCMs (Wine's) refuse.
func binaryPath(h windows.Handle) (string, error) {
	var need uint32
	buf := make([]byte, 1024)
	for {
		cfg := (*windows.QUERY_SERVICE_CONFIG)(unsafe.Pointer(&buf[0]))
		err := windows.QueryServiceConfig(h, cfg, uint32(len(buf)), &need)
		if err == nil {
			return windows.UTF16PtrToString(cfg.BinaryPathName), nil
		}
		if err != windows.ERROR_INSUFFICIENT_BUFFER || need <= uint32(len(buf)) {
			return "", err
		}
		buf = make([]byte, need)
	}
}

// Self returns the name of the service this process runs as: one program
// can be installed under more than one name (the server's MSI installs
// MamoriServer, its install command mamori-server), and kardianos does not
// pass on the name the SCM started us with.
func Self() (string, error) {
	m, err := mgr.Connect()
	if err != nil {
		return "", fmt.Errorf("winservice: %w", err)
	}
	defer m.Disconnect()
	var need, n uint32
	var buf []byte
	for {
		var p *byte
		if len(buf) > 0 {
			p = &buf[0]
		}
		err = windows.EnumServicesStatusEx(m.Handle, windows.SC_ENUM_PROCESS_INFO, windows.SERVICE_WIN32,
			windows.SERVICE_ACTIVE, p, uint32(len(buf)), &need, &n, nil, nil)
		if err == nil {
			break
		}
		if err != windows.ERROR_MORE_DATA || need <= uint32(len(buf)) {
			return "", fmt.Errorf("winservice: list services: %w", err)
		}
		buf = make([]byte, need)
	}
	pid := windows.GetCurrentProcessId()
	if n > 0 {
		for _, s := range unsafe.Slice((*windows.ENUM_SERVICE_STATUS_PROCESS)(unsafe.Pointer(&buf[0])), int(n)) {
			if s.ServiceStatusProcess.ProcessId == pid {
				return windows.UTF16PtrToString(s.ServiceName), nil
			}
		}
	}
	return "", fmt.Errorf("winservice: process %d is not a running service", pid)
}
