package boltstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"github.com/sealrelay/sealrelay/state"
	"time"

	bolt "go.etcd.io/bbolt"
)

var _ state.Admin = (*State)(nil)

// boltBktLastPull holds agent id → unix milliseconds (8 bytes, big
// endian) of the agent's last recorded pull. It is created by the first
// RecordPull, so readers treat a missing bucket as empty.
var boltBktLastPull = []byte("lastpull")

// ListInstallations implements state.Admin.
func (s *State) ListInstallations(ctx context.Context) ([]*state.Installation, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := []*state.Installation{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(boltBktInst).ForEach(func(k, v []byte) error {
			inst := new(state.Installation)
			if err := json.Unmarshal(v, inst); err != nil {
				return fmt.Errorf("decode installation %s: %w", k, err)
			}
			out = append(out, inst)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list installations: %w", err)
	}
	return out, nil
}

// ListAllAgents implements state.Admin.
func (s *State) ListAllAgents(ctx context.Context) ([]*state.Agent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := []*state.Agent{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(boltBktAgent).ForEach(func(_, v []byte) error {
			a, err := boltDecodeAgent(v)
			if err != nil {
				return err
			}
			out = append(out, a)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	return out, nil
}

// RecordPull implements state.Admin.
func (s *State) RecordPull(ctx context.Context, agentID string, at time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(at.UnixMilli()))
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(boltBktLastPull)
		if err != nil {
			return err
		}
		return b.Put([]byte(agentID), v[:])
	})
	if err != nil {
		return fmt.Errorf("record last pull of %s: %w", agentID, err)
	}
	return nil
}

// LastPulls implements state.Admin.
func (s *State) LastPulls(ctx context.Context, ids []string) (map[string]time.Time, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make(map[string]time.Time, len(ids))
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(boltBktLastPull)
		if b == nil {
			return nil
		}
		for _, id := range ids {
			if v := b.Get([]byte(id)); len(v) == 8 {
				out[id] = time.UnixMilli(int64(binary.BigEndian.Uint64(v))).UTC()
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read last pulls: %w", err)
	}
	return out, nil
}

// ForgetPull implements state.Admin.
func (s *State) ForgetPull(ctx context.Context, agentID string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		if b := tx.Bucket(boltBktLastPull); b != nil {
			return b.Delete([]byte(agentID))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("forget last pull of %s: %w", agentID, err)
	}
	return nil
}
