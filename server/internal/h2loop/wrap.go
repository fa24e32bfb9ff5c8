package h2loop

import (
	"errors"
	"net"
	"sync/atomic"
	"syscall"
)

// Conn is the TCP connection under the TLS one Serve takes. It blocks as
// the connection it wraps until Serve switches it to non-blocking reads
// and queued writes, which is what lets crypto/tls run on the loop: a read
// that finds no data returns errWouldBlock, a temporary net.Error, which
// crypto/tls hands back without failing the connection (its partial
// record stays buffered).
type Conn struct {
	net.Conn
	raw      syscall.RawConn
	nonblock atomic.Bool
	out      []byte // written while the socket was full; the loop flushes it
	onFull   func() // asks the loop to watch for writability
}

// Wrap returns c ready for Serve; raw is c's syscall.RawConn (that of the
// *net.TCPConn under any wrapper of it).
func Wrap(c net.Conn, raw syscall.RawConn) *Conn { return &Conn{Conn: c, raw: raw} }

// Unwrap returns the connection Wrap was given.
func (c *Conn) Unwrap() net.Conn { return c.Conn }

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "h2loop: no data yet" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

var errWouldBlock net.Error = wouldBlock{}

// maxQueued is how much a connection may owe its peer before it is closed:
// a client that does not read its answers.
const maxQueued = 4 << 20

var errSlowReader = errors.New("h2loop: the client does not read its answers")

func (c *Conn) Read(p []byte) (int, error) {
	if !c.nonblock.Load() {
		return c.Conn.Read(p)
	}
	return c.readNow(p)
}

func (c *Conn) Write(p []byte) (int, error) {
	if !c.nonblock.Load() {
		return c.Conn.Write(p)
	}
	if len(c.out) > 0 {
		if len(c.out)+len(p) > maxQueued {
			return 0, errSlowReader
		}
		c.out = append(c.out, p...)
		return len(p), nil
	}
	n, err := c.writeNow(p)
	if err != nil {
		return n, err
	}
	if n < len(p) {
		c.out = append(c.out, p[n:]...)
		if c.onFull != nil {
			c.onFull()
		}
	}
	return len(p), nil
}

// flush writes what was queued; it reports whether anything is left.
func (c *Conn) flush() (bool, error) {
	if len(c.out) == 0 {
		return false, nil
	}
	n, err := c.writeNow(c.out)
	if err != nil {
		return false, err
	}
	if n == len(c.out) {
		c.out = nil
		return false, nil
	}
	c.out = append(c.out[:0], c.out[n:]...)
	return true, nil
}
