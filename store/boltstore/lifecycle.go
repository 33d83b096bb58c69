package boltstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/sealrelay/sealrelay/state"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sealrelay/sealrelay/crypto"
)

var _ state.Lifecycle = (*State)(nil)

// updateAgentTx applies fn to agent id inside one write transaction and
// stores the result.
func (s *State) updateAgentTx(ctx context.Context, op, id string, fn func(tx *bolt.Tx, a *state.Agent) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		ab := tx.Bucket(boltBktAgent)
		v := ab.Get([]byte(id))
		if v == nil {
			return state.ErrNotFound
		}
		a, err := boltDecodeAgent(v)
		if err != nil {
			return err
		}
		if err := fn(tx, a); err != nil {
			return err
		}
		rec, err := json.Marshal(a)
		if err != nil {
			return fmt.Errorf("encode agent: %w", err)
		}
		return ab.Put([]byte(id), rec)
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, state.ErrNotFound), errors.Is(err, state.ErrAgentExists):
		return err
	default:
		return fmt.Errorf("%s %s: %w", op, id, err)
	}
}

// RenewAccessToken implements state.Lifecycle in one transaction.
func (s *State) RenewAccessToken(ctx context.Context, agentID string, newHash state.TokenHash, newExpiry, oldOverlapUntil time.Time) error {
	return s.updateAgentTx(ctx, "renew access token", agentID, func(tx *bolt.Tx, a *state.Agent) error {
		acc := tx.Bucket(boltBktAccess)
		if v := acc.Get(a.AccessTokenHash[:]); v != nil {
			exp, p, ok := boltSplitExp(v)
			if !ok {
				return errors.New("malformed access token record")
			}
			if exp.After(oldOverlapUntil) {
				if err := acc.Put(a.AccessTokenHash[:], boltExp(oldOverlapUntil, p)); err != nil {
					return err
				}
			}
		}
		p, err := json.Marshal(boltAccess{Agent: a.ID, Org: a.OrgID})
		if err != nil {
			return fmt.Errorf("encode access token: %w", err)
		}
		if err := acc.Put(newHash[:], boltExp(newExpiry, p)); err != nil {
			return err
		}
		a.AccessTokenHash = newHash
		a.AccessTokenExpiresAt = newExpiry.UTC()
		return nil
	})
}

// RekeyAgent implements state.Lifecycle in one transaction.
func (s *State) RekeyAgent(ctx context.Context, agentID string, newBox crypto.BoxPublicKey, newSigning crypto.SigningPublicKey) error {
	return s.updateAgentTx(ctx, "rekey agent", agentID, func(tx *bolt.Tx, a *state.Agent) error {
		if newSigning != a.SigningPublicKey {
			kb := tx.Bucket(boltBktAgentKey)
			if owner := kb.Get(newSigning[:]); owner != nil && string(owner) != a.ID {
				return state.ErrAgentExists
			}
			if owner := kb.Get(a.SigningPublicKey[:]); owner != nil && string(owner) == a.ID {
				if err := kb.Delete(a.SigningPublicKey[:]); err != nil {
					return err
				}
			}
			if err := kb.Put(newSigning[:], []byte(a.ID)); err != nil {
				return err
			}
		}
		a.BoxPublicKey, a.SigningPublicKey = newBox, newSigning
		return nil
	})
}
