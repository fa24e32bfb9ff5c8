package state

import (
	"context"
	"encoding/json"
	"fmt"
)

// ListUsers returns every web UI user ordered by name (hashes included;
// callers must not show them).
func (s *State) ListUsers(ctx context.Context) ([]User, error) {
	_, vals, err := s.list(ctx, usersDir, false)
	if err != nil {
		return nil, err
	}
	out := make([]User, 0, len(vals))
	for _, v := range vals {
		var u User
		if err := json.Unmarshal(v, &u); err != nil {
			return nil, fmt.Errorf("state: decode user: %w", err)
		}
		out = append(out, u)
	}
	return out, nil
}

// CreateUser adds a user; an existing name gives an error wrapping
// ErrConflict and changes nothing.
func (s *State) CreateUser(ctx context.Context, name, role, password string) error {
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
	_, err = s.putIf(ctx, usersDir+name, b, 0)
	return err
}

// UserChange says what UpdateUser changes; nil fields stay as they are.
type UserChange struct {
	Role     *string
	Disabled *bool
	Password *string
}

// UpdateUser changes a user's role, disabled flag or password atomically;
// bad input or a missing user (ErrNotFound) changes nothing.
func (s *State) UpdateUser(ctx context.Context, name string, c UserChange) (User, error) {
	if err := checkName("user name", name); err != nil {
		return User{}, err
	}
	b, rev, err := s.get(ctx, usersDir+name)
	if err != nil {
		return User{}, err
	}
	var u User
	if err := json.Unmarshal(b, &u); err != nil {
		return User{}, fmt.Errorf("state: decode user: %w", err)
	}
	if c.Role != nil {
		if err := checkRole(*c.Role); err != nil {
			return User{}, err
		}
		u.Role = *c.Role
	}
	if c.Disabled != nil {
		u.Disabled = *c.Disabled
	}
	if c.Password != nil {
		if u.PasswordHash, err = hashPassword(name, *c.Password); err != nil {
			return User{}, err
		}
	}
	nb, err := json.Marshal(u)
	if err != nil {
		return User{}, fmt.Errorf("state: encode user: %w", err)
	}
	if _, err := s.putIf(ctx, usersDir+name, nb, rev); err != nil {
		return User{}, err
	}
	return u, nil
}
