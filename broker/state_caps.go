package broker

import (
	"context"
	"time"
)

// CapabilityStore records an agent's inbox.respond declaration (protocol
// §8.2). RedisState and BoltState implement it; a State without it never
// makes the broker hold a Slack request.
type CapabilityStore interface {
	// SetRespondUntil sets Agent.RespondUntil of agent id (zero clears
	// it). ErrNotFound when the agent is gone.
	SetRespondUntil(ctx context.Context, id string, until time.Time) error
}
