package uplink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/shared/policy"
	"github.com/mamori/mamori/shared/wire"
)

// PolicyWait is how long the server may hold a policy long-poll.
const PolicyWait = 55 * time.Second

// PolicySync long-polls GET /v1/policy and hands every new policy to Apply.
type PolicySync struct {
	Client  *http.Client // timeout longer than PolicyWait
	Server  string       // base URL, when Servers is nil
	Servers *ServerList  // ordered servers with failover; wins over Server
	Log     zerolog.Logger
	Version string // version the agent runs now ("" when none)
	// Apply adopts a policy that parsed; an error keeps the previous one.
	// Both outcomes are the caller's to report.
	Apply func(ctx context.Context, version string, p *policy.Policy, raw []byte) error
	// Rejected is called for a policy that does not parse.
	Rejected func(ctx context.Context, version string, err error)
	Backoff  Backoff

	health health
}

// base is the server to talk to now.
func (ps *PolicySync) base() string {
	if ps.Servers != nil {
		return ps.Servers.Current()
	}
	return ps.Server
}

// Run polls until ctx is done.
func (ps *PolicySync) Run(ctx context.Context) error {
	if ps.Backoff.Base <= 0 {
		ps.Backoff = Backoff{Base: time.Second, Max: 2 * time.Minute}
	}
	ps.health.log, ps.health.what = ps.Log, "policy sync"
	failures := 0
	for ctx.Err() == nil {
		resp, err := ps.poll(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			kind := kindOf(err)
			ps.health.fail(kind, err)
			if ps.Servers != nil && failover(kind) {
				ps.Servers.Failed(ps.base())
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(ps.Backoff.Delay(failures)):
			}
			failures++
			continue
		}
		failures = 0
		ps.health.ok()
		if resp == nil { // 304: unchanged
			continue
		}
		p, err := policy.ParseJSON(resp.Policy)
		if err == nil && resp.Version == "" {
			err = errors.New("policy: empty version")
		}
		if err == nil {
			// Apply reports its own outcome (applied or failed).
			_ = ps.Apply(ctx, resp.Version, p, resp.Policy)
		} else if ps.Rejected != nil {
			ps.Rejected(ctx, resp.Version, err)
		}
		// Either way, wait for the next change rather than fetching the
		// same (failing) version again in a loop.
		ps.Version = resp.Version
	}
	return nil
}

func (ps *PolicySync) poll(ctx context.Context) (*wire.PolicyResponse, error) {
	q := url.Values{"version": {ps.Version}, "wait": {PolicyWait.String()}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ps.base()+wire.PathPolicy+"?"+q.Encode(), nil)
	if err != nil {
		return nil, fmt.Errorf("uplink: %w", err)
	}
	resp, err := ps.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("uplink: policy: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, wire.MaxPolicyBody+1))
	if err != nil {
		return nil, fmt.Errorf("uplink: policy: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusNotModified:
		return nil, nil
	case resp.StatusCode != http.StatusOK:
		return nil, &statusError{code: resp.StatusCode, msg: errorText(body)}
	case len(body) > wire.MaxPolicyBody:
		return nil, fmt.Errorf("%w: policy answer over %d bytes", errGarbage, wire.MaxPolicyBody)
	}
	var pr wire.PolicyResponse
	if err := json.Unmarshal(body, &pr); err != nil {
		return nil, fmt.Errorf("%w: %v", errGarbage, err)
	}
	return &pr, nil
}

// SavePolicy stores a policy the agent applied in dir/policy.json, so the
// agent enforces it from the next boot even while offline.
func SavePolicy(dir, version string, raw []byte) error {
	b, err := json.Marshal(wire.PolicyResponse{Version: version, Policy: raw})
	if err != nil {
		return fmt.Errorf("uplink: %w", err)
	}
	return WriteFileAtomic(filepath.Join(dir, FilePolicy), b)
}

// ErrPolicyTampered is what a TamperedError matches with errors.Is.
var ErrPolicyTampered = errors.New("stored policy does not match its version")

// TamperedError is a stored policy whose content does not hash to the
// version stored with it: the file was edited on the PC (a policy from the
// server always hashes to its version), so it must not be enforced.
type TamperedError struct {
	Path   string
	Stored string // the version string in the file
	Actual string // the version of the content
}

func (e *TamperedError) Error() string {
	return fmt.Sprintf("uplink: %s: policy content hashes to %s, not to its stored version %q: the file was changed outside the agent",
		e.Path, e.Actual, e.Stored)
}

func (e *TamperedError) Is(target error) bool { return target == ErrPolicyTampered }

// LoadPolicy reads dir/policy.json; a missing file returns a nil policy. A
// policy whose content does not hash to its stored version returns a
// *TamperedError and no policy.
func LoadPolicy(dir string) (version string, p *policy.Policy, raw []byte, err error) {
	path := filepath.Join(dir, FilePolicy)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil, nil, nil
	}
	if err != nil {
		return "", nil, nil, fmt.Errorf("uplink: %w", err)
	}
	var pr wire.PolicyResponse
	if err := json.Unmarshal(b, &pr); err != nil {
		return "", nil, nil, fmt.Errorf("uplink: %s: %w", FilePolicy, err)
	}
	p, err = policy.ParseJSON(pr.Policy)
	if err != nil {
		return "", nil, nil, fmt.Errorf("uplink: %s: %w", FilePolicy, err)
	}
	// The server's version is the hash of the JSON it sends (kept here
	// byte for byte); the parsed policy's own hash is accepted as well, so
	// that only an edit, never a re-encoding, fails the check. Either way
	// a changed content cannot keep its version.
	if raw := policy.JSONVersion(pr.Policy); raw != pr.Version {
		if actual := p.Version(); actual != pr.Version {
			return "", nil, nil, &TamperedError{Path: path, Stored: pr.Version, Actual: raw}
		}
	}
	return pr.Version, p, pr.Policy, nil
}
