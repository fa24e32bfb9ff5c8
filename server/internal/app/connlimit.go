package app

import (
	"container/list"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/h2loop"
)

// connLimiter caps the open connections of the listener well below the
// process's file descriptor limit, so that no number of clients can take
// the descriptors the embedded etcd, the event store and the log files need
// (etcd treats "too many open files" while purging its WAL as fatal). At
// the cap a new connection sheds the connection idle the longest, first
// among those without a client certificate, then among agents; when none is
// idle (every connection is in a request) the new one is closed instead.
// Idle means no request in progress: http.Server reports it through
// ConnState, for HTTP/1.1 between requests and for HTTP/2 with no open
// stream, so an agent holding its policy long-poll is never idle.
type connLimiter struct {
	net.Listener
	max int
	log zerolog.Logger

	mu    sync.Mutex
	open  int
	anon  list.List // of *limitedConn: idle, no verified client certificate, oldest first
	agent list.List // of *limitedConn: idle agents, oldest first

	shed       atomic.Int64 // connections closed to stay under the cap
	lastLogged atomic.Int64 // unix nanos of the last shedding warning
}

// limitedConn is a TCP connection the limiter counts. The TLS connection
// http.Server sees wraps it (tls.Conn.NetConn returns it).
type limitedConn struct {
	net.Conn
	l     *connLimiter
	idle  *list.Element // in l.anon or l.agent while idle, else nil
	inAgt bool          // idle is in l.agent
	once  sync.Once
}

func newConnLimiter(ln net.Listener, max int, log zerolog.Logger) *connLimiter {
	return &connLimiter{Listener: ln, max: max, log: log}
}

// Accept returns the next connection, first making room for it.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		lc := &limitedConn{Conn: c, l: l}
		var victim *limitedConn
		l.mu.Lock()
		if l.open >= l.max {
			if victim = l.oldestIdleLocked(); victim == nil {
				l.mu.Unlock()
				l.noteShed()
				c.Close() // every connection is in a request: the newcomer waits its turn
				continue
			}
		}
		l.open++
		lc.idle = l.anon.PushBack(lc) // idle until its first request
		l.mu.Unlock()
		if victim != nil {
			l.noteShed()
			victim.Close()
		}
		return lc, nil
	}
}

// oldestIdleLocked unlinks and returns the connection idle the longest.
func (l *connLimiter) oldestIdleLocked() *limitedConn {
	for _, lst := range []*list.List{&l.anon, &l.agent} {
		if e := lst.Front(); e != nil {
			c := e.Value.(*limitedConn)
			lst.Remove(e)
			c.idle = nil
			return c
		}
	}
	return nil
}

func (l *connLimiter) noteShed() {
	n := l.shed.Add(1)
	now := time.Now().UnixNano()
	last := l.lastLogged.Load()
	if now-last > int64(10*time.Second) && l.lastLogged.CompareAndSwap(last, now) {
		l.log.Warn().Int("max_conns", l.max).Int64("shed_total", n).
			Msg("app: at the connection cap: shedding the connections idle the longest")
	}
}

// connState is the http.Server ConnState hook: it keeps the idle lists.
func (l *connLimiter) connState(c net.Conn, st http.ConnState) {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return
	}
	nc := tc.NetConn()
	if w, ok := nc.(*h2loop.Conn); ok {
		nc = w.Unwrap()
	}
	lc, ok := nc.(*limitedConn)
	if !ok {
		return
	}
	switch st {
	case http.StateIdle:
		agent := len(tc.ConnectionState().VerifiedChains) > 0
		l.mu.Lock()
		l.unidleLocked(lc)
		if lc.idle == nil && !lc.closed() {
			if agent {
				lc.idle, lc.inAgt = l.agent.PushBack(lc), true
			} else {
				lc.idle, lc.inAgt = l.anon.PushBack(lc), false
			}
		}
		l.mu.Unlock()
	case http.StateActive, http.StateHijacked:
		l.mu.Lock()
		l.unidleLocked(lc)
		l.mu.Unlock()
	case http.StateClosed:
		lc.Close()
	}
}

func (l *connLimiter) unidleLocked(lc *limitedConn) {
	if lc.idle == nil {
		return
	}
	if lc.inAgt {
		l.agent.Remove(lc.idle)
	} else {
		l.anon.Remove(lc.idle)
	}
	lc.idle = nil
}

// closed reports whether Close ran; the caller holds l.mu.
func (c *limitedConn) closed() bool { return c.l == nil }

// Close closes the connection and gives its place back, once.
func (c *limitedConn) Close() error {
	err := net.ErrClosed
	c.once.Do(func() {
		l := c.l
		l.mu.Lock()
		l.unidleLocked(c)
		l.open--
		c.l = nil
		l.mu.Unlock()
		err = c.Conn.Close()
	})
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// loopListener wraps each connection so that an agent's can move to the
// h2loop after its handshake (app.route).
type loopListener struct{ *connLimiter }

func (l loopListener) Accept() (net.Conn, error) {
	c, err := l.connLimiter.Accept()
	if err != nil {
		return nil, err
	}
	sc, ok := c.(*limitedConn).Conn.(syscall.Conn)
	if !ok {
		return c, nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return c, nil
	}
	return h2loop.Wrap(c, raw), nil
}

// Open is the number of connections counted now.
func (l *connLimiter) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// DefaultMaxConns caps connections when the fd limit allows more: 10,000
// agents on HTTP/2 hold one each, older agents two, and each costs memory.
const DefaultMaxConns = 25000

// connCap is the connection cap: the configured one (or DefaultMaxConns),
// never above the fd limit minus a reserve for etcd, the event store, logs
// and outgoing connections (an eighth of the limit, at least 256).
func connCap(configured int, fdLimit uint64, fdErr error) int {
	n := DefaultMaxConns
	if configured > 0 {
		n = configured
	}
	if fdErr != nil || fdLimit == 0 {
		return n
	}
	limit := int(min(fdLimit, 1<<30))
	reserve := min(max(256, limit/8), limit/2)
	return max(1, min(n, limit-reserve))
}
