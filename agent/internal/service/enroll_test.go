package service

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/agent/internal/uplink"
	"github.com/mamori/mamori/shared/wire"
)

// enrollServer is a TLS server of its own CA that certifies CSRs sent with
// token "tok" as agent-e and records every token it was sent.
type enrollServer struct {
	srv    *httptest.Server
	hash   string
	mu     sync.Mutex
	tokens []string
}

func (e *enrollServer) sent() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.tokens...)
}

func newEnrollServer(t *testing.T) *enrollServer {
	t.Helper()
	ca, caDER, caKey := testCA()
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvT := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: ipLoopback()}
	srvDER, _ := x509.CreateCertificate(rand.Reader, srvT, ca, srvKey.Public(), caKey)
	e := &enrollServer{hash: uplink.Fingerprint(caDER)}
	serial := int64(10)
	e.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != wire.PathEnroll {
			w.WriteHeader(http.StatusOK)
			return
		}
		var req wire.EnrollRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		e.mu.Lock()
		e.tokens = append(e.tokens, req.Token)
		serial++
		n := serial
		e.mu.Unlock()
		if req.Token != "tok" {
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(wire.Error{Error: "enrollment token invalid, expired or used up"})
			return
		}
		b, _ := pem.Decode([]byte(req.CSR))
		csr, err := x509.ParseCertificateRequest(b.Bytes)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		leafT := &x509.Certificate{SerialNumber: big.NewInt(n), Subject: pkix.Name{CommonName: "agent-e"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		der, _ := x509.CreateCertificate(rand.Reader, leafT, ca, csr.PublicKey, caKey)
		json.NewEncoder(w).Encode(wire.EnrollResponse{AgentID: "agent-e",
			Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
			CA:          string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))})
	}))
	e.srv.TLS = &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{{
		Certificate: [][]byte{srvDER, caDER}, PrivateKey: srvKey}}}
	e.srv.StartTLS()
	t.Cleanup(e.srv.Close)
	return e
}

// A token given to configure and then used by a manual enroll must not stay
// in config.json: it is a secret with a use count.
func TestEnrollAfterConfigureForgetsToken(t *testing.T) {
	e := newEnrollServer(t)
	dir := filepath.Join(t.TempDir(), "state")
	var out, errb bytes.Buffer
	if code := Main([]string{"configure", "--server", e.srv.URL, "--token", "tok", "--ca-hash", e.hash,
		"--state-dir", dir}, nil, &out, &errb); code != exitOK {
		t.Fatalf("configure: exit %d: %s", code, errb.String())
	}
	if c, err := uplink.LoadConfig(dir); err != nil || c.Token != "tok" {
		t.Fatalf("configure did not keep the token: %+v %v", c, err)
	}
	if code := Main([]string{"enroll", "--server", e.srv.URL, "--token", "tok", "--ca-hash", e.hash,
		"--state-dir", dir}, nil, &out, &errb); code != exitOK {
		t.Fatalf("enroll: exit %d: %s", code, errb.String())
	}
	c, err := uplink.LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.Token != "" {
		t.Fatalf("token still in %s after enroll", uplink.FileConfig)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, uplink.FileConfig)); bytes.Contains(b, []byte("tok\"")) {
		t.Fatalf("%s still holds the token: %s", uplink.FileConfig, b)
	}
	if len(c.Servers) == 0 || c.CAHash != e.hash {
		t.Fatalf("the rest of the config was lost: %+v", c)
	}
}

// Pasted values (a Windows file's "\r", spaces) are trimmed, in enroll and
// configure alike, so a good token is not refused with 401.
func TestPastedFlagsAreTrimmed(t *testing.T) {
	e := newEnrollServer(t)
	dir := filepath.Join(t.TempDir(), "state")
	var out, errb bytes.Buffer
	if code := Main([]string{"enroll", "--server", " " + e.srv.URL + " \r", "--token", " tok\r\n",
		"--ca-hash", e.hash + " \r", "--state-dir", dir}, nil, &out, &errb); code != exitOK {
		t.Fatalf("enroll with pasted values: exit %d: %s (tokens sent %q)", code, errb.String(), e.sent())
	}
	if got := e.sent(); len(got) != 1 || got[0] != "tok" {
		t.Fatalf("server got tokens %q, want [tok]", got)
	}

	dir2 := filepath.Join(t.TempDir(), "state")
	if code := Main([]string{"configure", "--server", e.srv.URL + "\r", "--token", "tok \r", "--ca-hash", " " + e.hash + "\r",
		"--department", " 経理\r", "--proxy", " ", "--state-dir", dir2}, nil, &out, &errb); code != exitOK {
		t.Fatalf("configure with pasted values: exit %d: %s", code, errb.String())
	}
	c, err := uplink.LoadConfig(dir2)
	if err != nil {
		t.Fatal(err)
	}
	if c.Token != "tok" || c.CAHash != e.hash || c.Department != "経理" || c.Proxy != "" ||
		len(c.Servers) != 1 || strings.TrimSpace(c.Servers[0]) != c.Servers[0] {
		t.Fatalf("configure stored untrimmed values: %+v", c)
	}
}

func ipLoopback() []net.IP { return []net.IP{net.ParseIP("127.0.0.1")} }

// enroll with a state dir it cannot write fails before the server is asked:
// the server would create the agent and use up a use of the token.
func TestEnrollUnwritableStateDirAsksNoServer(t *testing.T) {
	e := newEnrollServer(t)
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{file, filepath.Join(file, "state")} {
		var out, errb bytes.Buffer
		code := Main([]string{"enroll", "--server", e.srv.URL, "--token", "tok", "--ca-hash", e.hash,
			"--state-dir", dir}, nil, &out, &errb)
		if code != exitError {
			t.Fatalf("%s: exit %d, want %d: %s", dir, code, exitError, errb.String())
		}
		if !strings.Contains(errb.String(), "state dir") {
			t.Errorf("%s: message does not name the state dir: %s", dir, errb.String())
		}
	}
	if got := e.sent(); len(got) != 0 {
		t.Fatalf("the server was asked to enroll %d times", len(got))
	}
}

// The service name matches what this OS's package installs: the MSI's
// MamoriAgent on Windows, the .deb/.rpm unit mamori-agent.service elsewhere,
// so install, start and stop reach the packaged service.
func TestServiceNameMatchesPackages(t *testing.T) {
	root := filepath.Join("..", "..", "..", "installers")
	wxs, err := os.ReadFile(filepath.Join(root, "windows", "mamori-agent.wxs"))
	if err != nil {
		t.Skipf("installers not in this tree: %v", err)
	}
	m := regexp.MustCompile(`<ServiceInstall [^>]*?\sName="([^"]+)"`).FindSubmatch(wxs)
	if m == nil {
		t.Fatal("no ServiceInstall in mamori-agent.wxs")
	}
	want := map[string]string{"windows": string(m[1]), "linux": "mamori-agent", "darwin": "mamori-agent"}
	if _, err := os.Stat(filepath.Join(root, "linux", want["linux"]+".service")); err != nil {
		t.Fatalf("the packages' unit: %v", err)
	}
	for goos, name := range want {
		if got := serviceNameFor(goos); got != name {
			t.Errorf("%s: service name %q, the package installs %q", goos, got, name)
		}
	}
	if w, ok := want[runtime.GOOS]; ok {
		if got := serviceConfig(t.TempDir()).Name; got != w {
			t.Errorf("serviceConfig names %q, want %q", got, w)
		}
	}
}

// While the process retries enrollment it is running: status says so.
func TestEnrollFailureStatusIsRunning(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if err := uplink.SaveConfig(dir, uplink.Config{Servers: []string{closedURL(t)}, Token: "tok",
		CAHash: "sha256:" + strings.Repeat("ab", 32)}); err != nil {
		t.Fatal(err)
	}
	writeEnrollFailure(dir, EnrollFailure{Error: "boom", At: time.Now().UTC(), Attempt: 1}, zerologNop())
	b, err := os.ReadFile(filepath.Join(dir, FileStatus))
	if err != nil {
		t.Fatal(err)
	}
	var s Status
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	if !s.Running {
		t.Fatalf("status.json of the enrolling process says not running: %s", b)
	}
	got, err := ReadStatus(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Running {
		t.Fatalf("status of the enrolling process says not running: %+v", got)
	}
}

func zerologNop() zerolog.Logger { return zerolog.Nop() }

// deadPID is the pid of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// A status.json that says running but whose process is gone (kill -9, a
// crash) is not reported as running, enrolled or not.
func TestStatusDeadProcessNotRunning(t *testing.T) {
	dead := deadPID(t)
	write := func(t *testing.T, dir string, s Status) {
		t.Helper()
		b, _ := json.Marshal(s)
		if err := uplink.WriteFileAtomic(filepath.Join(dir, FileStatus), b); err != nil {
			t.Fatal(err)
		}
	}
	enrolled := writeIdentity(t)
	unenrolled := filepath.Join(t.TempDir(), "state")
	if err := uplink.SaveConfig(unenrolled, uplink.Config{Servers: []string{closedURL(t)}, Token: "tok",
		CAHash: "sha256:" + strings.Repeat("ab", 32)}); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{enrolled, unenrolled} {
		for _, tc := range []struct {
			pid  int
			want bool
		}{{os.Getpid(), true}, {dead, false}} {
			now := time.Now().UTC()
			write(t, dir, Status{Running: true, PID: tc.pid, UpdatedAt: now,
				LastEnrollError: &EnrollFailure{Error: "boom", At: now, Attempt: 1, RetryAt: now.Add(time.Minute)}})
			s, err := ReadStatus(dir)
			if err != nil {
				t.Fatal(err)
			}
			if s.Running != tc.want {
				t.Errorf("%s, pid %d: running %v, want %v", dir, tc.pid, s.Running, tc.want)
			}
		}
	}
}

// configure on a PC enrolled under another CA (a reinstall with another
// site's parameters) warns that those servers will refuse this PC, rather
// than printing "configured" and leaving the agent to log tls_wrong_ca.
func TestConfigureWarnsOfAnotherCA(t *testing.T) {
	e, other := newEnrollServer(t), newEnrollServer(t)
	dir := filepath.Join(t.TempDir(), "state")
	var out, errb bytes.Buffer
	if code := Main([]string{"enroll", "--server", e.srv.URL, "--token", "tok", "--ca-hash", e.hash,
		"--state-dir", dir}, nil, &out, &errb); code != exitOK {
		t.Fatalf("enroll: exit %d: %s", code, errb.String())
	}
	errb.Reset()
	if code := Main([]string{"configure", "--server", e.srv.URL, "--ca-hash", e.hash, "--state-dir", dir}, nil, &out, &errb); code != exitOK || errb.Len() != 0 {
		t.Fatalf("configure with the same CA: exit %d: %s", code, errb.String())
	}
	if code := Main([]string{"configure", "--server", other.srv.URL, "--ca-hash", other.hash, "--state-dir", dir}, nil, &out, &errb); code != exitOK ||
		!strings.Contains(errb.String(), "another CA") || !strings.Contains(errb.String(), "enroll again") {
		t.Fatalf("configure with another site's CA: exit %d: %q", code, errb.String())
	}
}
