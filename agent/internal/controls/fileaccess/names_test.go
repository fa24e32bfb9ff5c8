package fileaccess

import (
	"testing"
	"time"

	"github.com/mamori/mamori/shared/event"
)

// TestEscapeNames: every path of an event with a name that is not UTF-8 is
// escaped (backslashes too, so the escape is unambiguous) and reads back
// exactly; an error text is made valid; an event of valid names is left
// as it was.
func TestEscapeNames(t *testing.T) {
	const bad = "/d/\x8c\xda\x8b\x71.csv"
	e := event.Event{Agent: "a", Seq: 1, Control: Name, Type: TypeDeleted, Severity: event.Info,
		Object: bad, Process: `/opt/a\b`, Attrs: event.Attrs{
			"names": []any{"/d/x.csv", bad}, "deleted_as": bad, "ops": event.Attrs{"remove": 1},
			"error": "open " + bad + ": denied"}}
	escapeNames(&e)
	e.Time = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	if err := e.Seal(""); err != nil {
		t.Fatal(err)
	}
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
	if e.Attrs["path_encoding"] != "escaped" || e.Process != `/opt/a\\b` {
		t.Fatalf("event %+v", e)
	}
	for _, s := range []string{e.Object, e.Attrs["deleted_as"].(string), e.Attrs["names"].([]any)[1].(string)} {
		if back, err := event.UnescapeBytes(s); err != nil || back != bad {
			t.Fatalf("%q reads back as %q, %v", s, back, err)
		}
	}
	ok := event.Event{Object: `/d/a\b.csv`, Attrs: event.Attrs{"old_path": "/d/名簿.csv"}}
	escapeNames(&ok)
	if ok.Object != `/d/a\b.csv` || ok.Attrs["path_encoding"] != nil {
		t.Fatalf("valid names changed: %+v", ok)
	}
}
