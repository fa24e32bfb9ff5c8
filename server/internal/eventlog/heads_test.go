package eventlog_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/eventlog/storetest"
)

// The heads table edited by hand while the server is stopped is not
// trusted on open: it is rebuilt from the log and the rebuild is recorded.
func TestHeadsEditedByHandRebuilt(t *testing.T) {
	ctx := context.Background()
	for name, stmt := range map[string]string{
		// The agent's next five events would be taken for duplicates,
		// acknowledged and dropped.
		"seq raised": `UPDATE heads SET seq = seq + 5 WHERE agent = 'pc-001'`,
		// The agent's real next event would be refused as a broken chain.
		"hash changed": `UPDATE heads SET hash = zeroblob(32) WHERE agent = 'pc-001'`,
		"row deleted":  `DELETE FROM heads WHERE agent = 'pc-001'`,
	} {
		for _, c := range []struct{ elected, killedBeforeClaim bool }{{false, false}, {true, false}, {true, true}} {
			elected := c.elected
			// elected: a server that writes under the writer epochs of an
			// election (every server since round 2): the store opens at epoch
			// 0 and the claim after it records the rebuild; recording it at
			// open was fenced, failed the start, and the second start found
			// the heads already rebuilt and recorded nothing.
			// killedBeforeClaim: the server stopped (killed) after the open
			// rebuilt the heads and before its claim recorded that: the
			// rebuild had been written at open, so the next start found the
			// heads agreeing with the log and the edit went unrecorded.
			t.Run(fmt.Sprintf("%s elected=%v killed before claim=%v", name, elected, c.killedBeforeClaim), func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "events.db")
				s, err := eventlog.OpenSQLite(ctx, path, zerolog.Nop())
				if err != nil {
					t.Fatal(err)
				}
				if elected {
					if err := s.ClaimEpoch(ctx, 3); err != nil {
						t.Fatal(err)
					}
				}
				evs := storetest.Chain("pc-001", 1, 10, "")
				if _, err := s.Append(ctx, "pc-001", evs[:5]); err != nil {
					t.Fatal(err)
				}
				s.Close()
				db, err := sql.Open("sqlite", path)
				if err != nil {
					t.Fatal(err)
				}
				if res, err := db.Exec(stmt); err != nil {
					t.Fatal(err)
				} else if n, _ := res.RowsAffected(); n != 1 {
					t.Fatalf("%s: %d rows", stmt, n)
				}
				db.Close()
				if c.killedBeforeClaim {
					s, err = eventlog.OpenSQLite(ctx, path, zerolog.Nop())
					if err != nil {
						t.Fatal(err)
					}
					s.Close()
				}
				s, err = eventlog.OpenSQLite(ctx, path, zerolog.Nop())
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				if elected {
					if err := s.ClaimEpoch(ctx, 4); err != nil {
						t.Fatal(err)
					}
				}
				if h, _ := s.Head(ctx, "pc-001"); h.Seq != 5 || h.Hash != evs[4].Hash || h.Events != 5 {
					t.Fatalf("head after open: %+v", h)
				}
				res, err := s.Append(ctx, "pc-001", evs[5:])
				if err != nil || res.Stored != 5 || res.Duplicates != 0 || res.AckedSeq != 10 {
					t.Fatalf("next batch: %+v, %v", res, err)
				}
				p, err := s.Query(ctx, eventlog.Filter{Type: eventlog.HeadsRebuiltType})
				if err != nil || len(p.Events) != 1 || fmt.Sprint(p.Events[0].Attrs["streams"]) != "1" {
					t.Fatalf("rebuild not recorded: %+v, %v", p.Events, err)
				}
			})
		}
	}
}
