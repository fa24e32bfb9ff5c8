package uplink

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mamori/mamori/policies"
	"github.com/mamori/mamori/shared/policy"
	"github.com/mamori/mamori/shared/wire"
)

// serverMade compiles a pack exactly as the server does for the long-poll
// (api.namedPolicy / register.Shared): ParseStored, json.Marshal, Version.
func serverMade(t *testing.T, doc []byte) (string, []byte) {
	t.Helper()
	p, err := policy.ParseStored(doc)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return p.Version(), b
}

const fileaccessDoc = "apiVersion: mamori/v1\nkind: Policy\nname: office\ncontrols:\n" +
	"  fileaccess: {mode: audit, paths: [/srv/share/顧客, /home/shared]}\n  screenlock: {mode: enforce}\n"

// An honest policy.json, as SavePolicy writes it from what the server sent,
// loads with its version: Normalize and defaults do not change the hash.
func TestLoadPolicyHonestRoundTrip(t *testing.T) {
	docs := map[string][]byte{"office": []byte(fileaccessDoc)}
	for _, n := range policies.Names() {
		b, err := policies.YAML(n)
		if err != nil {
			t.Fatal(err)
		}
		docs[n] = b
	}
	for name, doc := range docs {
		dir := t.TempDir()
		v, raw := serverMade(t, doc)
		if err := SavePolicy(dir, v, raw); err != nil {
			t.Fatal(err)
		}
		got, p, _, err := LoadPolicy(dir)
		if err != nil || got != v || p == nil {
			t.Fatalf("%s: LoadPolicy = %q %v %v, want %q", name, got, p, err, v)
		}
		if p.Version() != v {
			t.Fatalf("%s: loaded policy hashes to %s, server said %s", name, p.Version(), v)
		}
	}
}

// A policy.json edited on the PC (paths changed, mode turned off) while its
// version string is kept is refused with ErrPolicyTampered naming both
// hashes and the file.
func TestLoadPolicyRefusesEditedFile(t *testing.T) {
	for _, edit := range []struct{ name, from, to string }{
		{"paths", `"/home/shared"`, `"/tmp/ins/decoy"`},
		{"mode off", `"mode":"audit"`, `"mode":"off"`},
	} {
		dir := t.TempDir()
		v, raw := serverMade(t, []byte(fileaccessDoc))
		if err := SavePolicy(dir, v, raw); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, FilePolicy)
		b, _ := os.ReadFile(path)
		if !strings.Contains(string(b), edit.from) {
			t.Fatalf("%s: %s not in %s", edit.name, edit.from, b)
		}
		if err := os.WriteFile(path, []byte(strings.Replace(string(b), edit.from, edit.to, 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		gotV, p, _, err := LoadPolicy(dir)
		var te *TamperedError
		if !errors.As(err, &te) || p != nil || gotV != "" {
			t.Fatalf("%s: LoadPolicy = %q %v %v, want a TamperedError", edit.name, gotV, p, err)
		}
		if te.Stored != v || te.Actual == v || te.Actual == "" || te.Path != path {
			t.Fatalf("%s: %+v", edit.name, te)
		}
		if !errors.Is(err, ErrPolicyTampered) {
			t.Fatalf("%s: %v is not ErrPolicyTampered", edit.name, err)
		}
	}
	// The attacker also rewrites the version to the decoy's own hash: the
	// file loads, but the agent now reports (and long-polls with) a version
	// the server does not assign, which the server answers at once.
	dir := t.TempDir()
	_, raw := serverMade(t, []byte(strings.Replace(fileaccessDoc, "/home/shared", "/tmp/ins/decoy", 1)))
	p, _ := policy.ParseJSON(raw)
	b, _ := json.Marshal(wire.PolicyResponse{Version: p.Version(), Policy: raw})
	os.WriteFile(filepath.Join(dir, FilePolicy), b, 0o600)
	if v, _, _, err := LoadPolicy(dir); err != nil || v != p.Version() {
		t.Fatalf("self-consistent file: %q %v", v, err)
	}
}
