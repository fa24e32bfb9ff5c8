package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/mamori/mamori/shared/securefs"
	"github.com/mamori/mamori/shared/wire"
)

// identity is one simulated agent: its own key and certificate, and where
// its chain stands (so that a later run continues it instead of forking).
type identity struct {
	ID   string `json:"id"`
	Key  string `json:"key"`  // PEM PKCS#8
	Cert string `json:"cert"` // PEM
	Seq  uint64 `json:"seq"`
	Prev string `json:"prev"`
	// Pending is the compressed batch not acked when the last run ended (Seq
	// and Prev are after it); the next run sends it first.
	Pending     []byte `json:"pending,omitempty"`
	PendingN    int    `json:"pending_n,omitempty"`
	PendingLast uint64 `json:"pending_last,omitempty"`
}

// enrollOne does what `mamori-agent enroll` does: a fresh P-256 key, a CSR,
// POST /v1/enroll with the token, the CA pinned by the caller's pool.
func enrollOne(ctx context.Context, c *http.Client, server, token string, n int) (identity, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return identity{}, fmt.Errorf("loadgen: key: %w", err)
	}
	host := fmt.Sprintf("loadgen-pc-%05d", n)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: host}}, key)
	if err != nil {
		return identity{}, fmt.Errorf("loadgen: CSR: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return identity{}, fmt.Errorf("loadgen: key: %w", err)
	}
	body, _ := json.Marshal(wire.EnrollRequest{Token: token, Hostname: host, OS: "windows", Arch: "amd64",
		CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, server+wire.PathEnroll, bytes.NewReader(body))
	if err != nil {
		return identity{}, fmt.Errorf("loadgen: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return identity{}, fmt.Errorf("loadgen: enroll: %w", err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, wire.MaxPolicyBody))
	if err != nil {
		return identity{}, fmt.Errorf("loadgen: enroll: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return identity{}, fmt.Errorf("loadgen: enroll: %s: %s", resp.Status, bytes.TrimSpace(rb))
	}
	var er wire.EnrollResponse
	if err := json.Unmarshal(rb, &er); err != nil {
		return identity{}, fmt.Errorf("loadgen: enroll answer: %w", err)
	}
	return identity{ID: er.AgentID, Cert: er.Certificate,
		Key: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))}, nil
}

// enrollAll returns n identities: those cached in path first (when path is
// set), then new enrollments, `parallel` at a time.
func enrollAll(ctx context.Context, cfg *config, caPool *tlsRoots, n int) ([]identity, error) {
	ids, err := loadIdentities(cfg.idsFile)
	if err != nil {
		return nil, err
	}
	if len(ids) >= n {
		return ids[:n], nil
	}
	need := n - len(ids)
	token := cfg.enrollToken
	if cfg.adminToken != "" {
		// A token of our own, so the bootstrap token's uses are not spent.
		if token, err = mintToken(ctx, cfg, caPool, need); err != nil {
			return nil, err
		}
	}
	c := &http.Client{Timeout: 60 * time.Second, Transport: caPool.transport(nil, false)}
	fresh := make([]identity, need)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		next     = make(chan int)
	)
	for range max(1, cfg.enrollParallel) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				id, err := enrollOne(ctx, c, cfg.server, token, len(ids)+i)
				if err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, err)
					mu.Unlock()
					continue
				}
				fresh[i] = id
			}
		}()
	}
	start := time.Now()
	for i := range need {
		mu.Lock()
		stop := firstErr != nil
		mu.Unlock()
		if stop || ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	fmt.Fprintf(os.Stderr, "loadgen: enrolled %d agents in %s\n", need, time.Since(start).Round(time.Millisecond))
	ids = append(ids, fresh...)
	return ids, saveIdentities(cfg.idsFile, ids)
}

func cmpErr(old, err error) error {
	if old != nil {
		return old
	}
	return err
}

// mintToken creates an enrollment token with enough uses via the admin API.
func mintToken(ctx context.Context, cfg *config, roots *tlsRoots, uses int) (string, error) {
	body, _ := json.Marshal(map[string]any{"ttl": "1h", "uses": uses})
	var out struct {
		Token string `json:"token"`
	}
	if err := adminCall(ctx, cfg, roots, http.MethodPost, "/api/v1/tokens", "application/json", body, &out); err != nil {
		return "", fmt.Errorf("loadgen: mint enrollment token: %w", err)
	}
	return out.Token, nil
}

// adminCall calls the admin API with the bearer token and decodes JSON.
func adminCall(ctx context.Context, cfg *config, roots *tlsRoots, method, path, ctype string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, cfg.server+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+cfg.adminToken)
	req.Header.Set("Content-Type", ctype)
	resp, err := (&http.Client{Timeout: 30 * time.Second, Transport: roots.transport(nil, false)}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(rb))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(rb, out)
}

// loadIdentities reads the JSON-lines cache; a missing file is empty.
func loadIdentities(path string) ([]identity, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loadgen: identities: %w", err)
	}
	defer f.Close()
	var ids []identity
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var id identity
		if err := json.Unmarshal(sc.Bytes(), &id); err != nil {
			return nil, fmt.Errorf("loadgen: identities %s line %d: %w", path, len(ids)+1, err)
		}
		ids = append(ids, id)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("loadgen: identities: %w", err)
	}
	return ids, nil
}

// saveIdentities writes the cache (private keys: 0600).
func saveIdentities(path string, ids []identity) error {
	if path == "" {
		return nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, id := range ids {
		if err := enc.Encode(id); err != nil {
			return fmt.Errorf("loadgen: identities: %w", err)
		}
	}
	if err := securefs.WriteSecretFile(path, buf.Bytes()); err != nil {
		return fmt.Errorf("loadgen: identities: %w", err)
	}
	return nil
}

// tlsRoots is the pinned Mamori CA.
type tlsRoots struct{ pool *x509.CertPool }

// transport is an agent-like client transport: TLS 1.3, the CA as the only
// root, the client certificate if given, HTTP/2 unless h1.
func (r *tlsRoots) transport(cert *tls.Certificate, h1 bool) *http.Transport {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: r.pool}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	t := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: !h1, MaxIdleConnsPerHost: 2,
		IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 10 * time.Second}
	if h1 {
		t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return t
}
