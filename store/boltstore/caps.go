package boltstore

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/sealrelay/sealrelay/state"
	"time"

	bolt "go.etcd.io/bbolt"
)

var _ state.Agents = (*State)(nil)

// SetRespondUntil implements state.Agents.
func (s *State) SetRespondUntil(ctx context.Context, id string, until time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		ab := tx.Bucket(boltBktAgent)
		v := ab.Get([]byte(id))
		if v == nil {
			return state.ErrNotFound
		}
		a, err := boltDecodeAgent(v)
		if err != nil {
			return err
		}
		a.RespondUntil = until.UTC()
		rec, err := json.Marshal(a)
		if err != nil {
			return fmt.Errorf("encode agent: %w", err)
		}
		return ab.Put([]byte(id), rec)
	})
}
