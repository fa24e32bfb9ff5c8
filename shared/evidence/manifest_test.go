package evidence

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/mamori/mamori/shared/event"
)

func problems(rep *Report) string {
	var all []string
	for _, p := range rep.Problems {
		all = append(all, p.String())
	}
	return strings.Join(all, "\n")
}

// trailerNote returns the manifest note of a bundle's last line.
func trailerNote(t *testing.T, ls [][]byte) string {
	t.Helper()
	var tr Trailer
	if err := json.Unmarshal(ls[len(ls)-1], &tr); err != nil || tr.Manifest == "" {
		t.Fatalf("last line is not a manifest: %v %.80s", err, ls[len(ls)-1])
	}
	return tr.Manifest
}

func setTrailer(ls [][]byte, msg string) {
	ls[len(ls)-1], _ = json.Marshal(Trailer{Manifest: msg})
}

// retype turns the entry on line ls[i] into a link, or a link back into its
// full event (as someone holding another export could).
func retype(t *testing.T, f *fixture, ls [][]byte, i int) {
	t.Helper()
	var en Entry
	if err := json.Unmarshal(ls[i], &en); err != nil {
		t.Fatal(err)
	}
	if en.Event != nil {
		en.Link, en.Event = LinkOf(en.Event), nil
	} else {
		en.Event, en.Link = &f.events[en.Index], nil
	}
	ls[i], _ = json.Marshal(en)
}

// Every way of making a bundle say less (or other) than the server exported
// fails, and the problem says what was done.
func TestManifestCompleteness(t *testing.T) {
	f := newFixture(t, 2, 10) // ag-0 and ag-1 interleaved: line 2 is ag-0 seq 1, the last entry ag-1 seq 10
	onlyAg1 := func(e *event.Event) bool { return e.Agent == "ag-1" }
	skey, _, err := note.GenerateKey(rand.Reader, "mamori/test-server")
	if err != nil {
		t.Fatal(err)
	}
	impostor, _ := note.NewSigner(skey) // the log's name, another key

	cases := map[string]struct {
		bundle func() []byte
		mut    func(t *testing.T, ls [][]byte) [][]byte
		want   []string
	}{
		"drop first": {mut: func(t *testing.T, ls [][]byte) [][]byte { return append(ls[:1:1], ls[2:]...) },
			want: []string{"line 21: the manifest lists 20 entries (20 events, 0 links), the bundle holds 19 (19 events, 0 links): 1 entry missing",
				"agent ag-0: the manifest lists seq 1..10 (10 entries), the bundle holds seq 2..10 (9 entries): entries changed at its start"}},
		"drop last": {mut: func(t *testing.T, ls [][]byte) [][]byte {
			n := len(ls)
			return append(ls[:n-2:n-2], ls[n-1])
		}, want: []string{"1 entry missing", "agent ag-1: the manifest lists seq 1..10 (10 entries), the bundle holds seq 1..9 (9 entries): entries changed at its end"}},
		"drop all": {mut: func(t *testing.T, ls [][]byte) [][]byte { return [][]byte{ls[0], ls[len(ls)-1]} },
			want: []string{"the bundle holds 0 (0 events, 0 links): every entry removed",
				"agent ag-0: the manifest lists seq 1..10 (10 entries), the bundle holds none of them: removed"}},
		"drop the manifest": {mut: func(t *testing.T, ls [][]byte) [][]byte { return ls[:len(ls)-1] },
			want: []string{"line 22: no signed manifest after the last entry: the bundle was cut short"}},
		"drop the last entry and the manifest": {mut: func(t *testing.T, ls [][]byte) [][]byte { return ls[:len(ls)-2] },
			want: []string{"line 21: no signed manifest"}},
		"repeat an entry": {mut: func(t *testing.T, ls [][]byte) [][]byte {
			return append(ls[:3:3], ls[2:]...)
		}, want: []string{"out of order", "1 entry added"}},
		"entry after the manifest": {mut: func(t *testing.T, ls [][]byte) [][]byte {
			return append(ls, ls[len(ls)-2])
		}, want: []string{"line 23: entry after the manifest (line 22): lines were appended"}},
		"event turned into a link": {mut: func(t *testing.T, ls [][]byte) [][]byte {
			retype(t, f, ls, 5)
			return ls
		}, want: []string{"line 22: the manifest lists 20 events and 0 links, the bundle holds 19 events and 1 links: entries were re-typed"}},
		"an event and a link swap kinds": {bundle: func() []byte { return f.bundle(t, onlyAg1) }, mut: func(t *testing.T, ls [][]byte) [][]byte {
			retype(t, f, ls, 2) // ag-1 seq 1: event -> link
			retype(t, f, ls, 3) // ag-0 seq 2: link -> event
			return ls
		}, want: []string{"entries differ from those the server signed"}},
		"a link's prev changed": {bundle: func() []byte { return f.bundle(t, onlyAg1) }, mut: func(t *testing.T, ls [][]byte) [][]byte {
			// ag-0's first link: its prev is the start of the chain, so no
			// chain check sees it; only the manifest's digest does.
			var en Entry
			json.Unmarshal(ls[1], &en)
			en.Link.Prev = strings.Repeat("0", 64)
			ls[1], _ = json.Marshal(en)
			return ls
		}, want: []string{"entries differ from those the server signed"}},
		"filters changed in the manifest text": {mut: func(t *testing.T, ls [][]byte) [][]byte {
			msg := trailerNote(t, ls)
			changed := strings.Replace(msg, "query agent=ag-2\n", "query agent=ag-1\n", 1)
			if changed == msg {
				t.Fatalf("no query line in\n%s", msg)
			}
			setTrailer(ls, changed)
			return ls
		}, want: []string{"line 22: manifest: evidence: manifest signature", "changed after signing or signed by another key"}},
		"filters changed in the header": {mut: func(t *testing.T, ls [][]byte) [][]byte {
			ls[0] = bytes.Replace(ls[0], []byte(`"agent":"ag-2"`), []byte(`"agent":"ag-1"`), 1)
			return ls
		}, want: []string{`header query "agent=ag-1" is not the signed manifest's "agent=ag-2": the export's filters were changed`}},
		"manifest signed by another key": {bundle: func() []byte { return f.bundleSigned(t, nil, impostor) },
			want: []string{"manifest: evidence: manifest signature: note has no verifiable signatures"}},
		"manifest of another export": {mut: func(t *testing.T, ls [][]byte) [][]byte {
			other := lines(f.bundle(t, onlyAg1))
			ls[len(ls)-1] = other[len(other)-1]
			return ls
		}, want: []string{"header created", "the manifest lists 10 events and 10 links, the bundle holds 20 events and 0 links: entries were re-typed"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var b []byte
			if c.bundle != nil {
				b = c.bundle()
			} else {
				b = f.bundle(t, nil)
			}
			ls := lines(b)
			if c.mut != nil {
				ls = c.mut(t, ls)
			}
			rep := verify(t, f, join(ls), VerifyOptions{})
			if rep.OK() {
				t.Fatal("bundle verified")
			}
			all := problems(rep)
			t.Log(all)
			for _, w := range c.want {
				if !strings.Contains(all, w) {
					t.Errorf("problems do not name %q:\n%s", w, all)
				}
			}
		})
	}
}

// The untouched bundles of the cases above verify, and their manifest is
// reported.
func TestManifestIntact(t *testing.T) {
	f := newFixture(t, 2, 10)
	rep := verify(t, f, f.bundle(t, func(e *event.Event) bool { return e.Agent == "ag-1" }, 10), VerifyOptions{})
	if !rep.OK() {
		t.Fatal(problems(rep))
	}
	m := rep.Manifest
	if m == nil || m.Events != 10 || m.Links != 10 || m.Size != 20 || m.Query["agent"] != "ag-2" ||
		len(m.Older) != 1 || m.Older[0] != 10 || m.Agents["ag-0"] != (AgentRange{1, 10, 10}) {
		t.Fatalf("manifest %+v", m)
	}
}

func TestFormatV1Refused(t *testing.T) {
	f := newFixture(t, 1, 3)
	b := bytes.Replace(f.bundle(t, nil), []byte(`"format":"`+Format+`"`), []byte(`"format":"`+FormatV1+`"`), 1)
	_, err := Verify(bytes.NewReader(b), f.verif, VerifyOptions{})
	if err == nil || !strings.Contains(err.Error(), "has no signed manifest") || !strings.Contains(err.Error(), "export the bundle again") {
		t.Fatalf("v1 bundle: %v", err)
	}
}

// The manifest's text is canonical: what Text writes parses back to the
// same manifest, and any other spelling of it is refused.
func TestManifestText(t *testing.T) {
	m := &Manifest{Origin: "mamori/srv1", Size: 1234, Created: time.Date(2026, 11, 2, 3, 4, 5, 6, time.UTC),
		Query:  map[string]string{"object_prefix": `D:\顧客 2026`, "type": "file.modified", "x": "a&b=c\n"},
		Older:  []int64{100, 1000},
		Events: 40, Links: 20,
		Agents: map[string]AgentRange{"pc a/ü": {1, 40, 40}, "server": {7, 26, 20}}}
	m.Root[0], m.Digest[31] = 1, 2
	text := m.Text()
	want := "mamori-evidence-manifest/v2\norigin mamori/srv1\ncheckpoint 1234 AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n" +
		"created 2026-11-02T03:04:05.000000006Z\nquery object_prefix=D%3A%5C%E9%A1%A7%E5%AE%A2+2026&type=file.modified&x=a%26b%3Dc%0A\n" +
		"older 100 1000\nentries 60 events 40 links 20\nagent pc+a%2F%C3%BC 1 40 40\nagent server 7 26 20\n" +
		"sha256 0000000000000000000000000000000000000000000000000000000000000002\n"
	if text != want {
		t.Fatalf("text:\n%s\nwant:\n%s", text, want)
	}
	back, err := ParseManifest(text)
	if err != nil || back.Text() != text || back.Query["x"] != "a&b=c\n" || back.Agents["pc a/ü"] != (AgentRange{1, 40, 40}) {
		t.Fatalf("round trip: %v %+v", err, back)
	}
	for _, bad := range []string{
		strings.Replace(text, "entries 60", "entries 61", 1),
		strings.Replace(text, "older 100 1000", "older  100 1000", 1),
		strings.Replace(text, "agent server", "agent  server", 1),
		strings.Replace(text, "mamori-evidence-manifest/v2", "mamori-evidence-manifest/v3", 1),
		strings.Replace(text, "sha256 0", "sha256 ", 1),
		"mamori/srv1\n1234\nAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", // a checkpoint
	} {
		if _, err := ParseManifest(bad); err == nil {
			t.Errorf("accepted:\n%s", bad)
		}
	}
	// Nor does a manifest parse as a checkpoint, though the same key signs both.
	if _, err := ParseCheckpoint(text); err == nil {
		t.Error("manifest parsed as a checkpoint")
	}
}
