// Package keyring gives a Mamori server the keys every server of a site
// shares: the CA (it signs agents' and servers' certificates, and agents pin
// it) and the Ed25519 key that signs the log's checkpoints. With a
// key-encryption key (KEK) they live in etcd, sealed with it, so another
// server joins with the KEK instead of a copy of a data dir; without one
// they stay in the data dir as files (one server with its embedded etcd).
//
// Each node's TLS server key is its own and stays in its data dir: it never
// needs to be shared, since agents trust any certificate of the CA, and a
// node's certificate names the site's service name and the node's own names.
package keyring

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/mod/sumdb/note"

	"github.com/mamori/mamori/server/internal/pki"
	"github.com/mamori/mamori/shared/securefs"
)

// EtcdKey holds the sealed keys: one value, so publishing them is one
// create-only write and two first servers cannot publish two CAs.
const EtcdKey = "/mamori/keyring"

// Files in the data dir. ca.pem and log-key.pub are public copies every node
// writes; log-key (and pki's ca-key.pem) hold secrets only on a server
// without a KEK.
const (
	FileLogKey    = "log-key"     // note signer key, 0600
	FileLogKeyPub = "log-key.pub" // note verifier key
)

// format is the version of the stored value; a newer one is refused with a
// message rather than misread.
const format = 1

var (
	// ErrWrongKEK: the keys in etcd were sealed with another KEK.
	ErrWrongKEK = errors.New("this node's key-encryption key does not match the cluster's")
	// ErrNoCluster: --join found no keys in etcd.
	ErrNoCluster = errors.New("no cluster keys in etcd")
)

// Config says where the keys are and what this node is called.
type Config struct {
	DataDir string
	// Hostnames are this node's own DNS names and addresses for its server
	// certificate.
	Hostnames []string
	// ServiceName is the site's shared name (load balancer or DNS name)
	// that every node's certificate also carries. The first server records
	// it in etcd; later ones take it from there, and one given that differs
	// is refused.
	ServiceName string
	// KEK seals the keys in etcd; nil keeps them in the data dir.
	KEK *KEK
	// Join refuses to create keys: the node must find the cluster's.
	Join bool
	// Etcd is the control plane's client; needed with a KEK.
	Etcd *clientv3.Client
	Log  zerolog.Logger
}

// Keys are what a node serves and signs with.
type Keys struct {
	CA          *pki.Authority
	LogSigner   string // note signer key of the log
	LogVerifier string // note verifier key (log-key.pub)
	// ServiceName is the site's recorded service name, "" when none.
	ServiceName string
	// Names are those on this node's certificate, the service name first.
	Names []string
}

// Open loads this node's keys. With a KEK: it adopts the cluster's from etcd,
// or, when there are none and the node is not joining, publishes its data
// dir's (a server that ran without a KEK before) or new ones, create-only;
// a server that loses that race adopts the winner's. Every refusal (wrong
// KEK, no cluster to join, a data dir of another CA) comes before any write
// to etcd.
func Open(ctx context.Context, cfg Config) (*Keys, error) {
	names := nodeNames(cfg.ServiceName, cfg.Hostnames)
	if len(names) == 0 {
		return nil, errors.New("keyring: no host name for the server certificate")
	}
	if cfg.KEK == nil {
		if cfg.Join {
			return nil, errors.New("keyring: joining a cluster needs the site's key-encryption key (--kek-file or " + EnvKEK + ")")
		}
		// A server of a site that forgot its KEK must not make a CA of its
		// own next to the site's.
		if cfg.Etcd != nil {
			resp, err := cfg.Etcd.Get(ctx, EtcdKey, clientv3.WithCountOnly())
			if err != nil {
				return nil, fmt.Errorf("keyring: read %s from etcd: %w", EtcdKey, err)
			}
			if resp.Count > 0 {
				return nil, fmt.Errorf("keyring: this etcd holds a site's keys, sealed with its key-encryption key: give this server that key (--kek-file or %s)", EnvKEK)
			}
		}
		return openDisk(cfg, names)
	}
	if cfg.Etcd == nil {
		return nil, errors.New("keyring: no etcd client")
	}
	log := cfg.Log.With().Str("component", "keyring").Logger()
	sh, svc, err := fetch(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if sh == nil {
		if cfg.Join {
			return nil, fmt.Errorf("keyring: %w: start the site's first server without --join (it creates them), then join this one", ErrNoCluster)
		}
		mine, from, err := localOrNew(cfg.DataDir, names[0])
		if err != nil {
			return nil, err
		}
		// Refusals before the write: a start that stops here publishes nothing.
		if err := matchDataDir(cfg.DataDir, mine); err != nil {
			return nil, err
		}
		won, err := publish(ctx, cfg, mine)
		if err != nil {
			return nil, err
		}
		if won == nil {
			log.Info().Str("kek_id", cfg.KEK.ID()).Str("from", from).Str("service_name", cfg.ServiceName).
				Msg("published the cluster's keys to etcd, sealed with the key-encryption key")
			sh, svc = mine, cfg.ServiceName
		} else {
			log.Info().Msg("another server published the cluster's keys first: adopting them")
			if sh, svc, err = open(cfg.KEK, won); err != nil {
				return nil, err
			}
		}
	}
	log.Info().Str("kek_id", cfg.KEK.ID()).Str("service_name", svc).Msg("the cluster's keys are open")
	if cfg.ServiceName != "" && cfg.ServiceName != svc {
		return nil, fmt.Errorf("keyring: --service-name %q differs from the cluster's %q recorded in etcd", cfg.ServiceName, svc)
	}
	if err := matchDataDir(cfg.DataDir, sh); err != nil {
		return nil, err
	}
	_, caKeyErr := os.Stat(filepath.Join(cfg.DataDir, pki.CAKeyFile))
	_, logKeyErr := os.Stat(filepath.Join(cfg.DataDir, FileLogKey))
	if caKeyErr == nil || logKeyErr == nil {
		log.Warn().Str("data_dir", cfg.DataDir).Msg("the data dir still holds the CA key or the log key in the clear; etcd has them sealed: remove " +
			pki.CAKeyFile + " and " + FileLogKey + " once they are backed up")
	}
	names = nodeNames(svc, cfg.Hostnames)
	vkey, err := VerifierKey(sh.LogKey)
	if err != nil {
		return nil, fmt.Errorf("keyring: the cluster's log key: %w", err)
	}
	ca, err := pki.Open(cfg.DataDir, names, []byte(sh.CACert), []byte(sh.CAKey))
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	// Public copies, as a server without a KEK has them: operators and
	// auditors take ca.pem and log-key.pub from any node's data dir.
	if err := writeIfMissing(filepath.Join(cfg.DataDir, pki.CAFile), []byte(sh.CACert)); err != nil {
		return nil, err
	}
	if err := writeIfMissing(filepath.Join(cfg.DataDir, FileLogKeyPub), []byte(vkey+"\n")); err != nil {
		return nil, err
	}
	return &Keys{CA: ca, LogSigner: sh.LogKey, LogVerifier: vkey, ServiceName: svc, Names: names}, nil
}

// openDisk is the server without a KEK: keys in the data dir, as always.
func openDisk(cfg Config, names []string) (*Keys, error) {
	ca, err := pki.LoadOrCreate(cfg.DataDir, names)
	if err != nil {
		return nil, fmt.Errorf("keyring: CA: %w", err)
	}
	if err := writeIfMissing(filepath.Join(cfg.DataDir, pki.CAFile), ca.CertPEM()); err != nil {
		return nil, err
	}
	skey, vkey, err := loadOrCreateLogKey(cfg.DataDir, "mamori/"+names[0])
	if err != nil {
		return nil, err
	}
	return &Keys{CA: ca, LogSigner: skey, LogVerifier: vkey, ServiceName: cfg.ServiceName, Names: names}, nil
}

// shared is the sealed plaintext: what every node needs and must not copy
// from another's disk.
type shared struct {
	CACert string `json:"ca_cert"` // PEM
	CAKey  string `json:"ca_key"`  // PEM, PKCS#8
	LogKey string `json:"log_key"` // note signer key
}

// envelope is the value at EtcdKey. The header is in the clear so a node
// can tell a wrong KEK or a newer format from damage; it is bound to the
// sealed part as associated data together with the etcd key name, so it
// cannot be swapped or moved either.
type envelope struct {
	Format      int       `json:"format"`
	Alg         string    `json:"alg"`
	KEKID       string    `json:"kek_id"`
	ServiceName string    `json:"service_name,omitempty"`
	Created     time.Time `json:"created"`
	Nonce       []byte    `json:"nonce"`
	Sealed      []byte    `json:"sealed"`
}

const alg = "xchacha20poly1305"

func (e *envelope) aad() []byte {
	return fmt.Appendf(nil, "mamori keyring\x00%s\x00%d\x00%s\x00%s\x00%s", EtcdKey, e.Format, e.Alg, e.KEKID, e.ServiceName)
}

func seal(k *KEK, sh *shared, serviceName string) ([]byte, error) {
	plain, err := json.Marshal(sh)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	e := envelope{Format: format, Alg: alg, KEKID: k.id, ServiceName: serviceName, Created: time.Now().UTC(),
		Nonce: make([]byte, k.aead.NonceSize())}
	_, _ = rand.Read(e.Nonce)
	e.Sealed = k.aead.Seal(nil, e.Nonce, plain, e.aad())
	return json.Marshal(e)
}

// open unseals the value at EtcdKey and checks what it holds.
func open(k *KEK, b []byte) (*shared, string, error) {
	var e envelope
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, "", fmt.Errorf("keyring: the value at %s in etcd is not Mamori's sealed keys: %w", EtcdKey, err)
	}
	if e.Format != format || e.Alg != alg {
		return nil, "", fmt.Errorf("keyring: the cluster's keys are stored in format %d (%s), which this server does not read: upgrade it", e.Format, e.Alg)
	}
	if e.KEKID != k.id {
		return nil, "", fmt.Errorf("keyring: %w (the cluster's key id is %s, this node's %s): give it the site's KEK with --kek-file or %s",
			ErrWrongKEK, e.KEKID, k.id, EnvKEK)
	}
	if len(e.Nonce) != k.aead.NonceSize() {
		return nil, "", fmt.Errorf("keyring: the cluster's keys in etcd are damaged (nonce of %d bytes)", len(e.Nonce))
	}
	plain, err := k.aead.Open(nil, e.Nonce, e.Sealed, e.aad())
	if err != nil {
		return nil, "", fmt.Errorf("keyring: the cluster's keys in etcd do not open with this node's key-encryption key although its id matches: they were altered or damaged; restore %s from an etcd backup", EtcdKey)
	}
	var sh shared
	if err := json.Unmarshal(plain, &sh); err != nil {
		return nil, "", fmt.Errorf("keyring: the cluster's keys: %w", err)
	}
	if err := sh.check(); err != nil {
		return nil, "", fmt.Errorf("keyring: the cluster's keys: %w", err)
	}
	return &sh, e.ServiceName, nil
}

// check parses what a node would serve with, so nothing half-usable is
// published or adopted.
func (sh *shared) check() error {
	if _, err := note.NewSigner(sh.LogKey); err != nil {
		return fmt.Errorf("log key: %w", err)
	}
	if _, err := VerifierKey(sh.LogKey); err != nil {
		return fmt.Errorf("log key: %w", err)
	}
	return pki.CheckCA([]byte(sh.CACert), []byte(sh.CAKey))
}

// fetch reads the sealed keys; nil when etcd has none.
func fetch(ctx context.Context, cfg Config) (*shared, string, error) {
	resp, err := cfg.Etcd.Get(ctx, EtcdKey)
	if err != nil {
		return nil, "", fmt.Errorf("keyring: read %s from etcd: %w", EtcdKey, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, "", nil
	}
	return open(cfg.KEK, resp.Kvs[0].Value)
}

// publish writes sh sealed at EtcdKey if nothing is there yet. It returns
// nil when it wrote, else the value another server published first.
func publish(ctx context.Context, cfg Config, sh *shared) ([]byte, error) {
	val, err := seal(cfg.KEK, sh, cfg.ServiceName)
	if err != nil {
		return nil, err
	}
	resp, err := cfg.Etcd.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(EtcdKey), "=", 0)).
		Then(clientv3.OpPut(EtcdKey, string(val))).
		Else(clientv3.OpGet(EtcdKey)).
		Commit()
	if err != nil {
		return nil, fmt.Errorf("keyring: publish the cluster's keys to etcd: %w", err)
	}
	if resp.Succeeded {
		return nil, nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return nil, errors.New("keyring: the cluster's keys appeared and vanished while publishing: start again")
	}
	return kvs[0].Value, nil
}

// localOrNew gives the keys a first server publishes: its data dir's when it
// ran without a KEK before (agents pinned that CA, auditors hold that log
// key), else new ones. Nothing is written to the data dir here.
func localOrNew(dir, firstName string) (*shared, string, error) {
	caCert, caKey, caErr := pki.ReadCA(dir)
	logKey, logErr := readLogKey(dir)
	switch {
	case caErr == nil && logErr == nil:
		return &shared{CACert: string(caCert), CAKey: string(caKey), LogKey: logKey}, "data dir", nil
	case caErr != nil && !errors.Is(caErr, fs.ErrNotExist):
		return nil, "", fmt.Errorf("keyring: %w", caErr)
	case logErr != nil && !errors.Is(logErr, fs.ErrNotExist):
		return nil, "", logErr
	case caErr == nil || logErr == nil:
		// One without the other: publishing a new one would orphan the
		// agents or the auditors of the other.
		return nil, "", fmt.Errorf("keyring: the data dir %s holds only one of the CA key and the log key: restore the other from backup before publishing them", dir)
	}
	if _, err := os.Stat(filepath.Join(dir, pki.CAFile)); err == nil {
		return nil, "", fmt.Errorf("keyring: the data dir %s has %s but no CA key, and etcd has no cluster keys: restore %s from backup (a new CA would strand every agent that pinned this one)", dir, pki.CAFile, pki.CAKeyFile)
	}
	caCert, caKey, err := pki.GenerateCA()
	if err != nil {
		return nil, "", err
	}
	skey, _, err := note.GenerateKey(rand.Reader, "mamori/"+firstName)
	if err != nil {
		return nil, "", fmt.Errorf("keyring: log key: %w", err)
	}
	return &shared{CACert: string(caCert), CAKey: string(caKey), LogKey: skey}, "new", nil
}

// matchDataDir refuses a data dir whose own CA or log key (or their
// public copies) are not the cluster's: a node keeps one identity, and files
// of another site left there would otherwise be served, signed with, or
// handed to auditors.
func matchDataDir(dir string, sh *shared) error {
	want, err := pki.Fingerprint([]byte(sh.CACert))
	if err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, pki.CAFile)); err == nil {
		have, err := pki.Fingerprint(b)
		if err != nil {
			return fmt.Errorf("keyring: %s: %w", filepath.Join(dir, pki.CAFile), err)
		}
		if have != want {
			return fmt.Errorf("keyring: the data dir %s belongs to another CA (%s) than the cluster's (%s): give this node a new data dir", dir, have, want)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("keyring: %w", err)
	}
	if skey, err := readLogKey(dir); err == nil {
		if skey != sh.LogKey {
			return fmt.Errorf("keyring: the data dir %s holds another log key than the cluster's: give this node a new data dir", dir)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	vkey, err := VerifierKey(sh.LogKey)
	if err != nil {
		return fmt.Errorf("keyring: log key: %w", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, FileLogKeyPub)); err == nil {
		if strings.TrimSpace(string(b)) != vkey {
			return fmt.Errorf("keyring: the data dir %s has a %s of another log key than the cluster's: give this node a new data dir", dir, FileLogKeyPub)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("keyring: %w", err)
	}
	return nil
}

// nodeNames is the service name followed by this node's names, each once.
func nodeNames(service string, hostnames []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, n := range append([]string{service}, hostnames...) {
		k := strings.ToLower(strings.TrimSpace(n))
		if k == "" || seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, strings.TrimSpace(n))
	}
	return out
}

func writeIfMissing(path string, data []byte) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("keyring: %w", err)
	}
	if err := securefs.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	return nil
}

// readLogKey reads and checks the data dir's log signer key.
func readLogKey(dir string) (string, error) {
	p := filepath.Join(dir, FileLogKey)
	b, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("keyring: log key: %w", err)
	}
	skey := strings.TrimSpace(string(b))
	if _, err := note.NewSigner(skey); err != nil {
		return "", fmt.Errorf("keyring: %s: %w", p, err)
	}
	return skey, nil
}

// loadOrCreateLogKey makes the Ed25519 note key pair that signs log
// checkpoints (log-key, 0600) and verifies them (log-key.pub), and returns
// both keys.
func loadOrCreateLogKey(dir, origin string) (skey, vkey string, err error) {
	skPath, vkPath := filepath.Join(dir, FileLogKey), filepath.Join(dir, FileLogKeyPub)
	skey, err = readLogKey(dir)
	if errors.Is(err, fs.ErrNotExist) {
		// log-key.pub without log-key: the log was signed with a key that
		// is lost here. A new one would overwrite the public key auditors
		// check with, and could not sign on from the checkpoints made.
		if _, perr := os.Stat(vkPath); perr == nil {
			return "", "", fmt.Errorf("keyring: %s is missing but %s is here: the log's checkpoints are signed with that key; restore %s from the data dir's backup (a new key cannot continue the log)",
				skPath, FileLogKeyPub, FileLogKey)
		}
		skey, vkey, err = note.GenerateKey(rand.Reader, origin)
		if err != nil {
			return "", "", fmt.Errorf("keyring: log key: %w", err)
		}
		if err := securefs.WriteSecretFile(skPath, []byte(skey+"\n")); err != nil {
			return "", "", fmt.Errorf("keyring: log key: %w", err)
		}
		if err := securefs.WriteFile(vkPath, []byte(vkey+"\n"), 0o644); err != nil {
			return "", "", fmt.Errorf("keyring: %w", err)
		}
		return skey, vkey, nil
	}
	if err != nil {
		return "", "", err
	}
	if vkey, err = VerifierKey(skey); err != nil {
		return "", "", fmt.Errorf("keyring: %s: %w", skPath, err)
	}
	if err := writeIfMissing(vkPath, []byte(vkey+"\n")); err != nil {
		return "", "", err
	}
	return skey, vkey, nil
}

// VerifierKey derives the note verifier key from a note signer key
// ("PRIVATE+KEY+name+hash+base64(1 || seed)").
func VerifierKey(skey string) (string, error) {
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 {
		return "", errors.New("malformed signer key")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return "", errors.New("malformed signer key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	return note.NewEd25519VerifierKey(parts[2], pub)
}
