package host

import (
	"context"
	"testing"
)

// TestLoggedOnUsersFallback: where no WTS session names its user (Wine),
// the owners of the desktop shell (explorer.exe) are listed instead of
// nothing.
func TestLoggedOnUsersFallback(t *testing.T) {
	shell, err := shellUsers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	us, err := loggedOnUsers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sessions or shells: %+v; shells: %+v", us, shell)
	if len(shell) > 0 && len(us) == 0 {
		t.Fatalf("explorer.exe runs as %+v but no user is listed", shell)
	}
	for _, u := range shell {
		if u.Name == "" || u.Terminal != "explorer.exe" {
			t.Fatalf("shell user %+v", u)
		}
	}
	if len(shell) == 0 {
		t.Skip("no explorer.exe here (a service session without a desktop)")
	}
}
