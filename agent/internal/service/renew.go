package service

import (
	"context"
	"os"
	"time"

	"github.com/mamori/mamori/agent/internal/uplink"
	"github.com/mamori/mamori/shared/event"
)

// renewCheck is how often the agent looks at its certificate's age. A
// year's certificate is due with four months left (uplink.RenewDue), so a
// failed attempt is retried hundreds of times before it expires.
const renewCheck = 12 * time.Hour

// Test-only variables: how often to check (a Go duration), and how far
// ahead of the real clock the due check looks, so an e2e test can make a
// fresh year-long certificate due. With a skew every certificate is due,
// so the agent renews at every check.
const (
	EnvRenewCheck = "MAMORI_TEST_RENEW_CHECK"
	EnvRenewSkew  = "MAMORI_TEST_RENEW_SKEW"
)

// renewLoop checks the certificate at start and every renewCheck, and
// renews it (new key, same agent id) once it is due. The new certificate is
// used from the next request on; the server then revokes the old one.
func (r *Runtime) renewLoop(ctx context.Context) {
	every, skew := renewCheck, time.Duration(0)
	if d, err := time.ParseDuration(os.Getenv(EnvRenewCheck)); err == nil && d > 0 {
		every = d
	}
	if d, err := time.ParseDuration(os.Getenv(EnvRenewSkew)); err == nil {
		skew = d
	}
	if every != renewCheck || skew != 0 {
		r.opt.Log.Warn().Str("every", every.String()).Str("skew", skew.String()).Msg("service: test certificate renewal timing on")
	}
	for {
		r.renewIfDue(ctx, time.Now().Add(skew))
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// renewIfDue renews when the current certificate is due at now. The server
// records each renewal (agent.cert_renewed); the agent records the failures
// the server cannot see.
func (r *Runtime) renewIfDue(ctx context.Context, now time.Time) {
	log := r.opt.Log
	leaf, err := r.id.Leaf()
	if err != nil {
		log.Error().Err(err).Msg("service: certificate unreadable; not renewing")
		return
	}
	if !uplink.RenewDue(leaf, now) {
		log.Debug().Time("not_after", leaf.NotAfter).Msg("service: certificate not due for renewal")
		return
	}
	nleaf, err := uplink.Renew(ctx, r.opt.StateDir, r.servers.Current(), r.id)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		log.Warn().Err(err).Time("not_after", leaf.NotAfter).Msg("service: certificate renewal failed; the current one stays in use and renewal is retried at the next check")
		r.emit(ctx, "agent.cert_renew_failed", event.Warning, event.Attrs{
			"serial": leaf.SerialNumber.String(), "not_after": leaf.NotAfter.UTC().Format(time.RFC3339), "error": err.Error()})
		return
	}
	log.Info().Str("previous_serial", leaf.SerialNumber.String()).Str("serial", nleaf.SerialNumber.String()).
		Time("not_after", nleaf.NotAfter).Msg("service: certificate renewed")
}
