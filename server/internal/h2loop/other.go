//go:build !linux

package h2loop

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"runtime"
	"time"
)

// Supported says whether Serve works on this OS.
func Supported() bool { return false }

// Server is only served on Linux; elsewhere net/http serves every
// connection.
type Server struct{}

// New answers errors.ErrUnsupported off Linux.
func New(Config) (*Server, error) {
	return nil, fmt.Errorf("h2loop: %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

func (*Server) Serve(*tls.Conn) error          { return errors.ErrUnsupported }
func (*Server) GoAway(time.Duration)           {}
func (*Server) Close() error                   { return nil }
func (*Server) Shutdown(context.Context) error { return nil }

type stream struct {
	c       *conn
	arrived time.Time
}

func (*Server) park(*stream, <-chan struct{}, time.Time) bool { return false }

type conn struct{ s *Server }

func (c *Conn) readNow(p []byte) (int, error)  { return c.Conn.Read(p) }
func (c *Conn) writeNow(p []byte) (int, error) { return c.Conn.Write(p) }
