package state

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func testLog(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t))
}

func openTest(t *testing.T, dir string) *State {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, Config{DataDir: dir, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestOpenSmoke(t *testing.T) {
	start := time.Now()
	s := openTest(t, t.TempDir())
	t.Logf("ready in %v endpoint %s", time.Since(start), s.Endpoint())
	rev, err := s.PutJSON(context.Background(), "x/y", map[string]int{"a": 1}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]int
	if _, err := s.GetJSON(context.Background(), "x/y", &v); err != nil || v["a"] != 1 {
		t.Fatal(err, v, rev)
	}
	_ = os.Getpid()
}
