package boltstore

import (
	"context"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sealrelay/sealrelay/state"
)

var _ state.Agents = (*State)(nil)

// SetRespondUntil implements state.Agents.
func (s *State) SetRespondUntil(ctx context.Context, id string, until time.Time) error {
	return s.updateAgentTx(ctx, "set respond capability", id, func(_ *bolt.Tx, a *state.Agent) error {
		a.RespondUntil = until.UTC()
		return nil
	})
}
