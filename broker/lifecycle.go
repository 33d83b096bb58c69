package broker

import (
	"context"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
)

// DefaultAccessTokenOverlap is how long an agent's previous access token
// keeps working after a renewal (Config.AccessTokenOverlap).
const DefaultAccessTokenOverlap = 10 * time.Minute

// LifecycleStore renews an agent's access token and replaces its keys
// (docs/protocol.md §8.3, §8.4). RedisState and BoltState implement it; a
// State without it answers both endpoints 501.
type LifecycleStore interface {
	// RenewAccessToken atomically makes newHash (valid until newExpiry)
	// the agent's current access token and shortens the previous current
	// token's lifetime to oldOverlapUntil (never lengthening it).
	// ErrNotFound when the agent is gone.
	RenewAccessToken(ctx context.Context, agentID string, newHash TokenHash, newExpiry, oldOverlapUntil time.Time) error
	// RekeyAgent atomically replaces the agent's box and signing public
	// keys and moves its signing-key index entry. ErrAgentExists when
	// newSigning is registered to another agent (nothing is changed);
	// ErrNotFound when the agent is gone.
	RekeyAgent(ctx context.Context, agentID string, newBox crypto.BoxPublicKey, newSigning crypto.SigningPublicKey) error
}
