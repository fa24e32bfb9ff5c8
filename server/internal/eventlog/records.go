package eventlog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"

	"golang.org/x/mod/sumdb/tlog"
)

// The log as records (docs/record-store.md): on SQLite, events below the
// first record's log index are rows of events, and from it on records, one
// an agent run. The boundary only ever moves once, from none to the first
// record's index, and the writer sets it before that record's commit: a
// reader that sees it early finds no record past it yet, which is right.

// noRecords is the boundary of a log without records.
const noRecords int64 = math.MaxInt64

// writeRecordsDefault makes a SQLite store write records: a new one, and
// one of rows, which goes on as records from its end. A store that holds
// records writes records whatever it says.
var writeRecordsDefault = true

// SetWriteRecords makes the SQLite stores opened from now on write records
// (or, for tests of the rows still read, not), and returns what restores
// the setting. Not safe for concurrent opens.
func SetWriteRecords(on bool) (restore func()) {
	old := writeRecordsDefault
	writeRecordsDefault = on
	return func() { writeRecordsDefault = old }
}

// recordsFrom returns the log index from which the log is records.
func (s *core) recordsFrom() int64 {
	if !s.records {
		return noRecords
	}
	return s.recFrom.Load()
}

// recordsFromTx reads the boundary in tx's snapshot.
func (s *core) recordsFromTx(ctx context.Context, tx *sql.Tx) (int64, error) {
	if !s.records {
		return noRecords, nil
	}
	return readRecordsFrom(ctx, tx)
}

// loadRecordsFrom reads the boundary through db into the store.
func (s *core) loadRecordsFrom(ctx context.Context, db dbtx) error {
	lo, err := readRecordsFrom(ctx, db)
	if err != nil {
		return err
	}
	s.recFrom.Store(lo)
	return nil
}

// readRecordsFrom reads the first record's log index through db, or
// noRecords.
func readRecordsFrom(ctx context.Context, db dbtx) (int64, error) {
	var lo sql.NullInt64
	if err := db.QueryRowContext(ctx, `SELECT min(lo) FROM records`).Scan(&lo); err != nil {
		return 0, fmt.Errorf("eventlog: read records: %w", err)
	}
	if !lo.Valid {
		return noRecords, nil
	}
	return lo.Int64, nil
}

// sizeSQL reads the tree size.
func (s *core) sizeSQL() string {
	if s.records {
		return `SELECT max(COALESCE((SELECT MAX(idx)+1 FROM events), 0), COALESCE((SELECT hi FROM records ORDER BY lo DESC LIMIT 1), 0))`
	}
	return `SELECT COALESCE(MAX(idx)+1, 0) FROM events`
}

// recordsJoin reads records as the events table, the records that can
// hold an event whose idx meets cond sought by seek (written on
// records.lo): "CROSS JOIN " + recordsJoin(seek, cond) stands where
// "CROSS JOIN events ON " + cond did.
func recordsJoin(seek, cond string) string {
	return `records ON ` + seek + ` CROSS JOIN record_events(records.payload, records.lo, records.hi) AS events ON ` + cond
}

// recordAt is SQL for the first log index of the record that holds the
// event at x (an SQL expression), or x if none starts at or before it: a
// seek for "the records from the one holding x" that costs one lookup
// however small records are. (A bound of x - runMax read up to a thousand
// records of one event each before every key of a follower's page.)
func recordAt(x string) string {
	return "coalesce((SELECT rr.lo FROM records AS rr WHERE rr.lo <= " + x + " ORDER BY rr.lo DESC LIMIT 1), " + x + ")"
}

// recordsFromSQL is FROM records read as the events table, for a WHERE that
// bounds idx to [lo, hi) (hi < 0: no bound) through args.
func recordsFromSQL(lo, hi int64, args *[]any) (from string, where []string) {
	where = []string{"lo >= " + recordAt("?")}
	*args = append(*args, lo, lo)
	if hi >= 0 {
		where, *args = append(where, "lo < ?"), append(*args, hi)
	}
	return recordsEvents, where
}

// recordsEvents reads every record as the events table.
const recordsEvents = `records CROSS JOIN record_events(records.payload, records.lo, records.hi) AS events`

// unionRecords returns stmt, a SELECT over events whose FROM is from and
// whose WHERE's arguments start at args[pre], with the same SELECT over
// records after it, and args for both; the records' arm skips records
// outside the event-time range [lo, hi) without decoding them. A plan of
// either form finds only its own events, so the union holds each once.
func unionRecords(stmt, from string, args []any, pre int, lo, hi int64) (string, []any) {
	rf := recordsEvents
	if from != "events" {
		// event_ranges AS r CROSS JOIN events ON ... (aggFrom)
		rf = strings.Replace(from, "CROSS JOIN events ON ", "CROSS JOIN "+recordsJoin("lo >= "+recordAt("r.pos")+" AND lo < coalesce(r.upto, r.pos + 1)", ""), 1)
	}
	i := strings.Index(stmt, " FROM "+from+" WHERE ")
	if i < 0 {
		panic("eventlog: no FROM " + from + " WHERE in " + stmt)
	}
	// time, not +time, so that record_events skips the events outside it;
	// an IN list kept from it, which SQLite would run as one call an item.
	w := strings.Replace(stmt[i+len(" FROM "+from+" WHERE "):], "+time ", "time ", 2)
	w = strings.NewReplacer("control IN (", "+control IN (", "type IN (", "+type IN (").Replace(w)
	rs := stmt[:i] + " FROM " + rf + " WHERE tmax >= ? AND tmin < ? AND " + w
	out := append(append([]any(nil), args...), args[:pre]...)
	out = append(append(out, lo, hi), args[pre:]...)
	return stmt + " UNION ALL " + rs, out
}

// recordMerkle returns the stored Merkle hashes of the event at log index
// x, which a record holds, through db.
func recordMerkle(ctx context.Context, db dbtx, x int64) ([]byte, error) {
	var (
		lo, hi int64
		merkle []byte
	)
	err := db.QueryRowContext(ctx, `SELECT lo, hi, merkle FROM records WHERE lo <= ? ORDER BY lo DESC LIMIT 1`, x).Scan(&lo, &hi, &merkle)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && x >= hi) {
		return nil, fmt.Errorf("eventlog: no record holds log index %d", x)
	}
	if err != nil {
		return nil, fmt.Errorf("eventlog: read record: %w", err)
	}
	from, to := tlog.StoredHashIndex(0, x)-tlog.StoredHashIndex(0, lo), tlog.StoredHashCount(x+1)-tlog.StoredHashIndex(0, lo)
	if int64(len(merkle)) < to*tlog.HashSize {
		return nil, fmt.Errorf("eventlog: record %d has %d merkle bytes, log index %d needs %d", lo, len(merkle), x, to*tlog.HashSize)
	}
	return merkle[from*tlog.HashSize : to*tlog.HashSize], nil
}

// runsOverRecords rewrites q, written over events, to read records
// instead, for the statements that join events to a run of agent_runs by
// "CROSS JOIN events ON idx ..." (a record is an agent run: lo = pos).
func runsOverRecords(q string) string {
	const from = "CROSS JOIN events ON "
	i := strings.Index(q, from)
	if i < 0 {
		panic("eventlog: no events join in " + q)
	}
	return q[:i] + "CROSS JOIN " + recordsJoin("lo = pos", "") + q[i+len(from):]
}
