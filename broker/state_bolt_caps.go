package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

var _ CapabilityStore = (*BoltState)(nil)

// SetRespondUntil implements CapabilityStore.
func (s *BoltState) SetRespondUntil(ctx context.Context, id string, until time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		ab := tx.Bucket(boltBktAgent)
		v := ab.Get([]byte(id))
		if v == nil {
			return ErrNotFound
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
