package register

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/mamori/mamori/policies"
	"github.com/mamori/mamori/server/internal/state"
	"github.com/mamori/mamori/shared/policy"
)

// DefaultPolicyName applies to agents without an agent or department assignment.
const DefaultPolicyName = "default"

// Department assignments live next to agent assignments, so state's
// watch fires on them and DeletePolicy refuses a policy they still name.
const deptAssignDir = "assignments/department/"

// snapshot is every register entry the compiler needs, read at once.
type snapshot struct {
	pi        []*PIEntry
	media     []*MediaEntry
	approvals []*Approval
}

type parsedPolicy struct {
	rev int64
	doc []byte
}

// Invalidate drops the cached register snapshot; the API calls it on every
// change the etcd watch reports (and writes through this Service call it).
func (s *Service) Invalidate() {
	s.snapMu.Lock()
	s.snapGen++
	s.snap = nil
	s.view = nil
	s.snapMu.Unlock()
}

func (s *Service) snapshot(ctx context.Context) (*snapshot, error) {
	s.snapMu.Lock()
	if sn := s.snap; sn != nil {
		s.snapMu.Unlock()
		return sn, nil
	}
	gen := s.snapGen
	s.snapMu.Unlock()

	ctx, cancel := opCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, state.Prefix+entriesDir, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("register: read registers: %w", err)
	}
	sn, err := parseSnapshot(resp.Kvs)
	if err != nil {
		return nil, err
	}
	s.snapMu.Lock()
	if s.snapGen == gen { // no change arrived while reading
		s.snap = sn
	}
	s.snapMu.Unlock()
	return sn, nil
}

// parseSnapshot decodes the register entries under entriesDir.
func parseSnapshot(kvs []*mvccpb.KeyValue) (*snapshot, error) {
	sn := &snapshot{}
	for _, kv := range kvs {
		rest := strings.TrimPrefix(string(kv.Key), state.Prefix+entriesDir)
		k, _, _ := strings.Cut(rest, "/")
		switch Kind(k) {
		case KindPI, KindMedia, KindApprovals:
		default:
			continue
		}
		e, err := decode(Kind(k), kv.Value, kv.ModRevision)
		if err != nil {
			return nil, err
		}
		switch e := e.(type) {
		case *PIEntry:
			sn.pi = append(sn.pi, e)
		case *MediaEntry:
			sn.media = append(sn.media, e)
		case *Approval:
			sn.approvals = append(sn.approvals, e)
		}
	}
	return sn, nil
}

// Compiled is an agent's effective policy. Until is when it changes by
// itself (an approval window ends); zero if never.
type Compiled struct {
	Policy *policy.Policy
	Source string // the pack it came from, e.g. "default" or "pmark-baseline (built-in)"
	Until  time.Time
}

// Effective compiles the policy of one agent: its assigned pack (agent
// assignment > department assignment > "default" > built-in
// pmark-baseline as stored, else as built in) plus the register's folders on its host (fileaccess and
// backup), the active registered media, and the approved carry-out windows
// for its host that have not ended.
func (s *Service) Effective(ctx context.Context, agentID string) (Compiled, error) {
	ag, err := s.st.GetAgent(ctx, agentID)
	if err != nil && !errors.Is(err, state.ErrNotFound) {
		return Compiled{}, fmt.Errorf("register: agent %s: %w", agentID, err)
	}
	p, src, err := s.pack(ctx, agentID, ag.Department)
	if err != nil {
		return Compiled{}, err
	}
	sn, err := s.snapshot(ctx)
	if err != nil {
		return Compiled{}, err
	}
	c := Compiled{Policy: p, Source: src}
	now := s.now()
	c.Until = compileInto(p, sn, ag.Hostname, now)
	return c, nil
}

// compileInto adds the register's contribution for host to p and returns
// when the result next changes by time alone.
func compileInto(p *policy.Policy, sn *snapshot, host string, now time.Time) time.Time {
	var folders []policy.Folder
	for _, e := range sn.pi {
		if e.Status != StatusActive {
			continue
		}
		for _, l := range e.Locations {
			if host != "" && strings.EqualFold(l.Host, host) {
				folders = append(folders, policy.Folder{Path: l.Folder, RegisterID: e.ID})
			}
		}
	}
	sort.Slice(folders, func(i, j int) bool {
		if folders[i].Path != folders[j].Path {
			return folders[i].Path < folders[j].Path
		}
		return folders[i].RegisterID < folders[j].RegisterID
	})
	c := &p.Controls
	c.FileAccess.Folders = append(c.FileAccess.Folders, folders...)
	c.Backup.Folders = append(c.Backup.Folders, folders...)
	// Folded serials, as the agent compares them: known to the register,
	// and of an active medium.
	known, active := map[string]bool{}, map[string]bool{}
	for _, m := range sn.media {
		known[foldKey(m.Serial)] = true
		if m.Status == StatusActive {
			active[foldKey(m.Serial)] = true
			c.Media.Registered = append(c.Media.Registered, policy.RegisteredMed{RegisterID: m.ID, Serial: m.Serial,
				VendorID: strings.ToLower(m.VendorID), ProductID: strings.ToLower(m.ProductID)})
		}
	}
	sort.Slice(c.Media.Registered, func(i, j int) bool { return c.Media.Registered[i].RegisterID < c.Media.Registered[j].RegisterID })
	var until time.Time
	for _, a := range sn.approvals {
		if a.Status != StatusApproved || host == "" || !strings.EqualFold(a.Host, host) || !a.To.After(now) {
			continue
		}
		// A stick lost or disposed after its approval stops working. One
		// the register does not know (a visitor's, a new one) is what a
		// window is for.
		if k := foldKey(a.Serial); known[k] && !active[k] {
			continue
		}
		c.Media.Approvals = append(c.Media.Approvals, policy.Approval{ID: a.ID, Serial: a.Serial, From: a.From.UTC(), To: a.To.UTC()})
		if until.IsZero() || a.To.Before(until) {
			until = a.To
		}
	}
	sort.Slice(c.Media.Approvals, func(i, j int) bool { return c.Media.Approvals[i].ID < c.Media.Approvals[j].ID })
	return until
}

// pack resolves and parses the agent's policy pack.
func (s *Service) pack(ctx context.Context, agentID, dept string) (*policy.Policy, string, error) {
	var names []string
	if n, err := s.st.Assignment(ctx, agentID); err == nil {
		names = append(names, n)
	} else if !errors.Is(err, state.ErrNotFound) {
		return nil, "", fmt.Errorf("register: assignment of %s: %w", agentID, err)
	}
	if dept != "" {
		n, err := s.DepartmentAssignment(ctx, dept)
		if err == nil {
			names = append(names, n)
		} else if !errors.Is(err, ErrNotFound) {
			return nil, "", err
		}
	}
	// The stored baseline (installed by EnsureBuiltinPacks, perhaps edited
	// by the admin) comes before the embedded one.
	names = append(names, DefaultPolicyName, policies.Baseline)
	for _, n := range names {
		doc, rev, err := s.st.GetPolicy(ctx, n)
		if errors.Is(err, state.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, "", fmt.Errorf("register: policy %s: %w", n, err)
		}
		p, err := s.parseCached(n, doc, rev)
		if err != nil {
			return nil, "", err
		}
		return p, n, nil
	}
	p, err := policies.Get(policies.Baseline)
	if err != nil {
		return nil, "", fmt.Errorf("register: %w", err)
	}
	return p, policies.Baseline + " (built-in)", nil
}

// parseCached parses a stored policy once per revision and hands out copies.
func (s *Service) parseCached(name string, doc []byte, rev int64) (*policy.Policy, error) {
	s.parsedMu.Lock()
	hit, ok := s.parsed[name]
	s.parsedMu.Unlock()
	if !ok || hit.rev != rev {
		p, err := policy.ParseStored(doc)
		if err != nil {
			return nil, fmt.Errorf("register: stored policy %q: %w", name, err)
		}
		b, err := json.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("register: policy %q: %w", name, err)
		}
		hit = parsedPolicy{rev: rev, doc: b}
		s.parsedMu.Lock()
		s.parsed[name] = hit
		s.parsedMu.Unlock()
	}
	var p policy.Policy // a fresh copy, since compiling appends to it
	if err := json.Unmarshal(hit.doc, &p); err != nil {
		return nil, fmt.Errorf("register: policy %q: %w", name, err)
	}
	return &p, nil
}

// checkDept validates a department name used as a key segment; Japanese
// names are fine.
func checkDept(d string) error {
	if d == "" || len(d) > 128 || strings.ContainsAny(d, "/\\") || d == "." || d == ".." ||
		strings.IndexFunc(d, unicode.IsControl) >= 0 {
		return ValidationError{{Field: "department", Msg: fmt.Sprintf("%q is not a department name (1..128 bytes, no / or \\)", d)}}
	}
	return nil
}

// AssignDepartment assigns an existing policy to every agent of a
// department; an empty policy removes the assignment.
func (s *Service) AssignDepartment(ctx context.Context, dept, policyName string) error {
	if err := checkDept(dept); err != nil {
		return err
	}
	ctx, cancel := opCtx(ctx)
	defer cancel()
	k := state.Prefix + deptAssignDir + dept
	if policyName == "" {
		if _, err := s.cli.Delete(ctx, k); err != nil {
			return fmt.Errorf("register: unassign department: %w", err)
		}
		return nil
	}
	if !policy.ValidName(policyName) {
		return ValidationError{{Field: "policy", Msg: fmt.Sprintf("%q is not a policy name", policyName)}}
	}
	pk := state.Prefix + "policies/" + policyName
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(pk), ">", 0)).
		Then(clientv3.OpPut(k, policyName)).Commit()
	if err != nil {
		return fmt.Errorf("register: assign department: %w", err)
	}
	if !resp.Succeeded {
		return ValidationError{{Field: "policy", Msg: fmt.Sprintf("no policy named %s", policyName)}}
	}
	return nil
}

// DepartmentAssignment returns the policy assigned to a department, or an
// error wrapping ErrNotFound.
func (s *Service) DepartmentAssignment(ctx context.Context, dept string) (string, error) {
	if checkDept(dept) != nil {
		return "", fmt.Errorf("register: department %q: %w", dept, ErrNotFound)
	}
	ctx, cancel := opCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, state.Prefix+deptAssignDir+dept)
	if err != nil {
		return "", fmt.Errorf("register: department assignment: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return "", fmt.Errorf("register: department %s: %w", dept, ErrNotFound)
	}
	return string(resp.Kvs[0].Value), nil
}

// DepartmentAssignments lists department -> policy.
func (s *Service) DepartmentAssignments(ctx context.Context) (map[string]string, error) {
	ctx, cancel := opCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, state.Prefix+deptAssignDir, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("register: department assignments: %w", err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		out[strings.TrimPrefix(string(kv.Key), state.Prefix+deptAssignDir)] = string(kv.Value)
	}
	return out, nil
}

// SetAgentDepartment sets the department of an enrolled agent (overriding
// what its enrollment token said), with a compare-and-swap on its record.
func (s *Service) SetAgentDepartment(ctx context.Context, agentID, dept string) error {
	if dept != "" {
		if err := checkDept(dept); err != nil {
			return err
		}
	}
	for range 5 {
		var a state.Agent
		rev, err := s.st.GetJSON(ctx, "agents/"+agentID, &a)
		if errors.Is(err, state.ErrNotFound) || errors.Is(err, state.ErrInvalid) {
			return fmt.Errorf("register: agent %s: %w", agentID, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("register: %w", err)
		}
		a.Department = dept
		if _, err := s.st.PutJSON(ctx, "agents/"+agentID, a, rev); errors.Is(err, state.ErrConflict) {
			continue
		} else if err != nil {
			return fmt.Errorf("register: %w", err)
		}
		s.forgetAgent(agentID)
		return nil
	}
	return fmt.Errorf("register: agent %s keeps changing: %w", agentID, ErrConflict)
}

// EnsureBuiltinPacks stores each built-in pack under its name unless a
// policy of that name exists, so admins can list, assign and edit them.
func (s *Service) EnsureBuiltinPacks(ctx context.Context) error {
	ctx, cancel := opCtx(ctx)
	defer cancel()
	for _, n := range policies.Names() {
		doc, err := policies.YAML(n)
		if err != nil {
			return fmt.Errorf("register: %w", err)
		}
		k := state.Prefix + "policies/" + n
		if _, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
			Then(clientv3.OpPut(k, string(doc))).Commit(); err != nil {
			return fmt.Errorf("register: install pack %s: %w", n, err)
		}
	}
	return nil
}

// AssignAgent assigns an existing policy to one agent (empty: remove, so
// its department's or the default applies).
func (s *Service) AssignAgent(ctx context.Context, agentID, policyName string) error {
	err := s.st.Assign(ctx, agentID, policyName)
	switch {
	case errors.Is(err, state.ErrNotFound):
		return ValidationError{{Field: "policy", Msg: fmt.Sprintf("no policy named %s", policyName)}}
	case errors.Is(err, state.ErrInvalid):
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	case err != nil:
		return fmt.Errorf("register: %w", err)
	}
	return nil
}

// AgentAssignments lists agent id -> policy.
func (s *Service) AgentAssignments(ctx context.Context) (map[string]string, error) {
	ctx, cancel := opCtx(ctx)
	defer cancel()
	dir := state.Prefix + "assignments/"
	resp, err := s.cli.Get(ctx, dir, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("register: assignments: %w", err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		id := strings.TrimPrefix(string(kv.Key), dir)
		if !strings.Contains(id, "/") { // department/... are group assignments
			out[id] = string(kv.Value)
		}
	}
	return out, nil
}
