package audit_test

import (
	"context"
	"sync"
	"testing"

	"github.com/sealrelay/sealrelay/audit"
)

// liveStore runs write once, right after the first read of a chain's
// length or checkpoints: the running broker appending while Verify reads.
type liveStore struct {
	*audit.MemStore
	once  sync.Once
	write func()
}

func (s *liveStore) Len(ctx context.Context, chain string) (int64, error) {
	n, err := s.MemStore.Len(ctx, chain)
	s.once.Do(s.write)
	return n, err
}

func (s *liveStore) Checkpoints(ctx context.Context, chain string) ([][]byte, error) {
	cps, err := s.MemStore.Checkpoints(ctx, chain)
	s.once.Do(s.write)
	return cps, err
}

// TestVerifyLiveChain: a record and a checkpoint written while Verify reads
// a chain (1000 records: exactly one of Verify's pages, so the new record
// is past the page it walks) are not reported as a truncation.
func TestVerifyLiveChain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	keys := newKeys(t)
	ms := audit.NewMemStore()
	l, err := audit.NewLog(ms, keys, audit.Options{CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	ev := audit.Event{Kind: audit.KindCall, Org: "T1", Agent: "ag-1", Method: "chat.postMessage"}
	for range 1000 {
		if _, err := l.Record(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	st := &liveStore{MemStore: ms, write: func() {
		if _, err := l.Record(ctx, ev); err != nil {
			t.Error(err)
		}
		if err := l.Checkpoint(ctx); err != nil {
			t.Error(err)
		}
	}}
	rep, err := audit.Verify(ctx, st, keys)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("a chain written during Verify is reported broken: %v", rep.Problems())
	}
	if cr := rep.Chains[0]; cr.LastCheckpoint == nil || cr.Verified < cr.LastCheckpoint.Seq {
		t.Fatalf("report %+v: the newest checkpoint is not verified", cr)
	}
}
