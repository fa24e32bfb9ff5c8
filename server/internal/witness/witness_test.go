package witness

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mamori/mamori/shared/evidence"
)

// memLog is a signed Merkle log in memory that a test can roll back or
// fork, served as GET /api/v1/checkpoint is.
type memLog struct {
	mu     sync.Mutex
	hashes []tlog.Hash
	n      int64
	signer note.Signer
}

func (m *memLog) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		if x >= int64(len(m.hashes)) {
			return nil, fmt.Errorf("no hash %d", x)
		}
		out[i] = m.hashes[x]
	}
	return out, nil
}

func (m *memLog) add(t *testing.T, k int, tag string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for range k {
		hs, err := tlog.StoredHashes(m.n, []byte(tag+strconv.FormatInt(m.n, 10)), m)
		if err != nil {
			t.Fatal(err)
		}
		m.hashes = append(m.hashes, hs...)
		m.n++
	}
}

// truncate rolls the log back to n records.
func (m *memLog) truncate(n int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hashes, m.n = m.hashes[:tlog.StoredHashCount(n)], n
}

func (m *memLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	defer m.mu.Unlock()
	root, err := tlog.TreeHash(m.n, m)
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	cp, _ := evidence.Sign(evidence.Checkpoint{Origin: m.signer.Name(), Size: m.n, Root: root}, m.signer)
	ans := checkpointAnswer{Checkpoint: string(cp)}
	if since, _ := strconv.ParseInt(r.URL.Query().Get("since"), 10, 64); since > 0 && since <= m.n {
		p, err := tlog.ProveTree(m.n, since, m)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		ans.Since = since
		for _, h := range p {
			ans.Proof = append(ans.Proof, h.String())
		}
	}
	json.NewEncoder(w).Encode(ans)
}

// The witness against a log rolled back (smaller, or the same size with
// another root, or rewritten and grown past the size kept): each is
// reported as ErrFork, recorded in alarm.json and kept failing; growth
// before it is accepted.
func TestWitnessRollbackAndFork(t *testing.T) {
	skey, vkey, err := note.GenerateKey(rand.Reader, "mamori/test")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	verifier, _ := note.NewVerifier(vkey)
	for name, c := range map[string]struct {
		attack func(m *memLog)
		want   string
	}{
		"rolled back":           {func(m *memLog) { m.truncate(20) }, "rolled back"},
		"same size, other root": {func(m *memLog) { m.truncate(20); m.add(t, 10, "other") }, "different roots"},
		"rewritten and grown":   {func(m *memLog) { m.truncate(20); m.add(t, 40, "other") }, "does not extend"},
		// A server whose log key was replaced (a new data dir, a new
		// server): nothing it signs can be held to what was kept.
		"another log key": {func(m *memLog) {
			k, _, _ := note.GenerateKey(rand.Reader, "mamori/test")
			m.signer, _ = note.NewSigner(k)
			m.add(t, 10, "real")
		}, "another key"},
	} {
		t.Run(name, func(t *testing.T) {
			m := &memLog{signer: signer}
			srv := httptest.NewServer(m)
			defer srv.Close()
			w := &Witness{Server: srv.URL, Token: "t", Verifier: verifier, StateDir: t.TempDir(), Log: zerolog.Nop()}
			ctx := context.Background()
			for i := range 3 {
				m.add(t, 10, "real")
				res, err := w.Check(ctx)
				if err != nil || !res.Grown || res.Seen != int64(10*(i+1)) {
					t.Fatalf("round %d: %+v, %v", i, res, err)
				}
			}
			c.attack(m)
			_, err := w.Check(ctx)
			if !errors.Is(err, ErrFork) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("after the attack: %v", err)
			}
			b, err := os.ReadFile(filepath.Join(w.StateDir, FileAlarm))
			if err != nil || !strings.Contains(string(b), c.want) {
				t.Fatalf("alarm.json: %s, %v", b, err)
			}
			// The kept checkpoint is not replaced by the server's.
			if k, err := Pick(w.StateDir, 1<<62, nil); err != nil || k.Size != 30 {
				t.Fatalf("kept %+v, %v", k, err)
			}
			m.add(t, 50, "more")
			if _, err := w.Check(ctx); !errors.Is(err, ErrFork) || !strings.Contains(err.Error(), "not cleared") {
				t.Fatalf("next round: %v", err)
			}
		})
	}
}

// A witness the server stops answering (its token revoked, or the server's
// etcd, which holds the tokens, replaced) is reported once checks have
// failed for SilentAfter, and again when it checks again; before Watch, the
// witness logged a warning each minute and nobody heard of it.
func TestWitnessSilencedIsReported(t *testing.T) {
	skey, vkey, err := note.GenerateKey(rand.Reader, "mamori/test")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	verifier, _ := note.NewVerifier(vkey)
	m := &memLog{signer: signer}
	m.add(t, 10, "real")
	var refuse sync.Mutex // held: the server answers 401
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !refuse.TryLock() {
			http.Error(w, `{"error":"unknown or revoked token"}`, http.StatusUnauthorized)
			return
		}
		refuse.Unlock()
		m.ServeHTTP(w, r)
	}))
	defer srv.Close()
	posts := make(chan Alarm, 10)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a Alarm
		if err := json.NewDecoder(r.Body).Decode(&a); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		posts <- a
	}))
	defer hook.Close()
	w := &Witness{Server: srv.URL, Token: "t", Verifier: verifier, StateDir: t.TempDir(), Webhook: hook.URL,
		Log: zerolog.Nop(), SilentAfter: 200 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var mu sync.Mutex
	var failures int
	go func() {
		done <- w.Watch(ctx, 20*time.Millisecond, func(_ Result, err error) {
			if err != nil {
				mu.Lock()
				failures++
				mu.Unlock()
			}
		})
	}()
	waitKept := func() {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if k, err := Pick(w.StateDir, 1<<62, nil); err == nil && k.Size == m.n {
				return
			}
		}
		t.Fatalf("the witness did not keep a checkpoint of size %d", m.n)
	}
	waitKept()
	refuse.Lock()
	select {
	case a := <-posts:
		if a.Kind != KindCannotCheck || !strings.Contains(a.Reason, "401") || !strings.Contains(a.Reason, "accepted before") {
			t.Fatalf("first notice: %+v", a)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no cannot_check notice after the server refused the witness's token")
	}
	mu.Lock()
	if failures < 2 {
		t.Errorf("reported after %d failed checks, want several over SilentAfter", failures)
	}
	mu.Unlock()
	time.Sleep(100 * time.Millisecond)
	select {
	case a := <-posts:
		t.Fatalf("a second notice while still failing: %+v", a)
	default:
	}
	m.add(t, 5, "real")
	refuse.Unlock()
	select {
	case a := <-posts:
		if a.Kind != KindCheckingAgain {
			t.Fatalf("second notice: %+v", a)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no checking_again notice once the server answered")
	}
	waitKept()
	if _, err := os.Stat(filepath.Join(w.StateDir, FileAlarm)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failure to check raised the sticky fork alarm: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Watch: %v", err)
	}
}
