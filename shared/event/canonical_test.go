package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"
)

// reference is the definition the hand-written encoder must match.
func reference(e *Event) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	c := canonical{
		Agent: e.Agent, Seq: e.Seq, Time: e.Time.UTC().Format(TimeFormat),
		Control: e.Control, Type: e.Type, Severity: e.Severity,
		User: e.User, Process: e.Process, Object: e.Object, RegisterID: e.RegisterID,
		Attrs: e.Attrs, Prev: e.Prev,
	}
	if err := enc.Encode(&c); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func FuzzCanonicalMatchesJSON(f *testing.F) {
	f.Add("a1", uint64(1), int64(1700000000123456789), "fileaccess", "file.modified", "田中\u2028\x01\"\\<>&", `C:\顧客\x.xlsx`, "\xff\xfe", []byte(`{"size":12,"n":1.5e3,"l":[1,"a",null,true,{"z":{}}],"big":123456789012345678901234}`))
	f.Add("", uint64(0), int64(0), "", "", "", "", "", []byte(`{}`))
	f.Add("x", uint64(1<<63), int64(-5), "c", "t", "\t\n\r\b\f", "\u2029", "ok", []byte(`{"a\u2028":"\u0000"}`))
	f.Fuzz(func(t *testing.T, agent string, seq uint64, nanos int64, control, typ, user, object, process string, attrs []byte) {
		e := Event{Agent: agent, Seq: seq, Time: time.Unix(0, nanos), Control: control, Type: typ,
			Severity: Info, User: user, Object: object, Process: process, Prev: "p"}
		var a Attrs
		if json.Unmarshal(attrs, &a) == nil {
			e.Attrs = a
		}
		want, werr := reference(&e)
		got, gerr := e.Canonical()
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("errors differ: json %v, ours %v", werr, gerr)
		}
		if werr == nil && !bytes.Equal(got, want) {
			t.Fatalf("canonical differs\n ours %q\n json %q", got, want)
		}
	})
}

func BenchmarkComputeHash(b *testing.B) {
	e := chain(&testing.T{}, 1)[0]
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := e.ComputeHash(); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzFloatMatchesJSON(f *testing.F) {
	for _, v := range []float64{0, 1.5, 1e21, 1e20, 1e-6, 1e-7, -3.25e-9, 123456789.125} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v float64) {
		want, werr := json.Marshal(v)
		got, gerr := appendFloat(nil, v)
		if (werr == nil) != (gerr == nil) || werr == nil && string(got) != string(want) {
			t.Fatalf("%v: ours %q %v, json %q %v", v, got, gerr, want, werr)
		}
	})
}

// A decoded event (numbers as json.Number), as the server and verifier see it.
func BenchmarkValidateDecoded(b *testing.B) {
	evs := chain(&testing.T{}, 1)
	raw, _ := json.Marshal(evs[0])
	var e Event
	if err := json.Unmarshal(raw, &e); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := e.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestValidateAttrsDecodesAsMarshal: the bytes the server stores for attrs
// (ValidateAttrs) are those the hash covers, and decode to the same Attrs
// as encoding/json's encoding did.
func TestValidateAttrsDecodesAsMarshal(t *testing.T) {
	var a Attrs
	if err := a.UnmarshalJSON([]byte(`{"z":1.50,"big":123456789012345678901,"html":"<a&b>","ls":"\u2028","nul":"\u0000",` +
		`"nested":{"b":[1,"x",null,true,{}],"a":[]},"e":-1e-7,"s":"顧客\\名簿"}`)); err != nil {
		t.Fatal(err)
	}
	a["int"], a["float"], a["strs"] = 42, 0.25, []string{"p", "<q>"}
	e := Event{Agent: "pc-1", Seq: 1, Time: time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC), Control: "fileaccess",
		Type: "file.read", Severity: Info, Attrs: a}
	if err := e.Seal(""); err != nil {
		t.Fatal(err)
	}
	mine, err := e.ValidateAttrs()
	if err != nil {
		t.Fatal(err)
	}
	canon, err := e.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(canon, append([]byte(`,"attrs":`), append(mine, `,"prev":`...)...)) {
		t.Fatalf("ValidateAttrs %s is not what the hash covers: %s", mine, canon)
	}
	e.Attrs = nil
	if none, err := e.ValidateAttrs(); none != nil || !errors.Is(err, ErrHash) {
		t.Fatalf("attrs dropped after sealing: ValidateAttrs = %q, %v; want nil, ErrHash", none, err)
	}
	theirs, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	var x, y Attrs
	if err := x.UnmarshalJSON(mine); err != nil {
		t.Fatalf("%s: %v", mine, err)
	}
	if err := y.UnmarshalJSON(theirs); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(x, y) {
		t.Fatalf("ValidateAttrs %s\njson.Marshal %s", mine, theirs)
	}
}
