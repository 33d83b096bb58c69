package broker

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sealrelay/sealrelay/internal/testredis"
)

// testRedis returns a client for $REDIS_URL and a unique key prefix;
// every key under the prefix is deleted when the test ends.
func testRedis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	return testredis.New(t, "broker")
}

func scanKeys(t testing.TB, rdb *redis.Client, prefix string) []string {
	t.Helper()
	var keys []string
	iter := rdb.Scan(context.Background(), 0, prefix+"*", 1000).Iterator()
	for iter.Next(context.Background()) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Errorf("scan: %v", err)
	}
	return keys
}

func TestRedisState(t *testing.T) {
	testState(t, func(t *testing.T) State {
		rdb, prefix := testRedis(t)
		return NewRedisState(rdb, prefix)
	})
}

// TestRedisClaimEventListAgents checks the pipelined hot-path variant
// against ClaimEvent and ListAgents.
func TestRedisClaimEventListAgents(t *testing.T) {
	rdb, prefix := testRedis(t)
	st := NewRedisState(rdb, prefix)
	ctx := context.Background()
	hk := testHashKey(t)
	now := time.Now()
	tok := hk.Hash(KindRegistrationToken, "t")
	if err := st.PutRegistrationToken(ctx, tok, "T1", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	a := testAgent(t, hk, "ag1", "T1", now)
	if err := st.RegisterAgent(ctx, tok, a, now); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		org        string
		complete   bool
		want       EventClaim
		wantAgents int
	}{
		{"T1", false, EventClaimed, 1},
		{"T1", true, EventInProgress, 1},
		{"T2", false, EventDone, 0},
	}
	for i, s := range steps {
		c, agents, err := st.ClaimEventListAgents(ctx, "Ev1", s.org)
		if err != nil || c != s.want || len(agents) != s.wantAgents {
			t.Fatalf("step %d: claim %v agents %d err %v", i, c, len(agents), err)
		}
		if agents == nil {
			t.Fatalf("step %d: nil agent list", i)
		}
		if s.wantAgents == 1 && agents[0].BoxPublicKey != a.BoxPublicKey {
			t.Fatalf("step %d: agent %+v", i, agents[0])
		}
		if s.complete {
			if err := st.CompleteEvent(ctx, "Ev1", time.Minute); err != nil {
				t.Fatal(err)
			}
		}
	}
}
