package winservice

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc/mgr"
)

func underWine() bool {
	return windows.NewLazySystemDLL("ntdll.dll").NewProc("wine_get_version").Find() == nil
}

// TestHarden: a service created with an unquoted path under a folder with
// a space (what wixl's MSI leaves, CWE-428) gets its program part quoted,
// its arguments untouched, and the recovery actions; twice is the same.
func TestHarden(t *testing.T) {
	const name = "MamoriWinserviceTest"
	m, err := mgr.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Disconnect()
	if old, err := m.OpenService(name); err == nil { // left by an interrupted run
		old.Delete()
		old.Close()
	}
	unquoted := `C:\Program Files\Mamori Test\mamori-test.exe serve --data-dir "C:\ProgramData\Mamori Test" --listen :8443`
	// windows.CreateService, not mgr's: mgr quotes the path itself.
	h, err := windows.CreateService(m.Handle, windows.StringToUTF16Ptr(name), windows.StringToUTF16Ptr(name),
		windows.SERVICE_ALL_ACCESS, windows.SERVICE_WIN32_OWN_PROCESS, windows.SERVICE_DEMAND_START,
		windows.SERVICE_ERROR_NORMAL, windows.StringToUTF16Ptr(unquoted), nil, nil, nil, nil, nil)
	if err != nil {
		t.Fatalf("create service: %v", err)
	}
	s := &mgr.Service{Name: name, Handle: h}
	t.Cleanup(func() {
		s.Delete()
		s.Close()
	})
	if got, err := binaryPath(h); err != nil || got != unquoted {
		t.Fatalf("before Harden: ImagePath %q, %v; want it unquoted", got, err)
	}
	want := `"C:\Program Files\Mamori Test\mamori-test.exe" serve --data-dir "C:\ProgramData\Mamori Test" --listen :8443`
	for i := range 2 {
		err := Harden(name, true)
		if err != nil {
			// Wine has no ChangeServiceConfig2 levels but the recovery
			// actions themselves ("Invalid level").
			msg := err.Error()
			if !underWine() || strings.Contains(msg, "ImagePath") || strings.Contains(msg, "recovery actions:") {
				t.Fatalf("Harden #%d: %v", i+1, err)
			}
			t.Logf("Harden #%d under Wine: %v", i+1, err)
		}
		if got, err := binaryPath(h); err != nil || got != want {
			t.Fatalf("after Harden #%d: ImagePath %q, %v; want %q", i+1, got, err, want)
		}
		if underWine() {
			continue // it cannot read the actions back, nor set the rest
		}
		acts, err := s.RecoveryActions()
		if err != nil {
			t.Fatal(err)
		}
		if len(acts) != 3 || acts[0].Delay != 5*time.Second || acts[1].Delay != 30*time.Second ||
			acts[2].Delay != 60*time.Second || acts[2].Type != mgr.ServiceRestart {
			t.Errorf("recovery actions %+v", acts)
		}
		if on, err := s.RecoveryActionsOnNonCrashFailures(); err != nil || !on {
			t.Errorf("recovery on non-crash failures: %v %v", on, err)
		}
		if cfg, err := s.Config(); err != nil || !cfg.DelayedAutoStart {
			t.Errorf("delayed auto start: %+v %v", cfg, err)
		}
	}
}

func TestHardenMissingService(t *testing.T) {
	err := Harden("MamoriWinserviceNoSuchService", false)
	if err == nil || !strings.Contains(err.Error(), "MamoriWinserviceNoSuchService") {
		t.Fatalf("Harden of a missing service: %v, want an error naming it", err)
	}
}

// A test binary is no service: Self says so instead of naming another.
func TestSelfNotAService(t *testing.T) {
	if name, err := Self(); err == nil || !strings.Contains(err.Error(), "not a running service") {
		t.Fatalf("Self() = %q, %v; want not a running service", name, err)
	}
}
