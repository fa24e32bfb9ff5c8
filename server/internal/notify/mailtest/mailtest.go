// Package mailtest runs a real SMTP server (emersion/go-smtp) inside a test
// process, with STARTTLS or implicit TLS and AUTH PLAIN, and decodes what
// it receives (ISO-2022-JP or UTF-8) for assertions. Tests only.
package mailtest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"mime"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/text/encoding/japanese"
)

// Server is a real SMTP server (go-smtp) in the test process.
type Server struct {
	srv *smtp.Server
	// Addr is where it listens (127.0.0.1).
	Addr *net.TCPAddr
	// CAPEM is the certificate it presents, to trust in the client.
	CAPEM string
	// Got receives every accepted message.
	Got chan Received
}

// Received is one accepted message.
type Received struct {
	From string
	To   []string
	Data []byte
	Auth string // the user that authenticated, if any
	At   time.Time
}

// selfSigned makes a certificate for 127.0.0.1.
func selfSigned(t testing.TB) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mail.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pemCert := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pemCert
}

// Start starts a server, closed when the test ends; implicit selects TLS from the first byte
// (port 465 style), else STARTTLS is offered. AUTH PLAIN takes user/pass.
func Start(t testing.TB, implicit bool, user, pass string) *Server {
	t.Helper()
	cert, caPEM := selfSigned(t)
	ms := &Server{CAPEM: caPEM, Got: make(chan Received, 1000)}
	be := smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{ms: ms, user: user, pass: pass}, nil
	})
	s := smtp.NewServer(be)
	s.Domain = "mail.test"
	s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	s.MaxMessageBytes = 4 << 20
	var ln net.Listener
	var err error
	if implicit {
		ln, err = tls.Listen("tcp", "127.0.0.1:0", s.TLSConfig)
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	ms.srv, ms.Addr = s, ln.Addr().(*net.TCPAddr)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Close() })
	return ms
}

type session struct {
	ms         *Server
	user, pass string
	authed     string
	mu         sync.Mutex
	from       string
	to         []string
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *session) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != s.user || password != s.pass {
			return errors.New("invalid credentials")
		}
		s.authed = username
		return nil
	}), nil
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	if s.user != "" && s.authed == "" {
		return &smtp.SMTPError{Code: 530, Message: "authentication required"}
	}
	s.from = from
	return nil
}
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error { s.to = append(s.to, to); return nil }
func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.ms.Got <- Received{From: s.from, To: s.to, Data: b, Auth: s.authed, At: time.Now()}
	return nil
}
func (s *session) Reset()        { s.from, s.to = "", nil }
func (s *session) Logout() error { return nil }

// Decoded is a Received mail with subject and body Decoded to UTF-8.
type Decoded struct {
	Subject, Body, Charset string
	Header                 mail.Header
	// SubjectRaw and BodyRaw are the same before the charset's decoding.
	SubjectRaw, BodyRaw []byte
}

// Decode parses a received mail and decodes subject and body to UTF-8.
func Decode(t testing.TB, raw []byte) Decoded {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("mail: %v\n%s", err, raw)
	}
	var subjRaw []byte
	dec := &mime.WordDecoder{CharsetReader: func(cs string, in io.Reader) (io.Reader, error) {
		if strings.EqualFold(cs, "iso-2022-jp") {
			b, err := io.ReadAll(in)
			if err != nil {
				return nil, err
			}
			subjRaw = append(subjRaw, b...)
			return japanese.ISO2022JP.NewDecoder().Reader(bytes.NewReader(b)), nil
		}
		return nil, errors.New("unexpected charset " + cs)
	}}
	subj, err := dec.DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		t.Fatalf("subject %q: %v", msg.Header.Get("Subject"), err)
	}
	_, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(msg.Body)
	var text string
	switch cte := strings.ToLower(msg.Header.Get("Content-Transfer-Encoding")); cte {
	case "base64":
		b, err := io.ReadAll(base64Reader(body))
		if err != nil {
			t.Fatal(err)
		}
		text = string(b)
	case "7bit", "":
		for _, c := range body {
			if c >= 0x80 {
				t.Fatalf("8-bit byte in a 7bit body")
			}
		}
		text = string(body)
	default:
		t.Fatalf("unexpected transfer encoding %q", cte)
	}
	bodyRaw := []byte(text)
	if strings.EqualFold(params["charset"], "iso-2022-jp") {
		u, err := japanese.ISO2022JP.NewDecoder().String(text)
		if err != nil {
			t.Fatal(err)
		}
		text = u
	}
	return Decoded{Subject: subj, Body: strings.ReplaceAll(text, "\r\n", "\n"), Charset: strings.ToLower(params["charset"]), Header: msg.Header,
		SubjectRaw: subjRaw, BodyRaw: bodyRaw}
}

func base64Reader(b []byte) io.Reader {
	return base64.NewDecoder(base64.StdEncoding, bytes.NewReader(bytes.Join(bytes.Fields(b), nil)))
}
