package state

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// revokedDir holds one key per revoked agent certificate serial (hex); the
// value says why. The TLS layer of every server refuses those serials.
const revokedDir = "revoked-certs/"

// MaxPersonTokenTTL bounds the life of an API token made for a person.
const MaxPersonTokenTTL = 366 * 24 * time.Hour

// CreatePersonToken makes an expiring bearer token for a person (an auditor
// pulling logs with a script, say), created by createdBy, and returns its
// plaintext (shown once) and record. Every use of it is recorded by the API.
func (s *State) CreatePersonToken(ctx context.Context, name, role string, ttl time.Duration, createdBy string) (string, APIToken, error) {
	if err := checkAPIParams(name, role); err != nil {
		return "", APIToken{}, err
	}
	if ttl <= 0 || ttl > MaxPersonTokenTTL {
		return "", APIToken{}, fmt.Errorf("state: %w: token ttl must be 1s..%s", ErrInvalid, MaxPersonTokenTTL)
	}
	plain, err := NewToken()
	if err != nil {
		return "", APIToken{}, err
	}
	h := tokenHash(plain)
	now := s.now().UTC()
	t := APIToken{ID: h[:16], Name: name, Role: role, Created: now, Expires: now.Add(ttl), CreatedBy: createdBy}
	b, err := json.Marshal(t)
	if err != nil {
		return "", APIToken{}, fmt.Errorf("state: encode token: %w", err)
	}
	if _, err := s.putIf(ctx, apiTokensDir+h, b, 0); err != nil {
		return "", APIToken{}, err
	}
	return plain, t, nil
}

// ListAPITokens returns all API token records (never their secrets).
func (s *State) ListAPITokens(ctx context.Context) ([]APIToken, error) {
	_, vals, err := s.list(ctx, apiTokensDir, false)
	if err != nil {
		return nil, err
	}
	out := make([]APIToken, 0, len(vals))
	for _, v := range vals {
		var t APIToken
		if err := json.Unmarshal(v, &t); err != nil {
			return nil, fmt.Errorf("state: decode api token: %w", err)
		}
		out = append(out, t)
	}
	return out, nil
}

// RevokeAPIToken deletes the API token with the given ID; ErrNotFound if
// there is none.
func (s *State) RevokeAPIToken(ctx context.Context, id string) error {
	return s.deleteByID(ctx, apiTokensDir, id)
}

// deleteByID deletes the token under dir whose hash starts with id.
func (s *State) deleteByID(ctx context.Context, dir, id string) error {
	if len(id) != 16 {
		return fmt.Errorf("state: %w: token id must be 16 hex digits", ErrInvalid)
	}
	if _, err := hex.DecodeString(id); err != nil {
		return fmt.Errorf("state: %w: token id must be 16 hex digits", ErrInvalid)
	}
	ctx, cancel, err := s.writeCtx(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	defer s.avail.forget(dir)
	resp, err := s.cli.Delete(ctx, key(dir+id), clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("state: revoke token %s: %w", id, s.etcdErr(ctx, err))
	}
	if resp.Deleted == 0 {
		return fmt.Errorf("state: token %s: %w", id, ErrNotFound)
	}
	return nil
}

// SetAgentDisabled disables (or enables again) an agent: its record and
// evidence stay, and its certificate serial is put on (or taken off) the
// revoked list in the same etcd transaction, so every server's TLS layer
// refuses (or accepts) it. Unknown agents give ErrNotFound.
func (s *State) SetAgentDisabled(ctx context.Context, id string, disabled bool, why string) (Agent, error) {
	if err := checkName("agent id", id); err != nil {
		return Agent{}, err
	}
	b, rev, err := s.get(ctx, agentsDir+id)
	if err != nil {
		return Agent{}, err
	}
	var a Agent
	if err := json.Unmarshal(b, &a); err != nil {
		return Agent{}, fmt.Errorf("state: decode agent %s: %w", id, err)
	}
	a.Disabled = disabled
	nb, err := json.Marshal(a)
	if err != nil {
		return Agent{}, fmt.Errorf("state: encode agent: %w", err)
	}
	ops := []clientv3.Op{clientv3.OpPut(key(agentsDir+id), string(nb))}
	if serial := strings.ToLower(a.CertSerial); serial != "" {
		if disabled {
			ops = append(ops, clientv3.OpPut(key(revokedDir+serial), why))
		} else {
			ops = append(ops, clientv3.OpDelete(key(revokedDir+serial)))
		}
	}
	cctx, cancel, err := s.writeCtx(ctx)
	if err != nil {
		return Agent{}, err
	}
	defer cancel()
	defer s.avail.forget(agentsDir + id)
	defer s.avail.forget(revokedDir)
	resp, err := s.cli.Txn(cctx).If(clientv3.Compare(clientv3.ModRevision(key(agentsDir+id)), "=", rev)).Then(ops...).Commit()
	if err != nil {
		return Agent{}, fmt.Errorf("state: disable agent %s: %w", id, s.etcdErr(cctx, err))
	}
	if !resp.Succeeded {
		return Agent{}, fmt.Errorf("state: agent %s changed meanwhile: %w", id, ErrConflict)
	}
	return a, nil
}

// RevokeSerial puts one certificate serial (hex) on the revoked list, as
// when an agent's certificate is replaced by a renewed one.
func (s *State) RevokeSerial(ctx context.Context, serial, why string) error {
	serial = strings.ToLower(serial)
	if _, err := hex.DecodeString(serial); err != nil || serial == "" || len(serial) > 64 {
		return fmt.Errorf("state: %w: serial must be hex", ErrInvalid)
	}
	_, err := s.putIf(ctx, revokedDir+serial, []byte(why), -1)
	return err
}

// RevokedSerials returns the revoked certificate serials (lower-case hex).
func (s *State) RevokedSerials(ctx context.Context) (map[string]bool, error) {
	names, _, err := s.list(ctx, revokedDir, true)
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(names))
	for _, n := range names {
		out[n] = true
	}
	return out, nil
}

// WatchRevoked calls set with the full revoked list now and after every
// change until ctx ends; a broken watch re-reads the list.
func (s *State) WatchRevoked(ctx context.Context, set func(map[string]bool)) error {
	load := func() error {
		m, err := s.RevokedSerials(ctx)
		if err != nil {
			return err
		}
		set(m)
		return nil
	}
	if err := load(); err != nil {
		return err
	}
	changed := make(chan struct{}, 1)
	go s.watchDir(ctx, revokedDir, func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	})
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-changed:
				if err := load(); err != nil && !errors.Is(err, context.Canceled) {
					s.log.Warn().Err(err).Msg("state: reloading revoked certificates")
				}
			}
		}
	}()
	return nil
}

// RenewAgentCert records an agent's new certificate serial and keeps the
// old one as PreviousSerial until RevokePrevious (the agent has used the
// new one), so a lost answer never locks the agent out.
func (s *State) RenewAgentCert(ctx context.Context, id, serial string) (Agent, error) {
	return s.updateAgent(ctx, id, func(a *Agent) {
		if a.CertSerial != "" && a.CertSerial != serial {
			a.PreviousSerial = a.CertSerial
		}
		a.CertSerial = serial
	})
}

// RevokePrevious revokes an agent's previous certificate serial (if it is
// still prev) and forgets it.
func (s *State) RevokePrevious(ctx context.Context, id, prev string) error {
	if err := s.RevokeSerial(ctx, prev, "replaced by a renewed certificate of agent "+id); err != nil {
		return err
	}
	_, err := s.updateAgent(ctx, id, func(a *Agent) {
		if a.PreviousSerial == prev {
			a.PreviousSerial = ""
		}
	})
	return err
}

// updateAgent changes an agent's record with a compare-and-swap.
func (s *State) updateAgent(ctx context.Context, id string, f func(*Agent)) (Agent, error) {
	if err := checkName("agent id", id); err != nil {
		return Agent{}, err
	}
	b, rev, err := s.get(ctx, agentsDir+id)
	if err != nil {
		return Agent{}, err
	}
	var a Agent
	if err := json.Unmarshal(b, &a); err != nil {
		return Agent{}, fmt.Errorf("state: decode agent %s: %w", id, err)
	}
	f(&a)
	nb, err := json.Marshal(a)
	if err != nil {
		return Agent{}, fmt.Errorf("state: encode agent: %w", err)
	}
	if _, err := s.putIf(ctx, agentsDir+id, nb, rev); err != nil {
		return Agent{}, err
	}
	return a, nil
}

// SetAgentOSVersion records the OS version an agent's inventory reports,
// by compare-and-swap so a concurrent disable or renewal is never undone;
// nothing is written when the record already says v.
func (s *State) SetAgentOSVersion(ctx context.Context, id, v string) error {
	a, err := s.GetAgent(ctx, id)
	if err != nil || a.OSVersion == v {
		return err
	}
	_, err = s.updateAgent(ctx, id, func(a *Agent) { a.OSVersion = v })
	return err
}
