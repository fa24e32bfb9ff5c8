package evidence

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// What editors and mail do to a saved bundle is not tampering: a leading
// UTF-8 BOM (Notepad), CRLF, blank lines or spaces after the last line.
// A blank line between entries is still reported.
func TestVerifyToleratesEditorsAtTheEdges(t *testing.T) {
	f := newFixture(t, 2, 3)
	good := f.bundle(t, nil)
	crlf := bytes.ReplaceAll(good, []byte("\n"), []byte("\r\n"))
	for name, b := range map[string][]byte{
		"BOM":                   append([]byte("\xef\xbb\xbf"), good...),
		"trailing blank lines":  append(bytes.Clone(good), "\n\n  \n\t\n"...),
		"BOM, CRLF and blanks":  append(append([]byte("\xef\xbb\xbf"), crlf...), "\r\n\r\n \r\n"...),
		"no newline at the end": bytes.TrimSuffix(good, []byte("\n")),
	} {
		if rep := verify(t, f, b, VerifyOptions{}); !rep.OK() {
			t.Errorf("%s: %s", name, problems(rep))
		}
	}
	ls := lines(good)
	mid := join(append(append(append([][]byte{}, ls[:3]...), []byte("")), ls[3:]...))
	if rep := verify(t, f, mid, VerifyOptions{}); rep.OK() || !strings.Contains(problems(rep), "line 4") {
		t.Errorf("a blank line between entries: %s", problems(rep))
	}
	// Lines after the manifest that are not blank are still appended.
	if rep := verify(t, f, append(bytes.Clone(good), "\n\nx\n"...), VerifyOptions{}); rep.OK() ||
		!strings.Contains(problems(rep), "lines were appended") {
		t.Errorf("text after blank lines after the manifest: %s", problems(rep))
	}
}

// A JSON object that is not a bundle header, such as the answer of
// GET /api/v1/checkpoint, is no bundle (nothing to check), not a bundle
// whose header was damaged.
func TestVerifyNotABundleJSON(t *testing.T) {
	f := newFixture(t, 1, 2)
	cpJSON, _ := json.Marshal(map[string]any{"size": 2, "root": "x", "checkpoint": string(f.cps[2]),
		"created": time.Now(), "public_key": f.vkey})
	for name, c := range map[string]struct {
		body   string
		reason NotBundleReason
		want   string
	}{
		"foo":             {`{"foo":1}` + "\n", NotBundleJSON, "not a bundle header"},
		"empty object":    {"{}\n", NotBundleJSON, "not a bundle header"},
		"pretty JSON":     {"{\n  \"foo\": 1\n}\n", NotBundleJSON, "not a bundle header"},
		"checkpoint JSON": {string(cpJSON) + "\n", NotBundleCheckpoint, "--checkpoint"},
		"BOM and reply":   {"\xef\xbb\xbf" + `{"error":"forbidden"}` + "\n", NotBundleReply, "forbidden"},
		"CSV export":      {"\xef\xbb\xbf連番,受信日時,エージェントID\n1,2026-12-01,a\n", NotBundleCSV, "CSV export"},
		"gzip":            {"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\x01\x02\n", NotBundleArchive, "gzip"},
		"zip":             {"PK\x03\x04\x14\x00\x00\x00\n", NotBundleArchive, "ZIP"},
		"binary":          {"\x7fELF\x02\x01\x01\x00\x00\x00\n", NotBundleBinary, "binary"},
		"text":            {"hello auditor\n", NotBundleText, "not a bundle"},
	} {
		_, err := Verify(strings.NewReader(c.body), f.verif, VerifyOptions{})
		var nb *NotBundleError
		if !errors.Is(err, ErrNotBundle) || !errors.As(err, &nb) || nb.Reason != c.reason || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v (%+v)", name, err, nb)
		}
	}
}

// Given another key, the problem names both keys by name and ID.
func TestVerifyWrongKeyNamesBoth(t *testing.T) {
	f := newFixture(t, 1, 2)
	other := newFixture(t, 1, 1)
	rep := verify(t, other, f.bundle(t, nil), VerifyOptions{})
	want := []string{fmt.Sprintf("mamori/test-server+%08x", f.verif.KeyHash()), fmt.Sprintf("mamori/test-server+%08x", other.verif.KeyHash())}
	if rep.OK() || rep.Problems[0].Kind != ProblemKey {
		t.Fatalf("%s", problems(rep))
	}
	for _, w := range want {
		if !strings.Contains(rep.Problems[0].Msg, w) {
			t.Errorf("key problem does not name %s: %s", w, rep.Problems[0].Msg)
		}
	}
}

// A bundle whose checkpoint was removed or damaged says so, not
// "malformed note".
func TestVerifyCheckpointMissing(t *testing.T) {
	f := newFixture(t, 1, 2)
	ls := lines(f.bundle(t, nil))
	var h Header
	if err := json.Unmarshal(ls[0], &h); err != nil {
		t.Fatal(err)
	}
	for name, cp := range map[string]string{"removed": "", "damaged": h.Checkpoint[:20]} {
		h2 := h
		h2.Checkpoint = cp
		ls[0], _ = json.Marshal(h2)
		rep := verify(t, f, join(ls), VerifyOptions{})
		if rep.OK() || !strings.Contains(problems(rep), "the bundle's signed checkpoint is missing or damaged") {
			t.Errorf("%s: %s", name, problems(rep))
		}
	}
}

// The report gives the earliest and latest time of the events held in
// full, for the audit report.
func TestVerifyEventTimes(t *testing.T) {
	f := newFixture(t, 2, 5)
	rep := verify(t, f, f.bundle(t, nil), VerifyOptions{})
	first, last := f.events[0].Time, f.events[0].Time
	for _, e := range f.events {
		first, last = minTime(first, e.Time), maxTime(last, e.Time)
	}
	if !rep.OK() || !rep.EventsFrom.Equal(first) || !rep.EventsTo.Equal(last) || first.Equal(last) {
		t.Fatalf("events %s .. %s, want %s .. %s", rep.EventsFrom, rep.EventsTo, first, last)
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// The fingerprint is the SHA-256 of log-key.pub as the server writes it
// (the key and a newline), so `sha256sum log-key.pub` shows the same
// digits; it covers the whole key, not only the 32-bit key ID.
func TestKeyFingerprint(t *testing.T) {
	_, vkey, _ := note.GenerateKey(rand.Reader, "mamori/x")
	sum := sha256.Sum256([]byte(vkey + "\n"))
	got := KeyFingerprint(vkey)
	if strings.ReplaceAll(strings.TrimPrefix(got, "sha256:"), " ", "") != hex.EncodeToString(sum[:]) || !strings.HasPrefix(got, "sha256:") {
		t.Fatalf("%s, want the digits of %x", got, sum)
	}
	if KeyFingerprint(" "+vkey+"\r\n") != got {
		t.Fatal("spaces and line ends around the key change its fingerprint")
	}
	if len(strings.Fields(got)) != 16 {
		t.Fatalf("%s: want 16 groups of 4 digits", got)
	}
}
