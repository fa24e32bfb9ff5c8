package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// User is a web UI account; the password is kept only as a bcrypt hash.
type User struct {
	Name         string    `json:"name"`
	Role         string    `json:"role"`
	PasswordHash []byte    `json:"password_hash"`
	Created      time.Time `json:"created"`
	// Disabled users cannot log in; they are kept for the record.
	Disabled bool `json:"disabled,omitempty"`
	// PreviousSerial is the serial a renewal replaced, revoked once the
	// agent has used its new certificate.
	PreviousSerial string `json:"previous_serial,omitempty"`
}

// dummyHash makes CheckPassword for an unknown user cost as much as for a known one.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("mamori-no-such-user"), bcrypt.DefaultCost)

// EnsureUser creates the user with a bcrypt hash of password unless a user of
// that name exists already; an existing user is left as it is (so a restart
// never resets a password the admin has changed).
func (s *State) EnsureUser(ctx context.Context, name, role, password string) error {
	if err := checkName("user name", name); err != nil {
		return err
	}
	if err := checkRole(role); err != nil {
		return err
	}
	hash, err := hashPassword(name, password)
	if err != nil {
		return err
	}
	b, err := json.Marshal(User{Name: name, Role: role, PasswordHash: hash, Created: s.now().UTC()})
	if err != nil {
		return fmt.Errorf("state: encode user: %w", err)
	}
	if _, err := s.putIf(ctx, usersDir+name, b, 0); err != nil && !errors.Is(err, ErrConflict) {
		return err
	}
	return nil
}

// CheckPassword returns the user if password matches, else an error wrapping
// ErrBadCredentials (the same for an unknown user, to not reveal user names).
func (s *State) CheckPassword(ctx context.Context, name, password string) (User, error) {
	if checkName("user name", name) != nil {
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
		return User{}, ErrBadCredentials
	}
	b, _, err := s.get(ctx, usersDir+name)
	if errors.Is(err, ErrNotFound) {
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
		return User{}, ErrBadCredentials
	}
	if err != nil {
		return User{}, err
	}
	var u User
	if err := json.Unmarshal(b, &u); err != nil {
		return User{}, fmt.Errorf("state: decode user: %w", err)
	}
	if comparePassword(u.PasswordHash, password) != nil || u.Disabled {
		return User{}, ErrBadCredentials
	}
	return u, nil
}

// Agent is an enrolled agent's static record.
type Agent struct {
	ID         string    `json:"id"`
	Hostname   string    `json:"hostname"`
	OS         string    `json:"os"`
	Arch       string    `json:"arch"`
	OSVersion  string    `json:"os_version"`
	Department string    `json:"department,omitempty"`
	CertSerial string    `json:"cert_serial"`
	Enrolled   time.Time `json:"enrolled"`
	// Disabled agents keep their record and evidence; their certificate
	// is refused (SetAgentDisabled).
	Disabled bool `json:"disabled,omitempty"`
	// PreviousSerial is the serial a renewal replaced, revoked once the
	// agent has used its new certificate.
	PreviousSerial string `json:"previous_serial,omitempty"`
}

// PutAgent creates or replaces an agent's record.
func (s *State) PutAgent(ctx context.Context, a Agent) error {
	if err := checkName("agent id", a.ID); err != nil {
		return err
	}
	b, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("state: encode agent: %w", err)
	}
	_, err = s.putIf(ctx, agentsDir+a.ID, b, -1)
	return err
}

// GetAgent returns an agent's record, or an error wrapping ErrNotFound.
func (s *State) GetAgent(ctx context.Context, id string) (Agent, error) {
	if err := checkName("agent id", id); err != nil {
		return Agent{}, err
	}
	b, _, err := s.get(ctx, agentsDir+id)
	if err != nil {
		return Agent{}, err
	}
	var a Agent
	if err := json.Unmarshal(b, &a); err != nil {
		return Agent{}, fmt.Errorf("state: decode agent %s: %w", id, err)
	}
	return a, nil
}

// ListAgents returns all agents' records ordered by id.
func (s *State) ListAgents(ctx context.Context) ([]Agent, error) {
	_, vals, err := s.list(ctx, agentsDir, false)
	if err != nil {
		return nil, err
	}
	out := make([]Agent, 0, len(vals))
	for _, v := range vals {
		var a Agent
		if err := json.Unmarshal(v, &a); err != nil {
			return nil, fmt.Errorf("state: decode agent: %w", err)
		}
		out = append(out, a)
	}
	return out, nil
}
