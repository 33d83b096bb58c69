package redisstore

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/sealrelay/sealrelay/audit"
)

// AuditStore implements audit.Store on Redis (single node, Sentinel or
// Cluster): one list per chain for records, one for its checkpoints. Each
// Append is one RPUSH, atomic and ordered; a chain is registered in the
// chain set on its first append.
type AuditStore struct {
	rdb    redis.UniversalClient
	prefix string
	mu     sync.Mutex
	known  map[string]bool // chains this process registered (one writer each)
}

// NewAuditStore returns an AuditStore on rdb under prefix (the broker's
// Redis key prefix). The caller owns rdb.
func NewAuditStore(rdb redis.UniversalClient, prefix string) *AuditStore {
	return &AuditStore{rdb: rdb, prefix: prefix, known: map[string]bool{}}
}

func auditCheckChain(chain string) error {
	if !audit.ValidChainID(chain) {
		return errors.New("audit store: invalid chain id")
	}
	return nil
}

// Append implements audit.Store.
func (s *AuditStore) Append(ctx context.Context, chain string, record []byte) error {
	if err := auditCheckChain(chain); err != nil {
		return err
	}
	if err := s.register(ctx, chain); err != nil {
		return err
	}
	if err := s.rdb.RPush(ctx, auditKeyRecords(s.prefix, chain), record).Err(); err != nil {
		return fmt.Errorf("audit store: append to chain %s: %w", chain, err)
	}
	return nil
}

// register adds chain to the chain set once per process.
func (s *AuditStore) register(ctx context.Context, chain string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.known[chain] {
		return nil
	}
	if err := s.rdb.SAdd(ctx, auditKeyChains(s.prefix), chain).Err(); err != nil {
		return fmt.Errorf("audit store: register chain %s: %w", chain, err)
	}
	s.known[chain] = true
	return nil
}

// Checkpoint implements audit.Store.
func (s *AuditStore) Checkpoint(ctx context.Context, chain string, checkpoint []byte) error {
	if err := auditCheckChain(chain); err != nil {
		return err
	}
	if err := s.register(ctx, chain); err != nil {
		return err
	}
	if err := s.rdb.RPush(ctx, auditKeyCheckpoints(s.prefix, chain), checkpoint).Err(); err != nil {
		return fmt.Errorf("audit store: checkpoint chain %s: %w", chain, err)
	}
	return nil
}

// Chains implements audit.Store. Ids in the set that are not valid chain
// ids are skipped.
func (s *AuditStore) Chains(ctx context.Context) ([]string, error) {
	ids, err := s.rdb.SMembers(ctx, auditKeyChains(s.prefix)).Result()
	if err != nil {
		return nil, fmt.Errorf("audit store: list chains: %w", err)
	}
	out := ids[:0]
	for _, id := range ids {
		if audit.ValidChainID(id) {
			out = append(out, id)
		}
	}
	return out, nil
}

// Len implements audit.Store.
func (s *AuditStore) Len(ctx context.Context, chain string) (int64, error) {
	if err := auditCheckChain(chain); err != nil {
		return 0, err
	}
	n, err := s.rdb.LLen(ctx, auditKeyRecords(s.prefix, chain)).Result()
	if err != nil {
		return 0, fmt.Errorf("audit store: length of chain %s: %w", chain, err)
	}
	return n, nil
}

// Range implements audit.Store.
func (s *AuditStore) Range(ctx context.Context, chain string, start int64, n int) ([][]byte, error) {
	if err := auditCheckChain(chain); err != nil {
		return nil, err
	}
	if start < 0 || n < 0 {
		return nil, errors.New("audit store: negative range")
	}
	if n == 0 {
		return nil, nil
	}
	vals, err := s.rdb.LRange(ctx, auditKeyRecords(s.prefix, chain), start, start+int64(n)-1).Result()
	if err != nil {
		return nil, fmt.Errorf("audit store: read chain %s at %d: %w", chain, start, err)
	}
	return auditBytes(vals), nil
}

// Checkpoints implements audit.Store.
func (s *AuditStore) Checkpoints(ctx context.Context, chain string) ([][]byte, error) {
	if err := auditCheckChain(chain); err != nil {
		return nil, err
	}
	vals, err := s.rdb.LRange(ctx, auditKeyCheckpoints(s.prefix, chain), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("audit store: checkpoints of chain %s: %w", chain, err)
	}
	return auditBytes(vals), nil
}

func auditBytes(vals []string) [][]byte {
	out := make([][]byte, len(vals))
	for i, v := range vals {
		out[i] = []byte(v)
	}
	return out
}
