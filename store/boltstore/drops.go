package boltstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/state"
)

var _ state.Drops = (*State)(nil)

// boltPendingDrops is the stored form of a taken, unconfirmed notice.
type boltPendingDrops struct {
	Token  string           `json:"token"`
	Record state.DropRecord `json:"record"`
}

// RecordDrop implements state.Drops.
func (s *State) RecordDrop(ctx context.Context, agentID, reason, eventID string, at time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(boltBktDrops)
		var rec state.DropRecord
		if p, ok := boltLive(b, []byte(agentID), s.now()); ok {
			if err := json.Unmarshal(p, &rec); err != nil {
				return fmt.Errorf("decode drop record: %w", err)
			}
		}
		rec.Add(reason, eventID, at.Unix())
		v, err := json.Marshal(&rec)
		if err != nil {
			return err
		}
		return b.Put([]byte(agentID), boltExp(s.now().Add(state.DropRecordTTL), v))
	})
	if err != nil {
		return fmt.Errorf("record drop: %w", err)
	}
	return nil
}

// TakeDrops implements state.Drops.
func (s *State) TakeDrops(ctx context.Context, agentID string) (state.PendingDrops, bool, error) {
	if err := ctx.Err(); err != nil {
		return state.PendingDrops{}, false, err
	}
	k := []byte(agentID)
	now := s.now()
	// Fast path: nothing recorded or pending (a read-only transaction).
	var pending []byte
	var recorded bool
	if err := s.db.View(func(tx *bolt.Tx) error {
		if p, ok := boltLive(tx.Bucket(boltBktDropsP), k, now); ok {
			pending = append([]byte(nil), p...)
		}
		_, recorded = boltLive(tx.Bucket(boltBktDrops), k, now)
		return nil
	}); err != nil {
		return state.PendingDrops{}, false, fmt.Errorf("take drops: %w", err)
	}
	if pending == nil && !recorded {
		return state.PendingDrops{}, false, nil
	}
	if pending == nil {
		tok, err := crypto.RandomBytes(16)
		if err != nil {
			return state.PendingDrops{}, false, err
		}
		err = s.db.Batch(func(tx *bolt.Tx) error {
			pending = nil
			pb, db := tx.Bucket(boltBktDropsP), tx.Bucket(boltBktDrops)
			if p, ok := boltLive(pb, k, now); ok {
				pending = append([]byte(nil), p...)
				return nil
			}
			p, ok := boltLive(db, k, now)
			if !ok {
				return nil
			}
			var pd boltPendingDrops
			if err := json.Unmarshal(p, &pd.Record); err != nil {
				return fmt.Errorf("decode drop record: %w", err)
			}
			pd.Token = fmt.Sprintf("%x", tok)
			v, err := json.Marshal(&pd)
			if err != nil {
				return err
			}
			if err := pb.Put(k, boltExp(now.Add(state.DropRecordTTL), v)); err != nil {
				return err
			}
			pending = v
			return db.Delete(k)
		})
		if err != nil {
			return state.PendingDrops{}, false, fmt.Errorf("take drops: %w", err)
		}
		if pending == nil {
			return state.PendingDrops{}, false, nil
		}
	}
	var pd boltPendingDrops
	if err := json.Unmarshal(pending, &pd); err != nil {
		return state.PendingDrops{}, false, fmt.Errorf("take drops: decode: %w", err)
	}
	if pd.Record.Count == 0 {
		return state.PendingDrops{}, false, nil
	}
	return state.PendingDrops{Token: pd.Token, Notice: pd.Record.Notice()}, true, nil
}

// ConfirmDrops implements state.Drops.
func (s *State) ConfirmDrops(ctx context.Context, agentID, token string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(boltBktDropsP)
		p, ok := boltLive(b, []byte(agentID), s.now())
		if !ok {
			return nil
		}
		var pd boltPendingDrops
		if err := json.Unmarshal(p, &pd); err != nil || pd.Token != token {
			return nil
		}
		return b.Delete([]byte(agentID))
	})
	if err != nil {
		return fmt.Errorf("confirm drops: %w", err)
	}
	return nil
}
