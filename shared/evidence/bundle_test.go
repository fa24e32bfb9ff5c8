package evidence

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mamori/mamori/shared/event"
)

// memLog is an in-memory RFC 6962 log, as the server's store keeps one.
type memLog struct {
	stored []tlog.Hash
	n      int64
}

func (m *memLog) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		if x >= int64(len(m.stored)) {
			return nil, fmt.Errorf("no hash %d", x)
		}
		out[i] = m.stored[x]
	}
	return out, nil
}

func (m *memLog) add(t *testing.T, eventHash string) int64 {
	leaf, err := LeafHash(eventHash)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := tlog.StoredHashesForRecordHash(m.n, leaf, m)
	if err != nil {
		t.Fatal(err)
	}
	m.stored = append(m.stored, hs...)
	m.n++
	return m.n - 1
}

type fixture struct {
	log    *memLog
	events []event.Event // in log order
	signer note.Signer
	vkey   string
	verif  note.Verifier
	cps    map[int64][]byte // signed checkpoints by size
}

func newFixture(t testing.TB, agents, perAgent int) *fixture {
	tt, _ := t.(*testing.T)
	if tt == nil {
		tt = &testing.T{}
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, "mamori/test-server")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := note.NewSigner(skey)
	v, _ := note.NewVerifier(vkey)
	f := &fixture{log: &memLog{}, signer: s, vkey: vkey, verif: v, cps: map[int64][]byte{}}
	prev := map[string]string{}
	t0 := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < perAgent; i++ {
		for a := 0; a < agents; a++ {
			id := fmt.Sprintf("ag-%d", a)
			e := event.Event{Agent: id, Seq: uint64(i + 1), Time: t0.Add(time.Duration(i) * time.Second),
				Control: "fileaccess", Type: "file.modified", Severity: event.Info, User: "CORP\\tanaka",
				Object: fmt.Sprintf(`D:\顧客\%d.xlsx`, i), Attrs: event.Attrs{"size": json.Number("2048")}}
			if err := e.Seal(prev[id]); err != nil {
				t.Fatal(err)
			}
			prev[id] = e.Hash
			f.log.add(tt, e.Hash)
			f.events = append(f.events, e)
			if f.log.n%10 == 0 {
				f.sign(t, f.log.n)
			}
		}
	}
	f.sign(t, f.log.n)
	return f
}

func (f *fixture) sign(t testing.TB, n int64) []byte {
	root, err := tlog.TreeHash(n, f.log)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := Sign(Checkpoint{Origin: "mamori/test-server", Size: n, Root: root}, f.signer)
	if err != nil {
		t.Fatal(err)
	}
	f.cps[n] = msg
	return msg
}

// created makes each bundle's creation time distinct: two bundles made
// within one clock tick (15.6 ms on Windows) would otherwise share it, and
// tests that swap parts between bundles rely on them differing.
var created atomic.Int64

func nextCreated() time.Time {
	return time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC).Add(time.Duration(created.Add(1)) * time.Millisecond)
}

// bundle exports every event of the log; with filter, non-matching events
// become links, as the server's export does.
func (f *fixture) bundle(t testing.TB, filter func(*event.Event) bool, older ...int64) []byte {
	return f.bundleSigned(t, filter, f.signer, older...)
}

// bundleSigned is bundle with the manifest signed by s.
func (f *fixture) bundleSigned(t testing.TB, filter func(*event.Event) bool, s note.Signer, older ...int64) []byte {
	n := f.log.n
	h := Header{Origin: "mamori/test-server", PublicKey: f.vkey, Checkpoint: string(f.cps[n]), Created: nextCreated(),
		Query: map[string]string{"agent": "ag-2"}}
	for _, o := range older {
		p, err := tlog.ProveTree(n, o, f.log)
		if err != nil {
			t.Fatal(err)
		}
		h.Older = append(h.Older, Older{Checkpoint: string(f.cps[o]), Proof: p})
	}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, h, s)
	if err != nil {
		t.Fatal(err)
	}
	for i := range f.events {
		p, err := tlog.ProveRecord(n, int64(i), f.log)
		if err != nil {
			t.Fatal(err)
		}
		en := Entry{Index: int64(i), Proof: p}
		if filter == nil || filter(&f.events[i]) {
			en.Event = &f.events[i]
		} else {
			en.Link = LinkOf(&f.events[i])
		}
		if err := w.Add(&en); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func verify(t *testing.T, f *fixture, b []byte, opt VerifyOptions) *Report {
	t.Helper()
	rep, err := Verify(bytes.NewReader(b), f.verif, opt)
	if err != nil {
		t.Fatal(err)
	}
	// Every problem says what kind it is, so a report can be read in
	// another language than the detail's.
	for _, p := range rep.Problems {
		if !slices.Contains(ProblemKinds, p.Kind) {
			t.Errorf("problem of unlisted kind %q: %s", p.Kind, p)
		}
	}
	return rep
}

func TestBundleVerifies(t *testing.T) {
	f := newFixture(t, 3, 20)
	rep := verify(t, f, f.bundle(t, nil, 10, 30), VerifyOptions{Old: f.cps[30]})
	if !rep.OK() || rep.Events != 60 || len(rep.Agents) != 3 || rep.Agents["ag-1"].Last != 20 {
		t.Fatalf("report %+v", rep)
	}
	// A filtered export keeps the chains provable through links.
	rep = verify(t, f, f.bundle(t, func(e *event.Event) bool { return e.Agent == "ag-2" }), VerifyOptions{})
	if !rep.OK() || rep.Events != 20 || rep.Links != 40 {
		t.Fatalf("filtered report %+v", rep)
	}
}

func lines(b []byte) [][]byte { return bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) }
func join(ls [][]byte) []byte { return append(bytes.Join(ls, []byte("\n")), '\n') }

func TestBundleTamperingIsNamed(t *testing.T) {
	f := newFixture(t, 2, 10)
	good := f.bundle(t, nil)
	otherKey := newFixture(t, 1, 1)

	cases := map[string]struct {
		mut  func([]byte) []byte
		f    *fixture
		want string
	}{
		"one byte of an event": {mut: func(b []byte) []byte {
			ls := lines(b)
			ls[5] = bytes.Replace(ls[5], []byte(`tanaka`), []byte(`tanakb`), 1)
			return join(ls)
		}, want: "line 6 (log index 4, agent ag-0, seq 3): event content"},
		"dropped event": {mut: func(b []byte) []byte {
			ls := lines(b)
			return join(append(ls[:7:7], ls[8:]...))
		}, want: "seq jumps from 3 to 5: 1 event(s) missing"},
		"two reordered": {mut: func(b []byte) []byte {
			ls := lines(b)
			ls[3], ls[5] = ls[5], ls[3]
			return join(ls)
		}, want: "out of order"},
		"another public key": {f: otherKey, want: "checkpoint: evidence: checkpoint signature"},
		"forged proof": {mut: func(b []byte) []byte {
			ls := lines(b)
			var en Entry
			json.Unmarshal(ls[4], &en)
			en.Proof[0][0] ^= 1
			ls[4], _ = json.Marshal(en)
			return join(ls)
		}, want: "not in the signed log at index 3"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			b := append([]byte(nil), good...)
			if c.mut != nil {
				b = c.mut(b)
			}
			vf := f
			if c.f != nil {
				vf = c.f
			}
			rep := verify(t, vf, b, VerifyOptions{})
			if rep.OK() {
				t.Fatal("tampered bundle verified")
			}
			var all []string
			for _, p := range rep.Problems {
				all = append(all, p.String())
			}
			if !strings.Contains(strings.Join(all, "\n"), c.want) {
				t.Fatalf("problems do not name %q:\n%s", c.want, strings.Join(all, "\n"))
			}
		})
	}
}

func TestOldCheckpoint(t *testing.T) {
	f := newFixture(t, 1, 30)
	// The auditor kept the checkpoint at 10; a bundle without a proof from 10
	// cannot show the log only grew.
	rep := verify(t, f, f.bundle(t, nil), VerifyOptions{Old: f.cps[10]})
	if rep.OK() || !strings.Contains(rep.Problems[0].Msg, "since=10") {
		t.Fatalf("%+v", rep.Problems)
	}
	// A rewritten history: a checkpoint at 10 over different leaves.
	g := newFixture(t, 2, 15) // other leaves
	g.signer, g.verif, g.vkey = f.signer, f.verif, f.vkey
	forged := g.sign(t, 10)
	rep = verify(t, f, f.bundle(t, nil, 10), VerifyOptions{Old: forged})
	if rep.OK() || !strings.Contains(rep.Problems[0].Msg, "log rewritten") {
		t.Fatalf("%+v", rep.Problems)
	}
	// A tampered proof from 10 is one problem: the proof fails, not also
	// "holds no consistency proof" for the size it claims.
	ls := lines(f.bundle(t, nil, 10))
	var h Header
	if err := json.Unmarshal(ls[0], &h); err != nil {
		t.Fatal(err)
	}
	h.Older[0].Proof[0][0] ^= 1
	ls[0], _ = json.Marshal(h)
	rep = verify(t, f, join(ls), VerifyOptions{Old: f.cps[10]})
	if rep.OK() || len(rep.Problems) != 1 || rep.Problems[0].Kind != ProblemOlderCheckpoint {
		t.Fatalf("tampered consistency proof: %+v", rep.Problems)
	}
}

func BenchmarkVerifyBundle(b *testing.B) {
	f := newFixture(b, 10, 1000)
	bundle := f.bundle(b, nil)
	b.SetBytes(int64(len(bundle)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rep, err := Verify(bytes.NewReader(bundle), f.verif, VerifyOptions{})
		if err != nil || !rep.OK() {
			b.Fatal(err, rep.Problems)
		}
	}
	b.ReportMetric(float64(b.N*len(f.events))/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(len(bundle))/float64(len(f.events)), "bytes/event")
}

// A header whose checkpoint comes from another (older) export fails every
// proof; the problem that says why comes first, not after them.
func TestCheckpointOfAnotherExportNamedFirst(t *testing.T) {
	f := newFixture(t, 2, 10)
	ls := lines(f.bundle(t, nil))
	var h map[string]any
	if err := json.Unmarshal(ls[0], &h); err != nil {
		t.Fatal(err)
	}
	h["checkpoint"] = string(f.cps[10])
	ls[0], _ = json.Marshal(h)
	rep := verify(t, f, join(ls), VerifyOptions{})
	if rep.OK() || len(rep.Problems) < 2 || !strings.Contains(rep.Problems[0].Msg, "header and manifest come from different exports") {
		var all []string
		for _, p := range rep.Problems {
			all = append(all, p.String())
		}
		t.Fatalf("first problem is not the mix-up:\n%s", strings.Join(all, "\n"))
	}
}

// A seq jump the server itself recorded when it happened (server.gap: the
// agent never delivered those events, e.g. lost with a restored backup)
// is still a problem, and says so, so the auditor is not left to suspect
// events removed from the log afterwards.
func TestMissingSaysTheServerRecordedTheGap(t *testing.T) {
	f := newFixture(t, 1, 3)
	tt := t
	add := func(e event.Event, prev string) event.Event {
		if err := e.Seal(prev); err != nil {
			tt.Fatal(err)
		}
		f.log.add(tt, e.Hash)
		f.events = append(f.events, e)
		return e
	}
	t0 := time.Date(2026, 10, 2, 0, 0, 0, 0, time.UTC)
	lost := event.Event{Agent: "ag-0", Seq: 4, Time: t0, Control: "fileaccess", Type: "file.read", Severity: event.Info}
	_ = lost.Seal(f.events[2].Hash)
	add(event.Event{Agent: "ag-0", Seq: 5, Time: t0.Add(time.Second), Control: "fileaccess", Type: "file.read", Severity: event.Info}, lost.Hash)
	add(event.Event{Agent: event.ServerStream, Seq: 1, Time: t0.Add(time.Second), Control: "agent", Type: "server.gap",
		Severity: event.Warning, Attrs: event.Attrs{"agent": "ag-0", "from_seq": json.Number("4"), "to_seq": json.Number("4")}}, "")
	f.sign(t, f.log.n)
	rep := verify(t, f, f.bundle(t, nil), VerifyOptions{})
	if rep.OK() || len(rep.Problems) != 1 || rep.Problems[0].Kind != ProblemMissing ||
		!strings.Contains(rep.Problems[0].Msg, "the server recorded this gap when it happened") {
		t.Fatalf("%+v", rep.Problems)
	}
}
