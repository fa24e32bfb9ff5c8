package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/app"
)

// Every start's banner shows the CA hash that agents' --ca-hash and the
// MSI's CAHASH need (it is public); the bootstrap enroll token only the
// first start's.
func TestBannerCAHashEveryStart(t *testing.T) {
	dir := t.TempDir()
	cfg := app.Config{DataDir: dir, Listen: "127.0.0.1:0", Hostnames: []string{"127.0.0.1"}, Log: zerolog.Nop()}
	srv, err := app.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for _, tc := range []struct {
		name        string
		join, first bool
	}{{"first start", false, true}, {"later start", false, false}, {"joined server", true, false}} {
		var out bytes.Buffer
		p := &program{cfg: cfg, out: &out}
		p.cfg.Join = tc.join
		p.printBanner(srv, tc.first)
		if !strings.Contains(out.String(), srv.CAFingerprint()) {
			t.Errorf("%s: no CA hash %s in the banner:\n%s", tc.name, srv.CAFingerprint(), out.String())
		}
		if strings.Contains(out.String(), srv.EnrollToken()) != tc.first {
			t.Errorf("%s: enroll token shown: %v, want %v:\n%s", tc.name, !tc.first, tc.first, out.String())
		}
	}
}
