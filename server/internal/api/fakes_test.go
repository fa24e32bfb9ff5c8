package api

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"time"

	"github.com/mamori/mamori/shared/event"
)

// memStore is an in-memory EventStore with the same checks the SQLite store
// makes (event.VerifyChain, dedup on seq). The real store is exercised by
// server/internal/app's tests.
type memStore struct {
	mu     sync.Mutex
	all    []Stored
	heads  map[string]Head
	failOn error // Append returns it when set
}

func newMemStore() *memStore { return &memStore{heads: map[string]Head{}} }

// IndexLag is a SQLite store's, fixed: the metrics must pass it on.
func (m *memStore) IndexLag() (int64, int) { return 7, 3 }

func (m *memStore) Append(ctx context.Context, agent string, evs []event.Event) (AppendResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failOn != nil {
		return AppendResult{}, m.failOn
	}
	h := m.heads[agent]
	dups := 0
	for len(evs) > 0 && evs[0].Seq <= h.Seq { // already stored: the same, as the real store checks
		for _, st := range m.all {
			if st.Agent == agent && st.Seq == evs[0].Seq && st.Hash != evs[0].Hash {
				return AppendResult{}, fmt.Errorf("memstore: seq %d: %w: already stored with another hash", st.Seq, event.ErrChain)
			}
		}
		evs = evs[1:]
		dups++
	}
	if _, err := event.VerifyChain(agent, h.Seq, h.Hash, evs); err != nil {
		return AppendResult{}, fmt.Errorf("memstore: %w", err)
	}
	for _, e := range evs {
		m.all = append(m.all, Stored{Event: e, Index: int64(len(m.all)), Received: time.Now()})
		h = Head{Agent: agent, Seq: e.Seq, Hash: e.Hash, LastSeen: time.Now(), Events: h.Events + 1}
	}
	m.heads[agent] = h
	return AppendResult{AckedSeq: h.Seq, Stored: len(evs), Duplicates: dups}, nil
}

func (m *memStore) AppendServer(ctx context.Context, e event.Event) (event.Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.heads[event.ServerStream]
	e.Agent, e.Seq = event.ServerStream, h.Seq+1
	if err := e.Seal(h.Hash); err != nil {
		return e, err
	}
	m.all = append(m.all, Stored{Event: e, Index: int64(len(m.all)), Received: time.Now()})
	m.heads[e.Agent] = Head{Agent: e.Agent, Seq: e.Seq, Hash: e.Hash, LastSeen: time.Now(), Events: h.Events + 1}
	return e, nil
}

func (m *memStore) Query(ctx context.Context, f Filter) (Page, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	start := 0
	if f.Cursor != "" {
		if _, err := fmt.Sscanf(f.Cursor, "%d", &start); err != nil { // decimal, as the API checks
			return Page{}, fmt.Errorf("memstore: %w", ErrBadCursor)
		}
	}
	var p Page
	for i := start; i < len(m.all); i++ {
		e := m.all[i]
		if (f.Agent != "" && e.Agent != f.Agent) || (f.Type != "" && e.Type != f.Type) ||
			(f.Control != "" && e.Control != f.Control) || (f.User != "" && e.User != f.User) ||
			(f.ObjectPrefix != "" && !strings.HasPrefix(e.Object, f.ObjectPrefix)) {
			continue
		}
		if len(p.Events) == f.Limit {
			p.Next = fmt.Sprintf("%d", i)
			break
		}
		p.Events = append(p.Events, e)
	}
	return p, nil
}

func (m *memStore) Agents(ctx context.Context) ([]Head, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var hs []Head
	for _, h := range m.heads {
		hs = append(hs, h)
	}
	return hs, nil
}

func (m *memStore) TreeSize(ctx context.Context) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return int64(len(m.all)), nil
}

func (m *memStore) count(agent string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, e := range m.all {
		if e.Agent == agent {
			n++
		}
	}
	return n
}

// memState is an in-memory ControlPlane.
type memState struct {
	mu        sync.Mutex
	enroll    map[string]*EnrollToken // by plaintext
	api       map[string]APIToken
	agents    map[string]Agent
	policies  map[string][]byte
	revs      map[string]int64
	rev       int64
	assign    map[string]string
	watchers  []chan struct{}
	nextToken int
}

func newMemState() *memState {
	return &memState{enroll: map[string]*EnrollToken{}, api: map[string]APIToken{}, agents: map[string]Agent{},
		policies: map[string][]byte{}, revs: map[string]int64{}, assign: map[string]string{}}
}

func (m *memState) CreateEnrollToken(ctx context.Context, ttl time.Duration, uses int, createdBy string) (string, EnrollToken, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nextToken++
	plain := fmt.Sprintf("enroll-%d-%x", m.nextToken, sha256.Sum256([]byte(createdBy)))
	t := EnrollToken{ID: fmt.Sprintf("t%d", m.nextToken), Expires: time.Now().Add(ttl), UsesLeft: uses, Created: time.Now(), CreatedBy: createdBy}
	m.enroll[plain] = &t
	return plain, t, nil
}

func (m *memState) ConsumeEnrollToken(ctx context.Context, plaintext string) (EnrollToken, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.enroll[plaintext]
	if !ok || t.UsesLeft < 1 || time.Now().After(t.Expires) {
		return EnrollToken{}, ErrTokenInvalid
	}
	t.UsesLeft--
	return *t, nil
}

func (m *memState) LookupAPIToken(ctx context.Context, plaintext string) (APIToken, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.api[plaintext]
	if !ok {
		return APIToken{}, ErrNotFound
	}
	return t, nil
}

func (m *memState) PutAgent(ctx context.Context, a Agent) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.agents[a.ID] = a
	return nil
}

func (m *memState) GetAgent(ctx context.Context, id string) (Agent, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.agents[id]
	if !ok {
		return Agent{}, ErrNotFound
	}
	return a, nil
}

func (m *memState) SetAgentOSVersion(ctx context.Context, id, v string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.agents[id]
	if !ok {
		return ErrNotFound
	}
	a.OSVersion = v
	m.agents[id] = a
	return nil
}

func (m *memState) ListAgents(ctx context.Context) ([]Agent, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var as []Agent
	for _, a := range m.agents {
		as = append(as, a)
	}
	return as, nil
}

func (m *memState) PutPolicy(ctx context.Context, name string, yaml []byte) error {
	m.mu.Lock()
	m.rev++
	m.policies[name], m.revs[name] = append([]byte(nil), yaml...), m.rev
	ws := m.watchers
	m.mu.Unlock()
	for _, w := range ws {
		select {
		case w <- struct{}{}:
		default:
		}
	}
	return nil
}

func (m *memState) GetPolicy(ctx context.Context, name string) ([]byte, int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.policies[name]
	if !ok {
		return nil, 0, ErrNotFound
	}
	return b, m.revs[name], nil
}

func (m *memState) ListPolicies(ctx context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ns []string
	for n := range m.policies {
		ns = append(ns, n)
	}
	return ns, nil
}

func (m *memState) Assignment(ctx context.Context, agentID string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.assign[agentID]
	if !ok {
		return "", ErrNotFound
	}
	return n, nil
}

func (m *memState) WatchPolicies(ctx context.Context) <-chan struct{} {
	in := make(chan struct{}, 1)
	out := make(chan struct{})
	m.mu.Lock()
	m.watchers = append(m.watchers, in)
	m.mu.Unlock()
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case <-in:
				select {
				case out <- struct{}{}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

// testCA is a throwaway CA that puts the agent id in the CommonName, as
// pki does.
type testCA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
	serial  int64
	mu      sync.Mutex
}

func newTestCA(name string) *testCA {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), serial: 1}
}

func (ca *testCA) CertPEM() []byte { return ca.certPEM }

func (ca *testCA) SignAgent(csrPEM []byte, agentID string) ([]byte, string, error) {
	blk, _ := pem.Decode(csrPEM)
	if blk == nil {
		return nil, "", fmt.Errorf("testca: no PEM")
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return nil, "", err
	}
	ca.mu.Lock()
	ca.serial++
	sn := big.NewInt(ca.serial)
	ca.mu.Unlock()
	tmpl := &x509.Certificate{SerialNumber: sn, Subject: pkix.Name{CommonName: agentID},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, csr.PublicKey, ca.key)
	if err != nil {
		return nil, "", err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), sn.String(), nil
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

func cnAgentID(cs *tls.ConnectionState) (string, bool) {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return "", false
	}
	id := cs.VerifiedChains[0][0].Subject.CommonName
	return id, id != ""
}

var agentSeq struct {
	sync.Mutex
	n int
}

func newTestAgentID() string {
	agentSeq.Lock()
	defer agentSeq.Unlock()
	agentSeq.n++
	var b [4]byte
	rand.Read(b[:])
	return fmt.Sprintf("agt-%d-%s", agentSeq.n, hex.EncodeToString(b[:]))
}

// newKeyAndCSR makes an agent key and its CSR.
func newKeyAndCSR(host string) (*ecdsa.PrivateKey, []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: host}}, key)
	if err != nil {
		panic(err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}
