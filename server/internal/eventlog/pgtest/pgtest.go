// Package pgtest gives tests a PostgreSQL server: MAMORI_TEST_PG_DSN when
// set, else a throwaway cluster (initdb + pg_ctl, as the postgres user when
// running as root) on a unix socket, or a skip that says what is missing.
// Each test takes its own schema, so the event store's conformance suite and
// the server's own tests share one cluster per test.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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
)

// Server is a PostgreSQL server for tests: MAMORI_TEST_PG_DSN if set, else a
// throwaway cluster on a unix socket.
type Server struct {
	dsn  string // admin DSN
	data string // cluster directory, "" for an external server
	ctl  func(args ...string) *exec.Cmd
}

// Start returns a server or skips the test saying why there is none.
func Start(tb testing.TB) *Server {
	tb.Helper()
	if dsn := os.Getenv("MAMORI_TEST_PG_DSN"); dsn != "" {
		return &Server{dsn: dsn}
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
	s := &Server{
		data: data,
		dsn:  "postgres://postgres@/postgres?sslmode=disable&host=" + url.QueryEscape(dir),
		ctl:  func(args ...string) *exec.Cmd { return cmd("pg_ctl", append([]string{"-D", data}, args...)...) },
	}
	s.start(tb, dir)
	tb.Cleanup(func() { s.ctl("stop", "-m", "immediate").Run() })
	return s
}

func (s *Server) start(tb testing.TB, sock string) {
	tb.Helper()
	out, err := s.ctl("start", "-w", "-l", filepath.Join(s.data, "server.log"),
		"-o", "-k "+sock+" -c listen_addresses= -c max_connections=60").CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(s.data, "server.log"))
		tb.Fatalf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
}

// CanCrash reports whether Crash works: only on a cluster the test started.
func (s *Server) CanCrash() bool { return s.data != "" }

// Crash stops the server as a power cut would (no shutdown checkpoint) and
// starts it again, so that WAL recovery runs.
func (s *Server) Crash(tb testing.TB) {
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

// Schema creates an empty schema, dropped when the test ends, and returns a
// DSN whose search_path selects it.
func (s *Server) Schema(tb testing.TB) string {
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
