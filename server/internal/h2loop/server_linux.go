package h2loop

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Supported says whether Serve works on this OS.
func Supported() bool { return true }

// Server runs the loop. Its methods are safe for concurrent use.
type Server struct {
	cfg  Config
	epfd int
	work chan *conn
	done chan struct{}
	once sync.Once
	// shutting is set by Shutdown: a connection handed over from then on is
	// closed (the agent's client opens one as soon as it reads GOAWAY).
	shutting atomic.Bool
	wg       sync.WaitGroup

	mu    sync.Mutex
	conns map[int32]*conn

	pmu    sync.Mutex
	parked map[<-chan struct{}]map[*stream]struct{}
}

// New starts a Server's loop, its workers and its sweeper.
func New(cfg Config) (*Server, error) {
	if cfg.Handler == nil {
		return nil, errors.New("h2loop: no handler")
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 2 * time.Minute
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = 2 * time.Minute
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 32 << 20
	}
	if cfg.BaseContext == nil {
		cfg.BaseContext = context.Background()
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("h2loop: epoll: %w", err)
	}
	s := &Server{cfg: cfg, epfd: epfd, work: make(chan *conn, 4096), done: make(chan struct{}),
		conns: map[int32]*conn{}, parked: map[<-chan struct{}]map[*stream]struct{}{}}
	workers := max(2, runtime.GOMAXPROCS(0))
	s.wg.Add(2 + workers)
	go s.loop()
	go s.sweep()
	for range workers {
		go s.worker()
	}
	return s, nil
}

// Close closes every connection Serve took and stops the loop.
func (s *Server) Close() error {
	s.once.Do(func() {
		close(s.done)
		for _, c := range s.snapshot() {
			c.mu.Lock()
			c.killLocked()
			c.mu.Unlock()
		}
	})
	s.wg.Wait()
	return nil
}

// GoAway tells every connection taken so far that it gets no new stream
// (HTTP/2 GOAWAY): the agents open new connections, which the server's
// accept loop hands to whoever serves now. Streams in progress go on; a
// connection still open after grace is closed.
func (s *Server) GoAway(grace time.Duration) {
	until := time.Now().Add(grace)
	for _, c := range s.snapshot() {
		c.mu.Lock()
		c.goAwayLocked(errNo, until)
		c.mu.Unlock()
	}
}

func (s *Server) snapshot() []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*conn, 0, len(s.conns))
	for _, c := range s.conns {
		out = append(out, c)
	}
	return out
}

// Serve takes over tc, handshaken over a *Conn from Wrap with ServesConn
// true, and returns at once: the loop serves it from then on.
func (s *Server) Serve(tc *tls.Conn) error {
	nc, ok := tc.NetConn().(*Conn)
	if !ok {
		return errors.New("h2loop: the TLS connection is not over h2loop.Wrap")
	}
	if s.closing() {
		return net.ErrClosed
	}
	if err := tc.SetDeadline(time.Time{}); err != nil {
		return fmt.Errorf("h2loop: %w", err)
	}
	now := time.Now()
	c := &conn{s: s, tc: tc, nc: nc, remote: tc.RemoteAddr().String(),
		sendWin: defaultWindow, peerInitWin: defaultWindow, peerMaxFrame: maxFrameSize, started: now, lastActive: now}
	nc.onFull = c.watchWritable
	var fd int32
	var cerr error
	err := nc.raw.Control(func(f uintptr) {
		fd = int32(f)
		s.mu.Lock()
		s.conns[fd] = c
		s.mu.Unlock()
		cerr = unix.EpollCtl(s.epfd, unix.EPOLL_CTL_ADD, int(f), &unix.EpollEvent{Events: unix.EPOLLONESHOT, Fd: fd})
	})
	if err == nil {
		err = cerr
	}
	c.fd = fd
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.killLocked()
		return fmt.Errorf("h2loop: epoll: %w", err)
	}
	if s.closing() { // Close or Shutdown ran while this one registered: it may not have seen it
		c.killLocked()
		return net.ErrClosed
	}
	nc.nonblock.Store(true)
	if s.cfg.ConnState != nil {
		s.cfg.ConnState(tc, http.StateIdle)
	}
	c.wbuf = c.settingsFrames(c.wbuf)
	// The handshake may have read the client's first frames along with its
	// Finished message: they are in tc's buffer, not the socket's.
	c.passLocked(make([]byte, 16<<10))
	return nil
}

// loop waits on epoll and hands ready connections to the workers. Each
// registration is one-shot, so a connection is with one worker at a time
// until the worker re-arms it.
func (s *Server) loop() {
	defer s.wg.Done()
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(s.epfd, events, 500)
		select {
		case <-s.done:
			unix.Close(s.epfd)
			return
		default:
		}
		if err != nil {
			if err != unix.EINTR {
				s.cfg.Log.Error().Err(err).Msg("h2loop: epoll_wait")
				time.Sleep(10 * time.Millisecond)
			}
			continue
		}
		for _, ev := range events[:n] {
			s.mu.Lock()
			c := s.conns[ev.Fd]
			s.mu.Unlock()
			if c != nil {
				select {
				case s.work <- c:
				case <-s.done:
					return
				}
			}
		}
	}
}

func (s *Server) worker() {
	defer s.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		var c *conn
		select {
		case c = <-s.work:
		case <-s.done:
			return
		}
		c.mu.Lock()
		if !c.dead {
			c.passLocked(buf)
		}
		c.mu.Unlock()
	}
}

// sweepEvery is the sweeper's period; tests lower it.
var sweepEvery = 2 * time.Second

// sweep closes connections idle too long, or closed under the loop (the
// connection cap sheds idle ones by closing their socket), and resets
// streams whose request has not arrived in time, and runs again parked
// requests whose time has come.
func (s *Server) sweep() {
	defer s.wg.Done()
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	var due []*stream
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		now := time.Now()
		for _, c := range s.snapshot() {
			c.mu.Lock()
			due = c.sweepLocked(now, due[:0])
			c.mu.Unlock()
			for _, st := range due {
				s.wake(st)
			}
		}
	}
}

// rearmLocked waits for the connection's next input (and for room to write
// when answers are queued).
func (c *conn) rearmLocked() {
	if c.dead {
		return
	}
	ev := uint32(unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT)
	if len(c.nc.out) > 0 {
		ev |= unix.EPOLLOUT
	}
	var cerr error
	err := c.nc.raw.Control(func(fd uintptr) {
		cerr = unix.EpollCtl(c.s.epfd, unix.EPOLL_CTL_MOD, int(fd), &unix.EpollEvent{Events: ev, Fd: c.fd})
	})
	if err != nil || cerr != nil {
		c.killLocked()
	}
}

// watchWritable is called (under c.mu) when a write left bytes queued.
func (c *conn) watchWritable() { c.wantRearm = true }

// unregisterLocked removes the connection from the loop before its socket
// is closed, while the descriptor cannot yet be another connection's.
func (c *conn) unregisterLocked() {
	c.s.mu.Lock()
	if c.s.conns[c.fd] == c {
		delete(c.s.conns, c.fd)
	}
	c.s.mu.Unlock()
	_ = c.nc.raw.Control(func(fd uintptr) {
		_ = unix.EpollCtl(c.s.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
	})
}

// alive says whether the socket is still open (the cap may close it).
func (c *conn) alive() bool {
	return c.nc.raw.Control(func(uintptr) {}) == nil
}

// closing says whether Close or Shutdown has begun.
func (s *Server) closing() bool {
	select {
	case <-s.done:
		return true
	default:
		return s.shutting.Load()
	}
}

// Shutdown sends GOAWAY to every connection, takes no new one, waits until
// their streams are done or ctx ends, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutting.Store(true)
	grace := time.Minute
	if dl, ok := ctx.Deadline(); ok {
		grace = time.Until(dl)
	}
	s.GoAway(grace)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-ctx.Done():
			s.Close()
			return fmt.Errorf("h2loop: %d connections still busy: %w", n, ctx.Err())
		case <-t.C:
			continue
		}
	}
	return s.Close()
}
