package api

import (
	"context"
	"fmt"
	"net/url"
	"testing"
)

// Applying a file identical to the stored policy used to write a new
// version and a second policy.changed event. A save that changes nothing
// is "unchanged": no write, no event, as the registers do.
func TestPutPolicyUnchanged(t *testing.T) {
	e := newEnv(t)
	c := e.client(nil)
	doc := []byte(fmt.Sprintf(testPolicy, "default", "5m"))
	var first, again map[string]any
	if st := e.doJSON(c, "PUT", "/api/v1/policies/default", e.admin, doc, &first); st != 200 || first["unchanged"] != nil {
		t.Fatalf("first PUT: %d %v", st, first)
	}
	_, rev, err := e.state.GetPolicy(context.Background(), "default")
	if err != nil {
		t.Fatal(err)
	}
	if st := e.doJSON(c, "PUT", "/api/v1/policies/default", e.admin, doc, &again); st != 200 ||
		again["unchanged"] != true || again["version"] != first["version"] || again["name"] != "default" {
		t.Fatalf("identical PUT: %d %v", st, again)
	}
	if _, rev2, _ := e.state.GetPolicy(context.Background(), "default"); rev2 != rev {
		t.Fatalf("identical PUT wrote a new version: revision %d -> %d", rev, rev2)
	}
	if evs, _ := e.queryEvents(url.Values{"type": {"policy.changed"}}); len(evs) != 1 {
		t.Fatalf("identical PUT: %d policy.changed events, want 1", len(evs))
	}
	// A real change is written and recorded.
	var changed map[string]any
	if st := e.doJSON(c, "PUT", "/api/v1/policies/default", e.admin, []byte(fmt.Sprintf(testPolicy, "default", "7m")), &changed); st != 200 ||
		changed["unchanged"] != nil || changed["version"] == first["version"] {
		t.Fatalf("changed PUT: %d %v", st, changed)
	}
	if evs, _ := e.queryEvents(url.Values{"type": {"policy.changed"}}); len(evs) != 2 {
		t.Fatalf("changed PUT: %d policy.changed events, want 2", len(evs))
	}
}
