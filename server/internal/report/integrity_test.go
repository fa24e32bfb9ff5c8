package report

import (
	"context"
	"crypto/rand"
	"fmt"
	"html"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/evidence"
)

// The log-integrity statement does not say the period's records are
// intact when the server itself recorded, within the period, that the
// stored log no longer matched its tree (the scrubber) or that acked
// events were lost (an old backup restored); agent-side gaps are listed.
func TestIntegrityStatementNamesProblemsOfThePeriod(t *testing.T) {
	ctx := context.Background()
	d := newDeps(t)
	store, regs, incs := d.store, d.regs, d.incs
	skey, vkey, _ := note.GenerateKey(rand.Reader, "mamori/test")
	signer, _ := note.NewSigner(skey)
	v, _ := note.NewVerifier(vkey)
	svc, err := New(Config{Store: store, Registers: regs, Incidents: incs, Verifier: v,
		Agents: func(context.Context) ([]Agent, error) { return nil, nil }})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	from := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, JST).AddDate(0, 0, -1)
	appendAt := func(typ string, at time.Time) {
		t.Helper()
		if _, err := store.AppendServer(ctx, event.Event{Control: "server", Type: typ, Severity: event.Violation, Object: "log", Time: at.UTC()}); err != nil {
			t.Fatal(err)
		}
	}
	checkpoint := func(at time.Time) {
		t.Helper()
		n, _ := store.TreeSize(ctx)
		root, err := store.TreeHash(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := evidence.Sign(evidence.Checkpoint{Origin: signer.Name(), Size: n, Root: root}, signer)
		if err != nil {
			t.Fatal(err)
		}
		if err := store.PutCheckpoint(ctx, eventlog.Checkpoint{Size: n, Root: root, Note: string(msg), Created: at}); err != nil {
			t.Fatal(err)
		}
	}
	appendAt("server.test", from.Add(-time.Hour))
	checkpoint(from.Add(-time.Minute))
	appendAt("server.test", from.Add(time.Hour))
	checkpoint(from.Add(2 * time.Hour))
	build := func() Integrity {
		t.Helper()
		r, err := svc.Build(ctx, Params{From: from, To: from.AddDate(0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		return r.Integrity
	}
	if in := build(); !in.Verified || len(in.Problems) != 0 || !strings.Contains(in.Statement, "削除・改ざんされていません") {
		t.Fatalf("clean period: %+v", in)
	}
	// The printed report names the key that signed its checkpoints and
	// carries the signed note of the period's end, for the auditor to keep
	// and hold later bundles to (verify --checkpoint).
	r, err := svc.Build(ctx, Params{From: from, To: from.AddDate(0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var page strings.Builder
	if err := r.HTML(&page); err != nil {
		t.Fatal(err)
	}
	key := fmt.Sprintf("%s+%08x", v.Name(), v.KeyHash())
	text := html.UnescapeString(page.String())
	if r.Integrity.Key != key || !strings.Contains(text, key) || !strings.Contains(text, r.Integrity.EndNote) {
		t.Errorf("report lacks the key %q or the end checkpoint's note:\n%s", key, page.String()[strings.Index(page.String(), "9. ログの完全性"):])
	}
	appendAt(eventlog.GapType, from.Add(3*time.Hour))
	if in := build(); !in.Verified || in.Problems[eventlog.GapType] != 1 || !strings.Contains(in.Statement, "連番の欠落 1 件") {
		t.Errorf("a gap: %+v", in)
	}
	appendAt("server.scrub_failed", from.Add(4*time.Hour))
	in := build()
	if in.Verified || in.Problems["server.scrub_failed"] != 1 || strings.Contains(in.Statement, "削除・改ざんされていません") ||
		!strings.Contains(in.Statement, "再検証で不一致 1 件") {
		t.Errorf("a scrub failure: %+v", in)
	}
	appendAt("server.scrub_failed", from.AddDate(0, 0, 3)) // after the period: not counted
	if in := build(); in.Problems["server.scrub_failed"] != 1 {
		t.Errorf("problems after the period counted: %+v", in.Problems)
	}
}
