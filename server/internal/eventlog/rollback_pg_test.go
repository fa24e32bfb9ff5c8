package eventlog_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/eventlog/pgtest"
	"github.com/mamori/mamori/server/internal/eventlog/storetest"
)

// The database restored from a dump under a running writer, and then
// written past the writer's size by another store (a promoted replica that
// took writes): it does not extend what the writer committed, though it is
// not behind. The writer refuses on its next commit, whether its
// connection dropped (reconnect check) or not (the commit's tail check).
func TestPostgresForkedUnderWriter(t *testing.T) {
	srv := pgtest.Start(t)
	for name, drop := range map[string]bool{"connection dropped": true, "connection kept": false} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			dsn := srv.Schema(t)
			s := openPG(t, dsn)
			defer s.Close()
			a := storetest.Chain("pc-001", 1, 120, "")
			if _, err := s.Append(ctx, "pc-001", a[:50]); err != nil {
				t.Fatal(err)
			}
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			tables := []string{"events", "heads", "checkpoints", "event_spans"}
			for _, tb := range tables {
				if _, err := conn.Exec(ctx, "CREATE TABLE bak_"+tb+" AS TABLE "+tb); err != nil {
					t.Fatal(err)
				}
			}
			if r, err := s.Append(ctx, "pc-001", a[50:100]); err != nil || r.AckedSeq != 100 {
				t.Fatalf("acked %+v, %v", r, err)
			}
			if _, err := conn.Exec(ctx, "TRUNCATE "+strings.Join(tables, ", ")); err != nil {
				t.Fatal(err)
			}
			for _, tb := range tables {
				if _, err := conn.Exec(ctx, "INSERT INTO "+tb+" SELECT * FROM bak_"+tb); err != nil {
					t.Fatal(err)
				}
			}
			other := openPG(t, dsn) // the promoted replica's writer
			if _, err := other.Append(ctx, "pc-002", storetest.Chain("pc-002", 1, 80, "")); err != nil {
				t.Fatal(err)
			}
			other.Close()
			if drop {
				if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
					WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`); err != nil {
					t.Fatal(err)
				}
			}
			var err2 error
			for range 5 { // a group may first fail on the dropped connection
				if _, err2 = s.Append(ctx, "pc-001", a[100:110]); errors.Is(err2, eventlog.ErrRolledBack) {
					break
				}
				if err2 == nil {
					t.Fatal("batch acknowledged on a forked database")
				}
			}
			if !errors.Is(err2, eventlog.ErrRolledBack) || !errors.Is(s.Halted(), eventlog.ErrRolledBack) {
				t.Fatalf("append: %v; halted: %v", err2, s.Halted())
			}
			t.Log(err2)
			// Nothing of the refused batch was written.
			var n int64
			if err := conn.QueryRow(ctx, `SELECT count(*) FROM events WHERE agent = 'pc-001'`).Scan(&n); err != nil || n != 50 {
				t.Fatalf("pc-001 rows in the database: %d, %v", n, err)
			}
		})
	}
}
