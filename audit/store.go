package audit

import (
	"context"
	"errors"
	"slices"
	"sync"
)

// Store keeps chains of encoded records and their checkpoints. It stores
// bytes as given and returns them as stored (Verify, not the Store, judges
// them), in append order. Each chain has one writer (the process that
// created it), so Append needs no compare-and-set; different chains are
// independent and may live on different Redis Cluster slots.
type Store interface {
	// Append adds an encoded record at the end of chain, creating the chain
	// on first use.
	Append(ctx context.Context, chain string, record []byte) error
	// Checkpoint adds an encoded checkpoint to chain's checkpoints.
	Checkpoint(ctx context.Context, chain string, checkpoint []byte) error
	// Chains lists the ids of every chain, in no particular order.
	Chains(ctx context.Context) ([]string, error)
	// Len returns how many records chain holds (0 for an unknown chain).
	Len(ctx context.Context, chain string) (int64, error)
	// Range returns up to n records of chain from position start (0-based,
	// in append order); fewer at the end, none past it.
	Range(ctx context.Context, chain string, start int64, n int) ([][]byte, error)
	// Checkpoints returns chain's checkpoints in append order.
	Checkpoints(ctx context.Context, chain string) ([][]byte, error)
}

// MemStore is an in-memory Store for tests. Its Mutate method lets tests
// tamper with stored records the way an attacker with store access could.
type MemStore struct {
	mu     sync.Mutex
	chains map[string]*memChain
	fail   error // returned by Append and Checkpoint while set
}

type memChain struct {
	recs [][]byte
	cps  [][]byte
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore { return &MemStore{chains: map[string]*memChain{}} }

func (m *MemStore) chain(id string) *memChain {
	c := m.chains[id]
	if c == nil {
		c = &memChain{}
		m.chains[id] = c
	}
	return c
}

// SetFail makes every later Append and Checkpoint fail with err (nil to
// stop failing).
func (m *MemStore) SetFail(err error) {
	m.mu.Lock()
	m.fail = err
	m.mu.Unlock()
}

// Append implements Store.
func (m *MemStore) Append(ctx context.Context, chain string, record []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	c := m.chain(chain)
	c.recs = append(c.recs, slices.Clone(record))
	return ctx.Err()
}

// Checkpoint implements Store.
func (m *MemStore) Checkpoint(ctx context.Context, chain string, checkpoint []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	c := m.chain(chain)
	c.cps = append(c.cps, slices.Clone(checkpoint))
	return ctx.Err()
}

// Chains implements Store.
func (m *MemStore) Chains(context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ids := make([]string, 0, len(m.chains))
	for id := range m.chains {
		ids = append(ids, id)
	}
	return ids, nil
}

// Len implements Store.
func (m *MemStore) Len(_ context.Context, chain string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.chains[chain]; c != nil {
		return int64(len(c.recs)), nil
	}
	return 0, nil
}

// Range implements Store.
func (m *MemStore) Range(_ context.Context, chain string, start int64, n int) ([][]byte, error) {
	if start < 0 || n < 0 {
		return nil, errors.New("audit: negative range")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.chains[chain]
	if c == nil || start >= int64(len(c.recs)) {
		return nil, nil
	}
	end := min(int64(len(c.recs)), start+int64(n))
	out := make([][]byte, 0, end-start)
	for _, r := range c.recs[start:end] {
		out = append(out, slices.Clone(r))
	}
	return out, nil
}

// Checkpoints implements Store.
func (m *MemStore) Checkpoints(_ context.Context, chain string) ([][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.chains[chain]
	if c == nil {
		return nil, nil
	}
	out := make([][]byte, 0, len(c.cps))
	for _, r := range c.cps {
		out = append(out, slices.Clone(r))
	}
	return out, nil
}

// Mutate lets a test rewrite chain's stored records and checkpoints in
// place (tampering, as an attacker with write access to the store would).
func (m *MemStore) Mutate(chain string, f func(records, checkpoints [][]byte) ([][]byte, [][]byte)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.chain(chain)
	c.recs, c.cps = f(c.recs, c.cps)
}
