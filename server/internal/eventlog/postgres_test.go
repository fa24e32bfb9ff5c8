package eventlog_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/eventlog/storetest"
	"github.com/mamori/mamori/shared/event"
)

// pgServer is a PostgreSQL server for tests: MAMORI_TEST_PG_DSN if set, else a
// throwaway cluster on a unix socket.
type pgServer struct {
	dsn  string // admin DSN
	data string // cluster directory, "" for an external server
	ctl  func(args ...string) *exec.Cmd
}

// startPG returns a server or skips the test saying why there is none.
func startPG(tb testing.TB) *pgServer {
	tb.Helper()
	if dsn := os.Getenv("MAMORI_TEST_PG_DSN"); dsn != "" {
		return &pgServer{dsn: dsn}
	}
	if runtime.GOOS == "windows" {
		tb.Skip("no PostgreSQL: set MAMORI_TEST_PG_DSN (a throwaway cluster needs unix sockets)")
	}
	bin := pgBinDir()
	if bin == "" {
		tb.Skip("no PostgreSQL: set MAMORI_TEST_PG_DSN or install initdb/pg_ctl (Debian: apt-get install postgresql)")
	}
	// initdb refuses to run as root: run the cluster as postgres then.
	var wrap []string
	owner := -1
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			tb.Skip("no PostgreSQL: running as root and there is no postgres user to run initdb as; set MAMORI_TEST_PG_DSN")
		}
		runuser, err := exec.LookPath("runuser")
		if err != nil {
			tb.Skip("no PostgreSQL: running as root without runuser; set MAMORI_TEST_PG_DSN")
		}
		wrap = []string{runuser, "-u", "postgres", "--"}
		owner, _ = strconv.Atoi(u.Uid)
	}
	cmd := func(name string, args ...string) *exec.Cmd {
		argv := append(slices.Clone(wrap), append([]string{filepath.Join(bin, name)}, args...)...)
		return exec.Command(argv[0], argv[1:]...)
	}
	// Not t.TempDir: its parents are private to this user, and the socket
	// path must stay short.
	dir, err := os.MkdirTemp("", "mamori-pg-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	if owner >= 0 {
		if err := os.Chown(dir, owner, -1); err != nil {
			tb.Fatal(err)
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := cmd("initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync").CombinedOutput(); err != nil {
		tb.Fatalf("initdb: %v\n%s", err, out)
	}
	s := &pgServer{
		data: data,
		dsn:  "postgres://postgres@/postgres?sslmode=disable&host=" + url.QueryEscape(dir),
		ctl:  func(args ...string) *exec.Cmd { return cmd("pg_ctl", append([]string{"-D", data}, args...)...) },
	}
	s.start(tb, dir)
	tb.Cleanup(func() { s.ctl("stop", "-m", "immediate").Run() })
	return s
}

func (s *pgServer) start(tb testing.TB, sock string) {
	tb.Helper()
	out, err := s.ctl("start", "-w", "-l", filepath.Join(s.data, "server.log"),
		"-o", "-k "+sock+" -c listen_addresses= -c max_connections=60").CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(s.data, "server.log"))
		tb.Fatalf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
}

// crash stops the server as a power cut would (no shutdown checkpoint) and
// starts it again, so that WAL recovery runs.
func (s *pgServer) crash(tb testing.TB) {
	tb.Helper()
	if out, err := s.ctl("stop", "-m", "immediate").CombinedOutput(); err != nil {
		tb.Fatalf("pg_ctl stop: %v\n%s", err, out)
	}
	s.start(tb, filepath.Dir(s.data))
}

// pgBinDir finds initdb and pg_ctl on PATH or under /usr/lib/postgresql.
func pgBinDir() string {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("pg_ctl"); err == nil {
			return filepath.Dir(p)
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { // newest major version first
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return vb - va
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	return ""
}

// schema creates an empty schema, dropped when the test ends, and returns a
// DSN whose search_path selects it.
func (s *pgServer) schema(tb testing.TB) string {
	tb.Helper()
	ctx := context.Background()
	b := make([]byte, 6)
	rand.Read(b)
	name := "mamori_test_" + hex.EncodeToString(b)
	conn, err := pgx.Connect(ctx, s.dsn)
	if err != nil {
		tb.Fatalf("connect %s: %v", s.dsn, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+name); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		conn, err := pgx.Connect(ctx, s.dsn)
		if err != nil {
			return // the server is gone with its cluster
		}
		defer conn.Close(ctx)
		conn.Exec(ctx, "DROP SCHEMA "+name+" CASCADE")
	})
	sep := "?"
	if strings.Contains(s.dsn, "?") {
		sep = "&"
	}
	if !strings.Contains(s.dsn, "://") {
		return s.dsn + " search_path=" + name
	}
	return s.dsn + sep + "search_path=" + name
}

func openPG(tb testing.TB, dsn string) *eventlog.Postgres {
	tb.Helper()
	s, err := eventlog.OpenPostgres(context.Background(), dsn, zerolog.Nop())
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func TestPostgresConformance(t *testing.T) {
	srv := startPG(t)
	storetest.Run(t, func(t *testing.T) eventlog.Store { return openPG(t, srv.schema(t)) })
}

// TestPostgresDurability: what was acknowledged survives a crash of the
// database server and a restart of the store, and the reopened store
// carries on the same chains and Merkle log.
func TestPostgresDurability(t *testing.T) {
	srv := startPG(t)
	ctx := context.Background()
	dsn := srv.schema(t)
	s := openPG(t, dsn)
	a := storetest.Chain("pc-001", 1, 300, "")
	b := storetest.Chain("pc-002", 1, 50, "")
	for i := 0; i < 200; i += 50 {
		if _, err := s.Append(ctx, "pc-001", a[i:i+50]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Append(ctx, "pc-002", b); err != nil {
		t.Fatal(err)
	}
	root, err := s.TreeHash(ctx, 250)
	if err != nil {
		t.Fatal(err)
	}
	note := "test checkpoint\n"
	if err := s.PutCheckpoint(ctx, eventlog.Checkpoint{Size: 250, Root: root, Note: note}); err != nil {
		t.Fatal(err)
	}
	// A second writer on the same store is refused while the first lives.
	if s2, err := eventlog.OpenPostgres(ctx, dsn, zerolog.Nop()); err == nil {
		s2.Close()
		t.Fatal("a second store opened the same schema for writing")
	}

	if srv.data != "" {
		srv.crash(t)
		// The old store's writer connection is gone: its next group reconnects.
		if _, err := s.Append(ctx, "pc-001", a[200:210]); err == nil {
			// A group may fail once on the broken connection; either way the
			// next one must succeed.
			t.Log("append after crash succeeded at once")
		}
		if r, err := s.Append(ctx, "pc-001", a[200:220]); err != nil || r.AckedSeq != 220 {
			t.Fatalf("append after reconnect: %+v, %v", r, err)
		}
	} else {
		if _, err := s.Append(ctx, "pc-001", a[200:220]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openPG(t, dsn)
	defer s.Close()
	if n, _ := s.TreeSize(ctx); n != 270 {
		t.Fatalf("TreeSize after restart = %d, want 270", n)
	}
	if got, err := s.TreeHash(ctx, 250); err != nil || got != root {
		t.Fatalf("tree hash at 250 after restart = %v, %v; want %v", got, err, root)
	}
	if cp, err := s.LatestCheckpoint(ctx); err != nil || cp.Size != 250 || cp.Root != root || cp.Note != note {
		t.Fatalf("LatestCheckpoint = %+v, %v", cp, err)
	}
	h, err := s.Head(ctx, "pc-001")
	if err != nil || h.Seq != 220 || h.Hash != a[219].Hash || h.Events != 220 {
		t.Fatalf("Head(pc-001) = %+v, %v", h, err)
	}
	// Resends are duplicates, the chain continues, and the log extends the
	// same tree (a consistency proof from the checkpoint holds).
	if r, err := s.Append(ctx, "pc-001", a[150:300]); err != nil || r.Duplicates != 70 || r.Stored != 80 || r.AckedSeq != 300 {
		t.Fatalf("resend and continue: %+v, %v", r, err)
	}
	p, err := tlog.ProveTree(350, 250, s)
	if err != nil {
		t.Fatal(err)
	}
	newRoot, err := s.TreeHash(ctx, 350)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckTree(p, 350, newRoot, 250, root); err != nil {
		t.Errorf("consistency 250 -> 350: %v", err)
	}
	all := storetest.All(t, s, eventlog.Filter{Agent: "pc-001", Limit: eventlog.MaxLimit})
	if len(all) != 300 {
		t.Fatalf("pc-001 has %d events, want 300", len(all))
	}
	for i, st := range all {
		if st.Hash != a[i].Hash {
			t.Fatalf("event %d: hash %s, want %s", i, st.Hash, a[i].Hash)
		}
	}
}

// TestPostgresRefusesNUL: text PostgreSQL cannot hold is refused with the
// batch alone, not by failing the group commit it would have joined.
func TestPostgresRefusesNUL(t *testing.T) {
	srv := startPG(t)
	s := openPG(t, srv.schema(t))
	defer s.Close()
	ctx := context.Background()
	evs := storetest.Chain("pc-001", 1, 3, "")
	evs[1].Object = "a\x00b"
	if err := evs[1].Seal(evs[0].Hash); err != nil {
		t.Fatal(err)
	}
	evs[2].Seal(evs[1].Hash)
	if _, err := s.Append(ctx, "pc-001", evs); !errors.Is(err, event.ErrInvalid) || !strings.Contains(err.Error(), "NUL") {
		t.Fatalf("Append with NUL: err = %v", err)
	}
	if r, err := s.Append(ctx, "pc-002", storetest.Chain("pc-002", 1, 3, "")); err != nil || r.Stored != 3 {
		t.Fatalf("other agent: %+v, %v", r, err)
	}
}

// TestPostgresPrune: retention clears payloads and keeps the log provable.
func TestPostgresPrune(t *testing.T) {
	srv := startPG(t)
	s := openPG(t, srv.schema(t))
	defer s.Close()
	ctx := context.Background()
	evs := storetest.Chain("pc-001", 1, 20, "")
	if _, err := s.Append(ctx, "pc-001", evs); err != nil {
		t.Fatal(err)
	}
	root, _ := s.TreeHash(ctx, 20)
	cutoff := evs[10].Time // events 1..10 are older
	n, err := s.Prune(ctx, cutoff)
	if err != nil || n != 10 {
		t.Fatalf("Prune = %d, %v; want 10", n, err)
	}
	all := storetest.All(t, s, eventlog.Filter{})
	for i, st := range all {
		if st.Pruned != (i < 10) || st.Hash != evs[i].Hash {
			t.Errorf("event %d: pruned %v, hash %s", i, st.Pruned, st.Hash)
		}
	}
	if got, err := s.TreeHash(ctx, 20); err != nil || got != root {
		t.Errorf("tree hash after prune = %v, %v; want %v", got, err, root)
	}
	if n, err := s.Prune(ctx, cutoff); err != nil || n != 0 {
		t.Errorf("second Prune = %d, %v; want 0", n, err)
	}
}

// BenchmarkIngestBackends compares batch ingest on SQLite and PostgreSQL with
// the same batch shape (BenchmarkAppend's). PostgreSQL runs on the throwaway
// cluster (fsync on) or MAMORI_TEST_PG_DSN; cpu-ns/event is this process
// only, not the PostgreSQL server. Use a fixed count, e.g.
// -benchtime=100000x.
func BenchmarkIngestBackends(b *testing.B) {
	shapes := [][2]int{{16, 100}, {16, 500}, {64, 100}}
	for _, c := range shapes {
		b.Run(fmt.Sprintf("backend=sqlite/writers=%d/batch=%d", c[0], c[1]), func(b *testing.B) {
			s := openTemp(b)
			defer s.Close()
			benchIngest(b, s, c[0], c[1])
		})
	}
	srv := startPG(b) // after SQLite, so a missing server skips only these
	for _, c := range shapes {
		b.Run(fmt.Sprintf("backend=postgres/writers=%d/batch=%d", c[0], c[1]), func(b *testing.B) {
			s := openPG(b, srv.schema(b))
			defer s.Close()
			benchIngest(b, s, c[0], c[1])
		})
	}
}
