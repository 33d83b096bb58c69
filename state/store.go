package state

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"
)

// Installations stores Slack app installations.
type Installations interface {
	// PutInstallation creates or replaces the installation inst.OrgID.
	// Re-installing replaces the record (and clears Revoked) but leaves the
	// org's agents alone.
	PutInstallation(ctx context.Context, inst *Installation) error
	// GetInstallation returns the installation, or ErrNotFound.
	GetInstallation(ctx context.Context, orgID string) (*Installation, error)
	// UpdateInstallation atomically reads the installation orgID, applies
	// fn to it and stores the result, so that no concurrent writer's change
	// is lost (WATCH/MULTI/EXEC with retries in Redis, one transaction in
	// bbolt). ErrNotFound if absent. When fn returns an error nothing is
	// stored and that error is returned as is. fn may run more than once
	// (after a concurrent modification) and must do no I/O.
	UpdateInstallation(ctx context.Context, orgID string, fn func(*Installation) error) error
	// RevokeInstallation deletes the stored bot and refresh tokens and marks
	// the installation revoked at the given time (Installation.Revoke).
	// ErrNotFound if absent.
	RevokeInstallation(ctx context.Context, orgID string, at time.Time) error
	// ForEachSecret calls fn with every stored secret (bot and refresh
	// tokens, crypto.Keyring stored forms) and its owner (the org id),
	// orgs in id order. It only reads (no write transaction); an error
	// from fn stops it and is returned as is.
	ForEachSecret(ctx context.Context, fn func(owner, stored string) error) error
}

// RewrapSecrets passes every stored secret of insts through fn (e.g.
// crypto.Keyring.Rewrap) and stores the result where fn reports a change,
// each installation through UpdateInstallation so that no concurrent
// change is lost. It returns how many secrets were changed. Used by `keys
// rotate`.
func RewrapSecrets(ctx context.Context, insts Installations, fn func(stored, owner string) (string, bool, error)) (int, error) {
	var orgs []string
	seen := map[string]bool{}
	err := insts.ForEachSecret(ctx, func(owner, _ string) error {
		if !seen[owner] {
			seen[owner] = true
			orgs = append(orgs, owner)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("list stored secrets: %w", err)
	}
	sort.Strings(orgs)
	total := 0
	for _, org := range orgs {
		n := 0
		err := insts.UpdateInstallation(ctx, org, func(inst *Installation) error {
			n = 0
			for _, f := range []*string{&inst.BotToken, &inst.BotRefreshToken} {
				if *f == "" {
					continue
				}
				nv, changed, err := fn(*f, inst.OrgID)
				if err != nil {
					return fmt.Errorf("rewrap secret of %s: %w", inst.OrgID, err)
				}
				if changed {
					*f = nv
					n++
				}
			}
			if n == 0 {
				return errUnchanged
			}
			return nil
		})
		switch {
		case err == errUnchanged, errors.Is(err, ErrNotFound):
			continue
		case err != nil:
			return total, err
		}
		total += n
	}
	return total, nil
}

// errUnchanged tells RewrapSecrets's update function changed nothing.
var errUnchanged = errors.New("unchanged")

// Agents stores registered bridges and their access tokens.
type Agents interface {
	// RegisterAgent atomically consumes the registration token h (which
	// must belong to a.OrgID) and creates agent a with its access token
	// a.AccessTokenHash. Errors, checked in this order: ErrNotFound (token
	// unknown or for another org), ErrUsed, ErrExpired, ErrAgentExists (a's
	// signing key is already registered), ErrOrgFull (a.OrgID already has
	// maxPerOrg agents; maxPerOrg <= 0 means no limit); with the last two
	// the token is NOT consumed.
	RegisterAgent(ctx context.Context, h TokenHash, a *Agent, now time.Time, maxPerOrg int) error
	// GetAgent returns an agent, or ErrNotFound.
	GetAgent(ctx context.Context, id string) (*Agent, error)
	// ListAgents returns the agents of orgID ordered by id (empty when none).
	ListAgents(ctx context.Context, orgID string) ([]*Agent, error)
	// DeleteAgent removes the agent, its access token and its signing key
	// index. Deleting an absent agent returns ErrNotFound.
	DeleteAgent(ctx context.Context, id string) error
	// LookupAccessToken resolves an access token hash: ErrNotFound when
	// unknown, ErrExpired when past its expiry.
	LookupAccessToken(ctx context.Context, h TokenHash, now time.Time) (AccessGrant, error)
	// LookupAgentByAccessToken is LookupAccessToken(h, now) followed by
	// GetAgent of the grant's agent, in one round trip where the engine
	// can (every signed agent request starts with it). Both records are
	// read fresh on every call; nothing mutable is cached. Errors, in this
	// order: ErrNotFound (zero grant) when the token is unknown;
	// ErrExpired (with the grant) when it is past its expiry; ErrNotFound
	// (with the grant) when the token's agent record is gone, as for an
	// old token still in its renewal overlap after its agent was deleted
	// or replaced. The agent is nil with every error; any other error is
	// the store's, wrapped. On success the agent's id is the grant's.
	LookupAgentByAccessToken(ctx context.Context, h TokenHash, now time.Time) (AccessGrant, *Agent, error)
	// SetRespondUntil sets Agent.RespondUntil of agent id (zero clears
	// it). ErrNotFound when the agent is gone.
	SetRespondUntil(ctx context.Context, id string, until time.Time) error
	// ClaimEventAndListAgents is Events.ClaimEvent(eventID) and, when the
	// claim is EventClaimed, ListAgents(orgID), in one round trip where the
	// engine can (the ingress hot path); the agent list means something
	// only with EventClaimed.
	ClaimEventAndListAgents(ctx context.Context, eventID, orgID string) (EventClaim, []*Agent, error)
}

// Events de-duplicates Slack events by event_id across replicas.
type Events interface {
	// ClaimEvent claims a Slack event_id for processing (see EventClaim).
	// A claim lapses after EventPendingTTL unless completed.
	ClaimEvent(ctx context.Context, eventID string) (EventClaim, error)
	// CompleteEvent records the claimed event as stored for ttl.
	CompleteEvent(ctx context.Context, eventID string, ttl time.Duration) error
	// ReleaseEvent drops a claim so that Slack's retry is processed again.
	ReleaseEvent(ctx context.Context, eventID string) error
}

// OneTime stores single-use values: OAuth states, registration tokens,
// send nonces and one-time signatures.
type OneTime interface {
	// PutOAuthState stores a one-time OAuth state hash for ttl.
	PutOAuthState(ctx context.Context, h TokenHash, ttl time.Duration) error
	// ConsumeOAuthState deletes the state and reports whether it existed
	// and had not expired.
	ConsumeOAuthState(ctx context.Context, h TokenHash) (bool, error)
	// PutRegistrationToken stores a registration token hash for orgID
	// (consumed by Agents.RegisterAgent).
	PutRegistrationToken(ctx context.Context, h TokenHash, orgID string, expiresAt time.Time) error
	// UseNonce records a send nonce of agentID for ttl and reports whether
	// it was new (false = replay).
	UseNonce(ctx context.Context, agentID, nonce string, ttl time.Duration) (bool, error)
	// UseSignature records the hash of an accepted one-time signature (e.g.
	// unregister) for ttl and reports whether it was new.
	UseSignature(ctx context.Context, h TokenHash, ttl time.Duration) (bool, error)
}

// Limiter is a set of named token buckets.
type Limiter interface {
	// Allow takes one token from the bucket named key and reports whether
	// it was available; when not, retryAfter says when the next one will
	// be. now is the caller's clock; a shared limiter measures time with
	// its server's clock instead, so that replicas agree.
	Allow(ctx context.Context, key string, limit RateLimit, now time.Time) (ok bool, retryAfter time.Duration, err error)
}

// HoldHubs makes the hub of held Slack requests for one broker process
// (protocol §8.2; see HoldHub).
type HoldHubs interface {
	// NewHoldHub returns a hub for this process; the caller closes it.
	NewHoldHub(log *slog.Logger) (HoldHub, error)
}

// Store is everything the broker persists besides inboxes. All methods are
// safe for concurrent use, and every method that guards against races (token
// consumption, dedup, nonces, agent uniqueness, installation updates) is
// atomic across all replicas sharing the store.
type Store interface {
	Installations
	Agents
	Events
	OneTime
	Limiter
	Drops
	HoldHubs
	Lifecycle
	Admin
	Registration
	// Ping reports whether the store is reachable.
	Ping(ctx context.Context) error
	// Close releases the store's resources.
	Close() error
}
