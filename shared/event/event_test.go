package event

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func chain(t *testing.T, n int) []Event {
	t.Helper()
	var evs []Event
	prev := ""
	for i := 1; i <= n; i++ {
		e := Event{Agent: "a1", Seq: uint64(i), Time: time.Date(2026, 11, 1, 9, 0, i, 5, time.FixedZone("JST", 9*3600)),
			Control: "fileaccess", Type: "file.modified", Severity: Info, User: "田中", Object: `D:\顧客\名簿.xlsx`,
			Attrs: Attrs{"size": 12345678901234, "n": 1.5, "tag": "<a&b>"}}
		if err := e.Seal(prev); err != nil {
			t.Fatal(err)
		}
		prev = e.Hash
		evs = append(evs, e)
	}
	return evs
}

// The canonical form is fixed: a change here breaks every stored chain.
func TestCanonicalKnownAnswer(t *testing.T) {
	e := Event{Agent: "a1", Seq: 1, Time: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), Control: "media",
		Type: "media.inserted", Severity: Warning, Object: "E:", Attrs: Attrs{"serial": "X<1>", "b": json.Number("10")}}
	b, err := e.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"agent":"a1","seq":1,"time":"2026-11-01T00:00:00Z","control":"media","type":"media.inserted","severity":"warning","object":"E:","attrs":{"b":10,"serial":"X<1>"},"prev":""}`
	if string(b) != want {
		t.Fatalf("canonical\n got %s\nwant %s", b, want)
	}
	if err := e.Seal(""); err != nil {
		t.Fatal(err)
	}
	// echo -n '<want>' | sha256sum
	if e.Hash != "dbbab1bc34e7b6ac9a8a0ee13e7c474dcd08f891a0152c17365e7cf6d7484b08" {
		t.Fatalf("hash %s", e.Hash)
	}
}

// Hashes survive a JSON round trip, including big integers in attrs.
func TestRoundTripKeepsHash(t *testing.T) {
	evs := chain(t, 3)
	b, err := json.Marshal(evs)
	if err != nil {
		t.Fatal(err)
	}
	var back []Event
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if i, err := VerifyChain("a1", 0, "", back); err != nil {
		t.Fatalf("event %d: %v", i, err)
	}
}

func TestVerifyChainDetects(t *testing.T) {
	cases := map[string]struct {
		mut  func([]Event) []Event
		want error
		at   int
	}{
		"edited":    {func(e []Event) []Event { e[1].Object = "x"; return e }, ErrHash, 1},
		"dropped":   {func(e []Event) []Event { return append(e[:1], e[2:]...) }, ErrSeq, 1},
		"reordered": {func(e []Event) []Event { e[1], e[2] = e[2], e[1]; return e }, ErrSeq, 1},
		"relinked": {func(e []Event) []Event {
			e[2].Prev = e[0].Hash
			e[2].Hash, _ = e[2].ComputeHash()
			return e
		}, ErrChain, 2},
		"other agent": {func(e []Event) []Event { e[0].Agent = "b"; return e }, ErrWrongAgent, 0},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			i, err := VerifyChain("a1", 0, "", c.mut(chain(t, 4)))
			if !errors.Is(err, c.want) || i != c.at {
				t.Fatalf("got %d %v, want %d %v", i, err, c.at, c.want)
			}
		})
	}
}

func TestValidateBounds(t *testing.T) {
	base := chain(t, 1)[0]
	for name, mut := range map[string]func(*Event){
		"no agent":     func(e *Event) { e.Agent = "" },
		"zero seq":     func(e *Event) { e.Seq = 0 },
		"no time":      func(e *Event) { e.Time = time.Time{} },
		"bad severity": func(e *Event) { e.Severity = "fatal" },
		"long object":  func(e *Event) { e.Object = strings.Repeat("x", MaxFieldLen+1) },
		"bad utf8":     func(e *Event) { e.User = "\xff" },
		"bad prev":     func(e *Event) { e.Prev = "zz" },
		"big attrs":    func(e *Event) { e.Attrs = Attrs{"x": strings.Repeat("y", MaxAttrsLen)} },
	} {
		t.Run(name, func(t *testing.T) {
			e := base
			mut(&e)
			e.Hash, _ = e.ComputeHash()
			if err := e.Validate(); !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
		})
	}
	// A malformed hash is invalid, a well-formed wrong one does not match.
	for h, want := range map[string]error{
		strings.ToUpper(base.Hash): ErrInvalid, "xyz": ErrInvalid, "": ErrInvalid,
		strings.Repeat("0", HashLen): ErrHash,
	} {
		e := base
		e.Hash = h
		if err := e.Validate(); !errors.Is(err, want) {
			t.Errorf("hash %q: got %v, want %v", h, err, want)
		}
	}
}

func BenchmarkVerifyChain(b *testing.B) {
	t := &testing.T{}
	evs := chain(t, 1000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := VerifyChain("a1", 0, "", evs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(evs))/b.Elapsed().Seconds(), "events/s")
}

// TestSetCanonical: with a decoder's canonical text Validate hashes that
// text and keeps its attrs as they are; the checks on the fields stay, and
// Seal forgets the text.
func TestSetCanonical(t *testing.T) {
	e := chain(t, 1)[0]
	c, err := e.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	want, err := e.ValidateAttrs()
	if err != nil {
		t.Fatal(err)
	}
	head := string(c[:len(c)-1])
	e.SetCanonical(head, string(want))
	got, err := e.ValidateAttrs()
	if err != nil || string(got) != string(want) {
		t.Fatalf("with the text: attrs %s, %v; want %s", got, err, want)
	}
	// The text is what is hashed: another text fails the hash.
	e.SetCanonical(strings.Replace(head, "田中", "佐藤", 1), string(want))
	if err := e.Validate(); !errors.Is(err, ErrHash) {
		t.Fatalf("another text: %v, want ErrHash", err)
	}
	// Limits and fields are checked as without the text.
	e.SetCanonical(head, strings.Repeat("x", MaxAttrsLen+1))
	if err := e.Validate(); err == nil || !strings.Contains(err.Error(), "attrs is") {
		t.Fatalf("oversized attrs: %v", err)
	}
	e.SetCanonical(head, string(want))
	e.Severity = "loud"
	if err := e.Validate(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad severity: %v", err)
	}
	e.Severity = Info
	if err := e.Seal(e.Prev); err != nil {
		t.Fatal(err)
	}
	e.User = "佐藤"
	if err := e.Validate(); !errors.Is(err, ErrHash) {
		t.Fatalf("changed after Seal: %v, want ErrHash (Seal forgets the text)", err)
	}
}
