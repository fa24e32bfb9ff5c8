package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mamori/mamori/server/internal/api"
	"github.com/mamori/mamori/server/internal/state"
)

// The stateAdapter methods below serve api.Revocation.

func mapRevErr(err error) error {
	if errors.Is(err, state.ErrInvalid) {
		return fmt.Errorf("%w: %w", api.ErrInvalid, err)
	}
	return mapStateErr(err)
}

func (a stateAdapter) ListEnrollTokens(ctx context.Context) ([]api.EnrollToken, error) {
	ts, err := a.s.ListEnrollTokens(ctx)
	out := make([]api.EnrollToken, len(ts))
	for i, t := range ts {
		out[i] = api.EnrollToken(t)
	}
	return out, mapRevErr(err)
}

func (a stateAdapter) RevokeEnrollToken(ctx context.Context, id string) error {
	return mapRevErr(a.s.RevokeEnrollToken(ctx, id))
}

func (a stateAdapter) CreatePersonToken(ctx context.Context, name, role string, ttl time.Duration, by string) (string, api.APIToken, error) {
	p, t, err := a.s.CreatePersonToken(ctx, name, role, ttl, by)
	return p, api.APIToken(t), mapRevErr(err)
}

func (a stateAdapter) ListAPITokens(ctx context.Context) ([]api.APIToken, error) {
	ts, err := a.s.ListAPITokens(ctx)
	out := make([]api.APIToken, len(ts))
	for i, t := range ts {
		out[i] = api.APIToken(t)
	}
	return out, mapRevErr(err)
}

func (a stateAdapter) RevokeAPIToken(ctx context.Context, id string) error {
	return mapRevErr(a.s.RevokeAPIToken(ctx, id))
}

func (a stateAdapter) SetAgentDisabled(ctx context.Context, id string, disabled bool, why string) (api.Agent, error) {
	ag, err := a.s.SetAgentDisabled(ctx, id, disabled, why)
	return api.Agent(ag), mapRevErr(err)
}

func (a stateAdapter) RenewAgentCert(ctx context.Context, id, serial string) (api.Agent, error) {
	ag, err := a.s.RenewAgentCert(ctx, id, serial)
	return api.Agent(ag), mapRevErr(err)
}

func (a stateAdapter) RevokePrevious(ctx context.Context, id, prev string) error {
	return mapRevErr(a.s.RevokePrevious(ctx, id, prev))
}
