// Package wire defines the messages between agent and server on the agent
// plane (/v1): enrollment, event batches, acks and policy delivery, and the
// limits both sides enforce on them.
package wire

import (
	"encoding/json"
	"strings"

	"github.com/mamori/mamori/shared/event"
)

// Paths of the agent plane.
const (
	PathEnroll = "/v1/enroll"
	PathEvents = "/v1/events"
	PathPolicy = "/v1/policy"
	// PathRenew takes a RenewRequest with the agent's current client
	// certificate and answers an EnrollResponse with a new certificate for
	// the same agent id. The old certificate is revoked once the agent has
	// used the new one.
	PathRenew = "/v1/renew"
)

// RenewRequest asks for a certificate for a new key (CSR, PEM).
type RenewRequest struct {
	CSR string `json:"csr"`
}

// Limits. The server refuses anything larger with 413 or 400.
const (
	MaxEnrollBody  = 64 << 10 // enroll request
	MaxBatchEvents = 1000     // events in one batch
	MaxBatchBody   = 16 << 20 // decoded (uncompressed) batch body
	MaxPolicyBody  = 4 << 20  // policy response
	MaxErrorBody   = 16 << 10 // error response read by clients
	MaxHostnameLen = 255
	MaxOSVersion   = 256 // EnrollRequest.OSVersion, and the one taken from an agent.inventory
)

// EnrollRequest is POSTed to PathEnroll without a client certificate.
type EnrollRequest struct {
	Token      string `json:"token"`
	CSR        string `json:"csr"` // PEM "CERTIFICATE REQUEST"; its key never leaves the agent
	Hostname   string `json:"hostname"`
	OS         string `json:"os"`   // runtime.GOOS
	Arch       string `json:"arch"` // runtime.GOARCH
	OSVersion  string `json:"os_version,omitempty"`
	Department string `json:"department,omitempty"`
}

// EnrollResponse carries the agent's identity. The agent id is also the
// Subject CommonName of Certificate.
type EnrollResponse struct {
	AgentID     string `json:"agent_id"`
	Certificate string `json:"certificate"` // PEM
	CA          string `json:"ca"`          // PEM of the Mamori CA
}

// Batch is POSTed to PathEvents with the agent's client certificate, as JSON,
// optionally with Content-Encoding: gzip or zstd. Events are sealed (seq,
// prev, hash) by the agent and ordered by seq.
type Batch struct {
	Events []event.Event `json:"events"`
}

// AcceptEncoding is what a server that decodes zstd batches says in the
// Accept-Encoding header of its every answer to PathEvents (RFC 9110,
// 12.5.3). An agent sends zstd only after an answer said so, so that it
// keeps working with servers from before zstd, which answer it 415.
const AcceptEncoding = "zstd, gzip"

// Ack answers a stored batch: every event with seq <= AckedSeq is durable on
// the server and may be dropped by the agent.
type Ack struct {
	AckedSeq uint64 `json:"acked_seq"`
}

// Error is the body of every 4xx/5xx answer.
type Error struct {
	Error string `json:"error"`
}

// PolicyResponse answers GET PathPolicy?version=V&wait=D. The server holds
// the request until the effective policy's version differs from V or D
// passes; then it answers 200 with the current policy (304 when unchanged).
type PolicyResponse struct {
	Version string          `json:"version"` // opaque; changes whenever Policy does
	Policy  json.RawMessage `json:"policy"`  // JSON form of policy.Policy
}

// OSVersionLine names an operating system and its version in one line, as
// the server's agent list shows it ("debian 12.7", "Microsoft Windows 11 Pro
// 10.0.22631 Build 22631"), from an inventory's platform, platform_version
// and kernel_version; the kernel version when nothing better is known.
func OSVersionLine(platform, version, kernel string) string {
	s := strings.TrimSpace(strings.TrimSpace(platform) + " " + strings.TrimSpace(version))
	if s == "" {
		s = strings.TrimSpace(kernel)
	}
	return s
}
