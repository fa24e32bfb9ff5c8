package election

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/mamori/mamori/server/internal/state"
)

// etcd starts a real embedded single-node etcd and returns a client of it.
func etcd(t *testing.T) *clientv3.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := state.Open(ctx, state.Config{DataDir: t.TempDir(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st.Client()
}

func candidate(t *testing.T, cli *clientv3.Client, url string) *Candidate {
	t.Helper()
	c, err := New(Config{Client: cli, URL: url, TTL: 2 * time.Second, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func wait(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// The first candidate wins at once; a second waits while the first holds
// its lease, takes over with a larger epoch when the first's lease ends
// (revoked here, as etcd does when a frozen writer stops renewing it), and
// the first's Lost fires.
func TestCampaignLossTakeover(t *testing.T) {
	cli := etcd(t)
	ctx := context.Background()
	a, b := candidate(t, cli, "https://a:8443"), candidate(t, cli, "https://b:8443")
	ta, err := a.Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ta.Epoch <= 0 {
		t.Fatalf("epoch %d", ta.Epoch)
	}
	if w, err := b.Current(ctx); err != nil || w.URL != "https://a:8443" || w.Epoch != ta.Epoch {
		t.Fatalf("current = %+v, %v", w, err)
	}
	var (
		tb   *Term
		berr error
		won  = make(chan struct{})
	)
	go func() { tb, berr = b.Campaign(ctx); close(won) }()
	// b must not win while a's lease is alive (well past its TTL).
	select {
	case <-won:
		t.Fatalf("second candidate elected while the first holds the lease: %v", berr)
	case <-time.After(3 * time.Second):
	}
	select {
	case <-ta.Lost():
		t.Fatal("term lost while its lease is renewed")
	default:
	}
	if _, err := cli.Revoke(ctx, ta.session.Lease()); err != nil {
		t.Fatal(err)
	}
	wait(t, "the first term's loss", ta.Lost())
	wait(t, "the second candidate's election", won)
	if berr != nil {
		t.Fatal(berr)
	}
	if tb.Epoch <= ta.Epoch {
		t.Fatalf("epoch went from %d to %d", ta.Epoch, tb.Epoch)
	}
	if w, err := a.Current(ctx); err != nil || w.URL != "https://b:8443" || w.Epoch != tb.Epoch {
		t.Fatalf("current after takeover = %+v, %v", w, err)
	}
	if err := tb.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	wait(t, "the resigned term's loss", tb.Lost())
	if _, err := a.Current(ctx); !errors.Is(err, ErrNoWriter) {
		t.Fatalf("current after resign: %v", err)
	}
}

// A writer whose etcd client goes away (the process lost etcd) loses its
// term once the lease cannot be renewed; the other candidate takes over.
func TestLossOnSessionClose(t *testing.T) {
	cli := etcd(t)
	ctx := context.Background()
	own, err := clientv3.New(clientv3.Config{Endpoints: cli.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	a := candidate(t, own, "https://a:8443")
	ta, err := a.Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b := candidate(t, cli, "https://b:8443")
	won := make(chan *Term, 1)
	go func() {
		tb, err := b.Campaign(ctx)
		if err != nil {
			t.Error(err)
		}
		won <- tb
	}()
	// Closing the client stops the keep-alives without revoking the lease:
	// etcd ends it after the TTL, as for a frozen process.
	own.Close()
	wait(t, "the term's loss", ta.Lost())
	select {
	case tb := <-won:
		if tb == nil || tb.Epoch <= ta.Epoch {
			t.Fatalf("takeover term %+v after epoch %d", tb, ta.Epoch)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no takeover after the writer's lease ended")
	}
}

// Observe reports each writer as it changes and the gap between them.
func TestObserve(t *testing.T) {
	cli := etcd(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		mu   sync.Mutex
		seen []string
		upd  = make(chan struct{}, 16)
	)
	obs := candidate(t, cli, "https://observer:8443")
	go obs.Observe(ctx, func(w Writer) {
		mu.Lock()
		seen = append(seen, w.URL)
		mu.Unlock()
		upd <- struct{}{}
	})
	waitFor := func(want string) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			mu.Lock()
			last := ""
			if len(seen) > 0 {
				last = seen[len(seen)-1]
			}
			n := len(seen)
			mu.Unlock()
			if n > 0 && last == want {
				return
			}
			select {
			case <-upd:
			case <-deadline:
				t.Fatalf("observed %q, want %q last", seen, want)
			}
		}
	}
	waitFor("")
	ta, err := candidate(t, cli, "https://a:8443").Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitFor("https://a:8443")
	if err := ta.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor("")
	if _, err := candidate(t, cli, "https://b:8443").Campaign(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor("https://b:8443")
}

// A restarted node (same URL) is elected at once: the key its killed
// process left, with a lease far from running out, is its own past life.
// Another node's key is left alone.
func TestRestartedNodeEndsItsPastLife(t *testing.T) {
	cli := etcd(t)
	ctx := context.Background()
	long := func(url string) *Candidate {
		c, err := New(Config{Client: cli, URL: url, TTL: time.Hour, Log: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	old, err := long("https://a:8443").Campaign(ctx) // never resigned: killed
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	term, err := long("https://a:8443").Campaign(cctx)
	if err != nil {
		t.Fatalf("restarted node not elected: %v", err)
	}
	if term.Epoch <= old.Epoch {
		t.Fatalf("epoch %d after %d", term.Epoch, old.Epoch)
	}
	t.Logf("restarted node elected in %v", time.Since(t0).Round(time.Millisecond))
	// Another node waits: its campaign does not end the writer's lease.
	bctx, bcancel := context.WithTimeout(ctx, 2*time.Second)
	defer bcancel()
	if _, err := long("https://b:8443").Campaign(bctx); err == nil {
		t.Fatal("another node took over a live writer")
	}
	if w, err := long("https://c:8443").Current(ctx); err != nil || w.URL != "https://a:8443" || w.Epoch != term.Epoch {
		t.Fatalf("current writer %+v %v", w, err)
	}
}
