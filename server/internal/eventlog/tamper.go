package eventlog

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/mamori/mamori/shared/event"
)

// TamperSQL runs stmt, written against the events table, on the closed
// store at path, as an insider with the database file could, whether the
// store holds rows or records: records are unpacked into rows first and
// packed back after, each into as many records as the rows left of it
// run contiguously. It returns the rows stmt changed. Tests of the
// evidence checks use it to show an alteration is caught in either form;
// the server never calls it.
func TamperSQL(ctx context.Context, path, stmt string, args ...any) (int64, error) {
	if err := registerRecordEvents(); err != nil {
		return 0, err
	}
	db := openDB(sqliteURI(path)+"?_pragma=busy_timeout(10000)", "", "", "")
	defer db.Close()
	db.SetMaxOpenConns(1)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	type rec struct {
		lo, hi, received int64
		pruned           sql.NullInt64
	}
	var recs []rec
	rows, err := tx.QueryContext(ctx, `SELECT lo, hi, received, pruned FROM records ORDER BY lo`)
	if err != nil {
		return 0, err
	}
	for rows.Next() {
		var r rec
		if err := rows.Scan(&r.lo, &r.hi, &r.received, &r.pruned); err != nil {
			rows.Close()
			return 0, err
		}
		recs = append(recs, r)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return 0, err
	}
	for _, r := range recs {
		// Each event's stored Merkle hashes, cut from the record's.
		if _, err := tx.ExecContext(ctx, `INSERT INTO events (idx, received, merkle, agent, seq, time, control, type,
			severity, "user", process, object, register_id, attrs, prev, hash)
			SELECT events.idx, received, x'', agent, events.seq, events.time, events.control, events.type, events.severity,
			events."user", events.process, events.object, events.register_id, events.attrs, events.prev, events.hash
			FROM records CROSS JOIN record_events(records.payload, records.lo, records.hi) AS events WHERE lo = ?`, r.lo); err != nil {
			return 0, fmt.Errorf("unpack record %d: %w", r.lo, err)
		}
		for x := r.lo; x < r.hi; x++ {
			m, err := recordMerkle(ctx, tx, x)
			if err != nil {
				return 0, err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE events SET merkle = ? WHERE idx = ?`, m, x); err != nil {
				return 0, err
			}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM records WHERE lo = ?`, r.lo); err != nil {
			return 0, err
		}
	}
	res, err := tx.ExecContext(ctx, stmt, args...)
	if err != nil {
		return 0, err
	}
	changed, err := res.RowsAffected()
	if err != nil {
		return 0, err
	}
	for _, r := range recs {
		if err := repack(ctx, tx, r.lo, r.hi, r.pruned); err != nil {
			return 0, fmt.Errorf("pack record %d: %w", r.lo, err)
		}
	}
	return changed, tx.Commit()
}

// repack packs the rows left in [lo, hi) back into records, one per
// contiguous run, and deletes them.
func repack(ctx context.Context, tx *sql.Tx, lo, hi int64, pruned sql.NullInt64) error {
	rows, err := tx.QueryContext(ctx, `SELECT idx, received, merkle, agent, seq, time, control, type, severity, "user",
		process, object, register_id, attrs, prev, hash FROM events WHERE idx >= ? AND idx < ? ORDER BY idx`, lo, hi)
	if err != nil {
		return err
	}
	type ev struct {
		idx, received int64
		merkle, attrs []byte
		e             event.Event
	}
	var evs []ev
	for rows.Next() {
		var (
			v                                       ev
			seq, tm                                 int64
			control, typ, sev, user, proc, obj, reg sql.NullString
			prev, hash                              []byte
		)
		if err := rows.Scan(&v.idx, &v.received, &v.merkle, &v.e.Agent, &seq, &tm, &control, &typ, &sev, &user, &proc,
			&obj, &reg, &v.attrs, &prev, &hash); err != nil {
			rows.Close()
			return err
		}
		v.e.Seq, v.e.Time = uint64(seq), time.Unix(0, tm)
		v.e.Control, v.e.Type, v.e.Severity = control.String, typ.String, event.Severity(sev.String)
		v.e.User, v.e.Process, v.e.Object, v.e.RegisterID = user.String, proc.String, obj.String, reg.String
		if prev != nil {
			v.e.Prev = hex.EncodeToString(prev)
		}
		v.e.Hash = hex.EncodeToString(hash)
		evs = append(evs, v)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return err
	}
	for len(evs) > 0 {
		n := 1
		for n < len(evs) && evs[n].idx == evs[n-1].idx+1 {
			n++
		}
		run := evs[:n]
		evs = evs[n:]
		var (
			es         []event.Event
			attrs      [][]byte
			merkle     []byte
			tmin, tmax = run[0].e.Time.UnixNano(), run[0].e.Time.UnixNano()
			cleared    int64
		)
		for _, v := range run {
			es, attrs, merkle = append(es, v.e), append(attrs, v.attrs), append(merkle, v.merkle...)
			tmin, tmax = min(tmin, v.e.Time.UnixNano()), max(tmax, v.e.Time.UnixNano())
			if v.e.Control == "" {
				cleared++
			}
		}
		p, err := appendPayload(nil, es, attrs)
		if err != nil {
			return err
		}
		pr := pruned
		if cleared > 0 {
			pr = sql.NullInt64{Int64: cleared, Valid: true}
		}
		first := run[0].idx
		if _, err := tx.ExecContext(ctx, `INSERT INTO records (lo, hi, agent, received, tmin, tmax, pruned, merkle, payload)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, first, first+int64(n), run[0].e.Agent, run[0].received, tmin, tmax, pr, merkle, p); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM events WHERE idx >= ? AND idx < ?`, first, first+int64(n)); err != nil {
			return err
		}
	}
	return nil
}
