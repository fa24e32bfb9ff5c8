package state

import (
	"sync/atomic"

	"github.com/rs/zerolog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// zerologCore is a zapcore.Core that forwards etcd's zap entries to zerolog.
// Only warn and above pass (etcd logs every raft step at info). Once closing
// is set, entries go to debug: etcd reports its own clean shutdown as errors
// ("server closed", "use of closed network connection").
type zerologCore struct {
	log     zerolog.Logger
	fields  []zapcore.Field
	closing *atomic.Bool
}

// newZapLogger returns a zap logger that writes to log at warn level and above.
func newZapLogger(log zerolog.Logger, closing *atomic.Bool) *zap.Logger {
	return zap.New(&zerologCore{log: log.With().Str("component", "etcd").Logger(), closing: closing})
}

func (c *zerologCore) Enabled(l zapcore.Level) bool { return l >= zapcore.WarnLevel }

func (c *zerologCore) With(fs []zapcore.Field) zapcore.Core {
	n := &zerologCore{log: c.log, closing: c.closing, fields: make([]zapcore.Field, 0, len(c.fields)+len(fs))}
	n.fields = append(append(n.fields, c.fields...), fs...)
	return n
}

func (c *zerologCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *zerologCore) Write(e zapcore.Entry, fs []zapcore.Field) error {
	var ev *zerolog.Event
	switch {
	case c.closing.Load() || expected[e.Message]:
		ev = c.log.Debug()
	case e.Level >= zapcore.ErrorLevel:
		ev = c.log.Error()
	default:
		ev = c.log.Warn()
	}
	if ev == nil { // level disabled in zerolog
		return nil
	}
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fs {
		f.AddTo(enc)
	}
	if e.LoggerName != "" {
		ev.Str("logger", e.LoggerName)
	}
	ev.Fields(enc.Fields).Msg(e.Message)
	return nil
}

func (c *zerologCore) Sync() error { return nil }

// expected lists etcd warnings that do not apply to a node listening only on
// private unix sockets with etcd auth off.
var expected = map[string]bool{
	"Running http and grpc server on single port. This is not recommended for production.": true,
	"simple token is not cryptographically signed":                                         true,
	// Each retry of a read while etcd has no leader (dozens a second through
	// an outage); the operation's own error says what failed, once.
	"retrying of unary invoker failed": true,
}
