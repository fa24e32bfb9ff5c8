package report

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/register"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/evidence"
)

// fixture is a report service over real dependencies, with helpers to
// write agent and server events and sign checkpoints at given times.
type fixture struct {
	t      *testing.T
	d      deps
	signer note.Signer
	svc    *Service
	prev   map[string]string
	seq    map[string]uint64
}

func newFixture(t *testing.T, now time.Time, agents []Agent) *fixture {
	t.Helper()
	skey, vkey, _ := note.GenerateKey(rand.Reader, "mamori/test")
	signer, _ := note.NewSigner(skey)
	v, _ := note.NewVerifier(vkey)
	f := &fixture{t: t, d: newDeps(t), signer: signer, prev: map[string]string{}, seq: map[string]uint64{}}
	svc, err := New(Config{Store: f.d.store, Registers: f.d.regs, Incidents: f.d.incs, Verifier: v,
		Now: func() time.Time { return now }, Agents: func(context.Context) ([]Agent, error) { return agents, nil }})
	if err != nil {
		t.Fatal(err)
	}
	f.svc = svc
	return f
}

// emit appends agent events (Agent set) in order.
func (f *fixture) emit(evs ...event.Event) {
	f.t.Helper()
	for _, e := range evs {
		f.seq[e.Agent]++
		e.Seq = f.seq[e.Agent]
		if e.Severity == "" {
			e.Severity = event.Info
		}
		if err := e.Seal(f.prev[e.Agent]); err != nil {
			f.t.Fatal(err)
		}
		f.prev[e.Agent] = e.Hash
		if _, err := f.d.store.Append(context.Background(), e.Agent, []event.Event{e}); err != nil {
			f.t.Fatal(err)
		}
	}
}

func (f *fixture) server(e event.Event) {
	f.t.Helper()
	if e.Severity == "" {
		e.Severity = event.Info
	}
	if _, err := f.d.store.AppendServer(context.Background(), e); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) checkpoint(at time.Time) {
	f.t.Helper()
	ctx := context.Background()
	n, _ := f.d.store.TreeSize(ctx)
	root, err := f.d.store.TreeHash(ctx, n)
	if err != nil {
		f.t.Fatal(err)
	}
	msg, err := evidence.Sign(evidence.Checkpoint{Origin: f.signer.Name(), Size: n, Root: root}, f.signer)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.d.store.PutCheckpoint(ctx, eventlog.Checkpoint{Size: n, Root: root, Note: string(msg), Created: at}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) entry(id, dept string) {
	f.t.Helper()
	if _, err := f.d.regs.Create(context.Background(), "admin", &register.PIEntry{Meta: register.Meta{ID: id}, Name: "名簿 " + id,
		Purpose: "業務", RecordCount: 10, Medium: "electronic", Owner: "山田", Locations: []register.Location{{Host: "PC-A", Folder: `D:\名簿`}},
		Department: dept, Retention: "5y", DisposalMethod: "データ消去", LastReviewed: "2026-10-01"}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) build(from, to time.Time, dept string) *Report {
	f.t.Helper()
	r, err := f.svc.Build(context.Background(), Params{From: from, To: to, Department: dept})
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}
