package app_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/mamori/mamori/server/internal/pki"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/wire"
)

// agentClient is what an agent does on the wire: enroll with a token and a
// CSR, pinning the CA by fingerprint, then ship sealed batches over mTLS.
type agentClient struct {
	base string
	id   string
	c    *http.Client
	seq  uint64
	prev string
}

func httpsClient(caPEM []byte, cert *tls.Certificate) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, MaxIdleConnsPerHost: 4}}
}

func enroll(tb testing.TB, base, token, caHash string, caPEM []byte, host string) *agentClient {
	tb.Helper()
	if err := pki.CheckFingerprint(caPEM, caHash); err != nil {
		tb.Fatalf("CA pin: %v", err)
	}
	keyPEM, csrPEM, err := pki.NewKeyAndCSR(host)
	if err != nil {
		tb.Fatal(err)
	}
	req, _ := json.Marshal(wire.EnrollRequest{Token: token, CSR: string(csrPEM), Hostname: host, OS: "linux", Arch: "amd64"})
	resp, err := httpsClient(caPEM, nil).Post(base+wire.PathEnroll, "application/json", bytes.NewReader(req))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		tb.Fatalf("enroll: %d %s", resp.StatusCode, b)
	}
	var er wire.EnrollResponse
	if err := json.Unmarshal(b, &er); err != nil {
		tb.Fatal(err)
	}
	cert, err := tls.X509KeyPair([]byte(er.Certificate), keyPEM)
	if err != nil {
		tb.Fatal(err)
	}
	return &agentClient{base: base, id: er.AgentID, c: httpsClient(caPEM, &cert)}
}

func (a *agentClient) events(n int) []event.Event {
	out := make([]event.Event, n)
	for i := range out {
		a.seq++
		e := event.Event{Agent: a.id, Seq: a.seq, Time: time.Now(), Control: "fileaccess", Type: "file.modified",
			Severity: event.Info, User: `OFFICE\yamada`, Process: `C:\Program Files\Microsoft Office\EXCEL.EXE`,
			Object: fmt.Sprintf(`D:\顧客\2026\見積-%05d.xlsx`, a.seq), RegisterID: "PI-0007",
			Attrs: event.Attrs{"op": "write", "size": json.Number("48213")}}
		if err := e.Seal(a.prev); err != nil {
			panic(err)
		}
		a.prev = e.Hash
		out[i] = e
	}
	return out
}

// post sends a raw body and returns the status and body.
func (a *agentClient) post(body []byte, hdr http.Header) (int, []byte, error) {
	req, err := http.NewRequest("POST", a.base+wire.PathEvents, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := a.c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// send ships evs and returns the acked seq.
func (a *agentClient) send(evs []event.Event) (uint64, error) {
	body, _ := json.Marshal(wire.Batch{Events: evs})
	st, b, err := a.post(body, nil)
	if err != nil {
		return 0, err
	}
	if st != 200 {
		return 0, fmt.Errorf("status %d: %s", st, b)
	}
	var ack wire.Ack
	if err := json.Unmarshal(b, &ack); err != nil {
		return 0, err
	}
	return ack.AckedSeq, nil
}

// adminGet calls the admin API and decodes the JSON answer.
func adminGet(tb testing.TB, base, token string, caPEM []byte, path string, q url.Values, out any) int {
	tb.Helper()
	u := base + path
	if q != nil {
		u += "?" + q.Encode()
	}
	req, _ := http.NewRequest("GET", u, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := httpsClient(caPEM, nil).Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 200 && out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			tb.Fatalf("%s: %v in %s", path, err, b)
		}
	}
	return resp.StatusCode
}

func readFile(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// startFingerprint computes the "sha256:HEX" pin of a CA PEM the way an
// admin copies it from the enroll command.
func startFingerprint(tb testing.TB, caPEM []byte) string {
	tb.Helper()
	blk, _ := pem.Decode(caPEM)
	if blk == nil {
		tb.Fatal("ca.pem: no PEM block")
	}
	sum := sha256.Sum256(blk.Bytes)
	return "sha256:" + hex.EncodeToString(sum[:])
}
