// Package eventlog stores the events agents send, deduplicated on (agent, seq)
// and checked against each agent's hash chain, and keeps an RFC 6962 Merkle
// log (golang.org/x/mod/sumdb/tlog) over every stored event so that auditors
// can verify inclusion and consistency offline.
//
// Store is the backend-neutral interface; SQLite is the default backend,
// Postgres the scale-out one (both share core: queue, chain checks, Merkle
// hashing, reads), and storetest.Run is the conformance suite both pass.
package eventlog

import (
	"context"
	"errors"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/mamori/mamori/shared/event"
)

// Store is an append-only event store with a Merkle log over its events.
// All methods are safe for concurrent use.
type Store interface {
	// Append stores one agent's batch. It validates every event (event.Validate,
	// in the caller's goroutine) and that ev.Agent == agent (else an error
	// wrapping event.ErrWrongAgent) and that seqs ascend within the batch; then
	// it checks the batch against the agent's stored head:
	//   - seq <= head.Seq: already stored, skipped and counted in Result.Duplicates
	//     (but a "duplicate" whose hash differs from the stored event's is
	//     refused with an error wrapping event.ErrChain, never acknowledged);
	//   - seq == head.Seq+1: ev.Prev must equal head.Hash, else an error wrapping
	//     event.ErrChain and the whole batch is refused;
	//   - seq >  head.Seq+1: a gap; the event is stored and a "server.gap" event
	//     naming the missing range is appended to the server stream in the same
	//     transaction.
	// A batch is stored all or nothing; Append returns after the commit.
	Append(ctx context.Context, agent string, evs []event.Event) (Result, error)
	// AppendServer appends e to the server stream (event.ServerStream). The
	// store sets Agent, Seq, Prev, Hash (and Time if zero) and returns the
	// sealed event after the commit.
	AppendServer(ctx context.Context, e event.Event) (event.Event, error)
	// Query returns stored events matching f in ascending log index order.
	Query(ctx context.Context, f Filter) (Page, error)
	// Agents returns the head of every stream with stored events, by agent id.
	Agents(ctx context.Context) ([]Head, error)
	// Head returns the head of one stream, or a zero Head if it has no events.
	Head(ctx context.Context, agent string) (Head, error)
	// TreeSize returns the number of leaves in the Merkle log (= stored events).
	TreeSize(ctx context.Context) (int64, error)
	// ReadHashes implements tlog.HashReader over the stored Merkle hashes.
	ReadHashes(indexes []int64) ([]tlog.Hash, error)
	// Stats returns figures for /metrics.
	Stats(ctx context.Context) (Stats, error)
	// Halted returns why the store stopped taking writes (wrapping
	// ErrRolledBack: its database was found behind or unlike the log it
	// committed), or nil; /healthz and /readyz report it.
	Halted() error
	// Close waits for in-flight commits and releases the store.
	Close() error
}

// Result says what Append did with a batch.
type Result struct {
	AckedSeq   uint64 // the agent's highest stored seq after the batch
	Stored     int    // events newly stored
	Duplicates int    // events skipped because they were already stored
	Gap        bool   // a gap before (or inside) the batch was recorded
}

// Head is the last stored event of one stream.
type Head struct {
	Agent    string
	Seq      uint64
	Hash     string    // hex SHA-256 of the event at Seq
	LastSeen time.Time // server time of the last store
	Events   int64     // events stored for this stream
}

// Filter selects events for Query. Empty fields do not filter.
type Filter struct {
	Agent, Control, Type, User string
	ObjectPrefix               string // events whose object starts with this
	RegisterID                 string
	From, To                   time.Time // event time in [From, To)
	Limit                      int       // default DefaultLimit; larger than MaxLimit means MaxLimit
	Cursor                     string    // opaque, from Page.Next
}

// Query limits.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Page is one page of Query results.
type Page struct {
	Events []Stored
	Next   string // cursor for the next page, "" when there is no more
}

// Stored is an event as kept by the store.
type Stored struct {
	event.Event
	Index    int64     // log index, 0-based
	Received time.Time // server time of the commit that stored it
	// Pruned is set when retention has cleared the payload: only agent,
	// seq, time, prev and hash are left, and they still prove the chain.
	Pruned bool
}

// Stats holds figures for /metrics.
type Stats struct {
	Events      int64 // stored events (= tree size)
	Agents      int64 // streams with stored events
	BytesOnDisk int64 // database files, WAL included
}

// Gap event vocabulary, appended to the server stream.
const (
	GapControl = "agent"
	GapType    = "server.gap"
)

// Clock skew: an agent event stamped more than MaxClockLead after, or more
// than MaxClockLag before, the time the server received it starts an
// episode, recorded as one ClockSkewType server event (attrs agent, seq,
// time, received, skew) until the agent's events are on time again, so an
// auditor sees that the agent's "time" is not to be trusted there.
// Retention goes by received time either way. The lag bound is long because
// a laptop offline for weeks sends its spool late, with true times.
const (
	ClockSkewType = "server.clock_skew"
	MaxClockLead  = 10 * time.Minute
	MaxClockLag   = 45 * 24 * time.Hour
)

// Clock rewind: an agent event stamped more than MaxClockRewind before the
// latest time of its chain (the PC's clock set back, or an event forged
// with an earlier date at the end of the chain) starts an episode, recorded
// as one ClockRewoundType server event (attrs agent, seq, time,
// latest_time, rewind) until its events are back within the bound. The
// latest time is kept in memory: the first batch after a restart is not
// compared. NTP corrections are seconds, far within the bound.
const (
	ClockRewoundType = "server.clock_rewound"
	MaxClockRewind   = time.Hour
)

// Errors; test with errors.Is.
var (
	ErrClosed     = errors.New("eventlog: store closed")
	ErrBadCursor  = errors.New("eventlog: bad cursor")
	ErrBadFilter  = errors.New("eventlog: bad filter")
	ErrOutOfRange = errors.New("eventlog: hash index beyond the stored tree")
)
