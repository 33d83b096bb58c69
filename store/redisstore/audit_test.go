package redisstore_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/sealrelay/sealrelay/audit"
	"github.com/sealrelay/sealrelay/audit/audittest"
	"github.com/sealrelay/sealrelay/internal/testredis"
	"github.com/sealrelay/sealrelay/store/redisstore"
)

func TestAuditStoreConformance(t *testing.T) {
	t.Parallel()
	c := testredis.Client(t)
	audittest.Run(t, func(t *testing.T) audit.Store {
		return redisstore.NewAuditStore(c, testredis.Prefix(t, c, "audit"))
	})
}

func TestAuditStoreConformanceCluster(t *testing.T) {
	t.Parallel()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: testredis.StartCluster(t)})
	t.Cleanup(func() { _ = cc.Close() })
	// A chain's records and checkpoints hash to one slot (so a later
	// MULTI or script over both stays cluster-safe).
	for _, chain := range []string{"a", "0123456789abcdef0123456789abcdef"} {
		rec, cp := redisstore.AuditKeysForTest("pfx:", chain)
		a, errA := cc.ClusterKeySlot(context.Background(), rec).Result()
		b, errB := cc.ClusterKeySlot(context.Background(), cp).Result()
		if errA != nil || errB != nil || a != b {
			t.Fatalf("chain %s: %s → slot %d (%v), %s → slot %d (%v); want one slot", chain, rec, a, errA, cp, b, errB)
		}
	}
	audittest.Run(t, func(t *testing.T) audit.Store {
		return redisstore.NewAuditStore(cc, testredis.Prefix(t, cc, "audit"))
	})
}

func TestAuditStoreRejectsBadChainID(t *testing.T) {
	t.Parallel()
	c, prefix := testredis.New(t, "audit")
	st := redisstore.NewAuditStore(c, prefix)
	for _, id := range []string{"", "{x}", "A", "a b"} {
		if err := st.Append(context.Background(), id, []byte("r")); err == nil {
			t.Errorf("Append to chain %q succeeded, want an error", id)
		}
	}
}
