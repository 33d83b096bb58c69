package state

import (
	"context"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
)

// Lifecycle renews an agent's access token and replaces its keys
// (docs/protocol.md §8.3, §8.4).
type Lifecycle interface {
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

// Admin is what the operator's views need besides the other roles:
// listing everything and the agents' last pull times.
type Admin interface {
	// ListInstallations returns every installation (revoked ones too),
	// ordered by org id.
	ListInstallations(ctx context.Context) ([]*Installation, error)
	// ListAllAgents returns the agents of every org, ordered by id.
	ListAllAgents(ctx context.Context) ([]*Agent, error)
	// RecordPull stores at as the agent's last pull time.
	RecordPull(ctx context.Context, agentID string, at time.Time) error
	// LastPulls returns the recorded last pull times of ids; an agent
	// that never pulled is absent from the map.
	LastPulls(ctx context.Context, ids []string) (map[string]time.Time, error)
	// ForgetPull deletes the agent's last pull record (absent is fine).
	ForgetPull(ctx context.Context, agentID string) error
}
