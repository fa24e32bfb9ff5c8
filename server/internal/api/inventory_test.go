package api

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/wire"
)

// The agent list's os_version follows the agent's inventory: an agent
// enrolled without one (older agents) or whose OS was upgraded shows what
// its newest agent.inventory says; an inventory with an unusable version
// (too long, nothing in it) changes nothing.
func TestOSVersionFollowsInventory(t *testing.T) {
	e := newEnv(t)
	a := e.enrollAgent("pc-inventory")
	osVersion := func() string {
		t.Helper()
		var out struct {
			Agents []agentView `json:"agents"`
		}
		if st := e.doJSON(e.client(nil), "GET", "/api/v1/agents", e.admin, nil, &out); st != http.StatusOK {
			t.Fatalf("agents: %d", st)
		}
		for _, v := range out.Agents {
			if v.ID == a.id {
				return v.OSVersion
			}
		}
		t.Fatalf("agent %s not listed", a.id)
		return ""
	}
	post := func(evs ...event.Event) {
		t.Helper()
		var ack wire.Ack
		if st := e.doJSON(a.c, "POST", wire.PathEvents, "", wire.Batch{Events: evs}, &ack); st != http.StatusOK {
			t.Fatalf("ingest: %d", st)
		}
	}
	if v := osVersion(); v != "" {
		t.Fatalf("enrolled without os_version, listed as %q", v)
	}
	inv := func(platform, version, kernel string) event.Event {
		return a.seal("agent.inventory", time.Now(), event.Attrs{"platform": platform, "platform_version": version,
			"kernel_version": kernel, "os": "linux"})
	}
	post(inv("debian", "12.7", "6.1.0-26-amd64"))
	if v := osVersion(); v != "debian 12.7" {
		t.Fatalf("after the inventory: os_version %q, want %q", v, "debian 12.7")
	}
	// Upgraded: the newest inventory of a batch wins.
	post(a.events(1)[0], inv("debian", "12.8", "6.1.0-28-amd64"), inv("debian", "13.0", "6.12.0-1-amd64"))
	if v := osVersion(); v != "debian 13.0" {
		t.Fatalf("after the upgrade: os_version %q, want %q", v, "debian 13.0")
	}
	// Unusable versions are stored as events but change nothing.
	post(inv("debian", strings.Repeat("9", 300), ""))
	post(inv("", "", ""))
	if v := osVersion(); v != "debian 13.0" {
		t.Fatalf("after unusable inventories: os_version %q, want %q", v, "debian 13.0")
	}
}
