//go:build linux

package h2loop

import (
	"crypto/tls"
	"encoding/binary"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// TestBadFramesEndTheConnection: each malformed frame a client could send
// ends its connection with GOAWAY and the error RFC 9113 names, and the
// server goes on serving other connections.
func TestBadFramesEndTheConnection(t *testing.T) {
	hs := start(t, http.HandlerFunc(echo), Config{})
	settings := appendFrame(nil, frameSettings, 0, 0, nil)
	for _, c := range []struct {
		name   string
		frames []byte
		code   uint32
	}{
		{"first frame not SETTINGS", appendFrame(nil, framePing, 0, 0, make([]byte, 8)), errProtocol},
		{"DATA on a stream never opened", appendFrame(settings, frameData, flagEndStream, 1, []byte("x")), errProtocol},
		{"HEADERS on an even stream", appendFrame(settings, frameHeaders, flagEndHeaders|flagEndStream, 2, []byte{0x82}), errProtocol},
		{"frame larger than SETTINGS allow", appendFrame(settings, framePing, 0, 0, make([]byte, maxFrameSize+1)), errFrameSize},
		{"CONTINUATION without HEADERS", appendFrame(settings, frameContinuation, flagEndHeaders, 1, []byte{0x82}), errProtocol},
		{"undecodable header block", appendFrame(settings, frameHeaders, flagEndHeaders|flagEndStream, 1, []byte{0xff, 0xff, 0xff, 0xff}), errCompression},
		{"window over 2^31-1", appendUint32Frame(settings, frameWindowUpdate, 0, maxWindow), errFlowControl},
		{"PING of 7 bytes", appendFrame(settings, framePing, 0, 0, make([]byte, 7)), errProtocol},
		{"server push from a client", appendFrame(settings, framePushPromise, flagEndHeaders, 1, make([]byte, 5)), errProtocol},
	} {
		t.Run(c.name, func(t *testing.T) {
			tc, err := tls.Dial("tcp", hs.addr, &tls.Config{RootCAs: hs.pair.pool, Certificates: []tls.Certificate{hs.pair.client},
				NextProtos: []string{"h2"}})
			if err != nil {
				t.Fatal(err)
			}
			defer tc.Close()
			tc.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := tc.Write(append([]byte(clientPreface), c.frames...)); err != nil {
				t.Fatal(err)
			}
			code, ok := readGoAway(t, tc)
			if !ok {
				t.Fatal("connection ended without GOAWAY")
			}
			if code != c.code {
				t.Fatalf("GOAWAY code %d, want %d", code, c.code)
			}
			if _, err := io.ReadAll(tc); err != nil {
				t.Fatalf("connection left open after GOAWAY: %v", err)
			}
		})
	}
	resp, err := hs.client(t).Get(hs.url("/still"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// readGoAway reads frames until a GOAWAY and returns its error code.
func readGoAway(t *testing.T, r io.Reader) (uint32, bool) {
	var hdr [frameHeaderLen]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return 0, false
		}
		n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		p := make([]byte, n)
		if _, err := io.ReadFull(r, p); err != nil {
			return 0, false
		}
		if hdr[3] == frameGoAway && len(p) >= 8 {
			return binary.BigEndian.Uint32(p[4:8]), true
		}
	}
}

// TestIdleConnectionClosed: a connection with no stream for IdleTimeout
// gets GOAWAY and is closed; one holding a parked request is not idle.
func TestIdleConnectionClosed(t *testing.T) {
	wake := make(chan struct{})
	defer close(wake)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/poll" && Park(r, wake, time.Now().Add(time.Minute)) {
			return
		}
		w.Write([]byte("ok"))
	})
	hs := start(t, h, Config{IdleTimeout: 300 * time.Millisecond})
	dial := func() *tls.Conn {
		tc, err := tls.Dial("tcp", hs.addr, &tls.Config{RootCAs: hs.pair.pool, Certificates: []tls.Certificate{hs.pair.client},
			NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatal(err)
		}
		tc.SetDeadline(time.Now().Add(8 * time.Second))
		tc.Write(append([]byte(clientPreface), appendFrame(nil, frameSettings, 0, 0, nil)...))
		return tc
	}
	idle := dial()
	defer idle.Close()
	if code, ok := readGoAway(t, idle); !ok || code != errNo {
		t.Fatalf("idle connection: GOAWAY %v, code %d", ok, code)
	}

	busy := dial()
	defer busy.Close()
	// GET /poll: :method GET (2), :scheme https (7), :path from the static
	// table is "/" only, so a literal; :authority literal.
	block := []byte{0x82, 0x87, 0x04, 0x05, '/', 'p', 'o', 'l', 'l', 0x01, 0x01, 'x'}
	busy.Write(appendFrame(nil, frameHeaders, flagEndHeaders|flagEndStream, 1, block))
	busy.SetDeadline(time.Now().Add(3 * time.Second))
	if _, ok := readGoAway(t, busy); ok {
		t.Fatal("a connection holding a parked request was closed as idle")
	}
}

// TestRapidResetBounded: a client that resets each stream as soon as it
// opens it (CVE-2023-44487) gets no more handlers running at once than
// twice the streams it may open; the rest are refused.
func TestRapidResetBounded(t *testing.T) {
	release := make(chan struct{})
	var running, most atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := running.Add(1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		<-release
		running.Add(-1)
	})
	hs := start(t, h, Config{})
	tc, err := tls.Dial("tcp", hs.addr, &tls.Config{RootCAs: hs.pair.pool, Certificates: []tls.Certificate{hs.pair.client},
		NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	b := append([]byte(clientPreface), appendFrame(nil, frameSettings, 0, 0, nil)...)
	block := []byte{0x82, 0x87, 0x84, 0x01, 0x01, 'x'} // GET https / host x
	for id := uint32(1); id < 2000; id += 2 {
		b = appendFrame(b, frameHeaders, flagEndHeaders|flagEndStream, id, block)
		b = appendUint32Frame(b, frameRSTStream, id, errCancel)
	}
	if _, err := tc.Write(b); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	close(release)
	if m := most.Load(); m == 0 || m > 2*maxStreams {
		t.Fatalf("%d handlers ran at once for 1,000 reset streams, want 1 to %d", m, 2*maxStreams)
	}
}
