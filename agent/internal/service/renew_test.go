package service

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/agent/internal/spool"
	"github.com/mamori/mamori/agent/internal/uplink"
)

// TestRenewIfDue: a certificate that is not due is left alone; a due one
// whose server cannot be reached stays in use, unchanged on disk, and the
// failure is recorded as agent.cert_renew_failed for the server to see later.
func TestRenewIfDue(t *testing.T) {
	dir := writeIdentity(t) // certificate lives 2 h; its server is not there
	id, err := uplink.LoadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(filepath.Join(dir, FileSpool), spool.Options{Agent: id.State.AgentID, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	r := &Runtime{opt: Options{StateDir: dir, Log: zerolog.Nop()}, id: id, spool: sp,
		servers: uplink.NewServerList([]string{id.State.Server})}
	before, _ := os.ReadFile(filepath.Join(dir, uplink.FileCert))
	leaf, err := id.Leaf()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	r.renewIfDue(ctx, time.Now()) // an hour of two left: not due
	if evs, _ := sp.Peek(10); len(evs) != 0 {
		t.Fatalf("a certificate not due caused %v", evs)
	}
	r.renewIfDue(ctx, leaf.NotAfter.Add(-time.Minute))
	evs, _ := sp.Peek(10)
	if len(evs) != 1 || evs[0].Type != "agent.cert_renew_failed" || evs[0].Attrs["serial"] != leaf.SerialNumber.String() {
		t.Fatalf("failed renewal recorded as %v", evs)
	}
	after, _ := os.ReadFile(filepath.Join(dir, uplink.FileCert))
	if string(after) != string(before) || id.Certificate() != &id.Cert {
		t.Fatal("a failed renewal changed the certificate")
	}
}
