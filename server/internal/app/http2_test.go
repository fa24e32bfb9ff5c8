package app_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/http2"

	"github.com/mamori/mamori/server/internal/app"
)

// TestHTTP2SettingsForManyAgents: the server announces the HTTP/2 limits
// that keep an idle agent connection small: 16 KiB frames (the framer
// keeps a read buffer as large as the largest frame it received; at Go's
// default of 1 MiB one batch pinned up to its size per connection),
// bounded receive windows and streams.
func TestHTTP2SettingsForManyAgents(t *testing.T) {
	srv, err := app.Start(context.Background(), app.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0",
		Hostnames: []string{"127.0.0.1"}, Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(srv.CAPEM())
	c, err := tls.Dial("tcp", srv.Addr(), &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("negotiated %q, want h2", p)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	f, err := fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok {
		t.Fatalf("first frame %T, want SETTINGS", f)
	}
	want := map[http2.SettingID]uint32{
		http2.SettingMaxFrameSize:         16 << 10,
		http2.SettingMaxConcurrentStreams: 32,
		http2.SettingInitialWindowSize:    256 << 10,
	}
	for id, v := range want {
		if got, ok := sf.Value(id); !ok || got != v {
			t.Errorf("%v = %d (sent: %v), want %d", id, got, ok, v)
		}
	}
}
