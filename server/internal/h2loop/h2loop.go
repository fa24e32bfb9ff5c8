// Package h2loop serves agents' HTTP/2 connections from one epoll loop, so
// that an idle connection and a held policy long-poll cost no goroutine and
// no per-request buffers.
//
// Go's net/http keeps two goroutines per HTTP/2 connection (its serve loop
// and its frame reader) and a third per request in progress, plus a 4 KiB
// response buffer per stream: some 59 KiB live per agent holding a
// long-poll, 577 MiB for 10,000 agents (docs/ingest.md). Here a connection
// is a TLS state, its HPACK tables and a few hundred bytes; a parked
// long-poll is its request and a timer. Handlers still run in goroutines,
// only while they run.
//
// The server's accept loop does the TLS handshake as before; a connection
// whose client presented a verified certificate and chose h2 is handed to
// Serve, every other one stays with net/http. The only clients are Mamori's
// agents and its load generator (Go's HTTP/2 transport), so the subset of
// RFC 9113 served is what they use: no server push, no priorities, no
// trailers; anything else is a protocol error that closes the connection.
//
// A handler parks a request with Park instead of blocking; it is run again
// when the channel it named is closed or its time comes. Off Linux, Park
// answers false and handlers block as under net/http.
package h2loop

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"time"

	"github.com/rs/zerolog"
)

// Config is what a Server needs.
type Config struct {
	Handler http.Handler
	// ConnState, if set, is told when a connection becomes active (its
	// first open stream), idle (its last stream ended) and closed, as
	// http.Server's hook is; the net.Conn is the *tls.Conn given to Serve.
	ConnState func(net.Conn, http.ConnState)
	// IdleTimeout closes a connection with no open stream; default 2 min.
	IdleTimeout time.Duration
	// ReadTimeout resets a stream whose headers and body have not all
	// arrived within it; default 2 min.
	ReadTimeout time.Duration
	// MaxBodyBytes refuses (413) a request body larger; default 32 MiB.
	MaxBodyBytes int64
	// BaseContext is the parent of every request's context; default
	// context.Background.
	BaseContext context.Context
	Log         zerolog.Logger
}

type streamKey struct{}

// Arrived is when the request reached the server: a parked request is run
// again later, and a handler measures its waits from this.
func Arrived(r *http.Request) time.Time {
	if st, ok := r.Context().Value(streamKey{}).(*stream); ok {
		return st.arrived
	}
	return time.Now()
}

// Park asks the Server serving r to run its handler again once wake is
// closed or at until, whichever is first, and answers true; the handler
// must then return without writing. It answers false when r is not served
// by a Server (net/http, or off Linux), has a body, or its connection is
// going away: the handler then waits as it would under net/http.
func Park(r *http.Request, wake <-chan struct{}, until time.Time) bool {
	st, ok := r.Context().Value(streamKey{}).(*stream)
	if !ok {
		return false
	}
	return st.c.s.park(st, wake, until)
}

// ServesConn says whether a handshaken TLS connection is one Serve takes:
// HTTP/2 chosen and a verified client certificate.
func ServesConn(cs tls.ConnectionState) bool {
	return cs.NegotiatedProtocol == "h2" && len(cs.VerifiedChains) > 0
}
