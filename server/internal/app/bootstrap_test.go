package app_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/app"
	"github.com/mamori/mamori/server/internal/state"
)

// TestRefusedStartLeavesNoSecrets: a first start that fails (here: its
// event store cannot be opened) used to leave a working admin token and
// enroll token behind, in the data dir and in etcd. Now the secrets are
// made only once every check has passed.
func TestRefusedStartLeavesNoSecrets(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(blocker, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := app.Start(context.Background(), app.Config{DataDir: dir, Listen: "127.0.0.1:0", Hostnames: []string{"127.0.0.1"},
		EventsDSN: filepath.Join(blocker, "events.db"), Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel)})
	if err == nil {
		t.Fatal("start with an unopenable event store succeeded")
	}
	for _, f := range []string{app.FileEnrollToken, app.FileAdminToken, app.FileAdminPassword} {
		if _, err := os.Stat(filepath.Join(dir, f)); !os.IsNotExist(err) {
			t.Errorf("%s exists after a refused start (%v)", f, err)
		}
	}
	st, err := state.Open(context.Background(), state.Config{DataDir: dir, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ets, _ := st.ListEnrollTokens(context.Background())
	ats, _ := st.ListAPITokens(context.Background())
	st.Close()
	if len(ets)+len(ats) != 0 {
		t.Fatalf("tokens in etcd after a refused start: %d enroll, %d api", len(ets), len(ats))
	}
	srv := start(t, dir)
	defer srv.Close()
	if srv.AdminToken() == "" || srv.EnrollToken() == "" {
		t.Fatal("no secrets after a good start")
	}
}
