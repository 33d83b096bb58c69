package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sealrelay/sealrelay/internal/testredis"
	"github.com/sealrelay/sealrelay/state"
	"github.com/sealrelay/sealrelay/state/statetest"
)

// testRedis returns a client for $REDIS_URL and a unique key prefix;
// every key under the prefix is deleted when the test ends.
func testRedis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	return testredis.New(t, "redisstore")
}

func TestRedisState(t *testing.T) {
	t.Parallel()
	statetest.Run(t, func(t *testing.T) state.Store {
		rdb, prefix := testRedis(t)
		return NewState(rdb, prefix)
	}, statetest.Options{AdvanceLimiter: advanceLimiter})
}

// TestClaimEventAndListAgents checks the pipelined hot-path variant
// against ClaimEvent and ListAgents.
func TestClaimEventAndListAgents(t *testing.T) {
	rdb, prefix := testRedis(t)
	st := NewState(rdb, prefix)
	ctx := context.Background()
	hk := testHashKey(t)
	now := time.Now()
	tok := hk.Hash(KindRegistrationToken, "t")
	if err := st.PutRegistrationToken(ctx, tok, "T1", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	a := testAgent(t, hk, "ag1", "T1", now)
	if err := st.RegisterAgent(ctx, tok, a, now, 0); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		org        string
		complete   bool
		want       state.EventClaim
		wantAgents int
	}{
		{"T1", false, state.EventClaimed, 1},
		{"T1", true, state.EventInProgress, 1},
		{"T2", false, state.EventDone, 0},
	}
	for i, s := range steps {
		c, agents, err := st.ClaimEventAndListAgents(ctx, "Ev1", s.org)
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

// TestRedisStateCluster runs the state conformance suite against a private
// 3-node Redis Cluster: every state key carries one hash tag, so the
// multi-key scripts work there too.
func TestRedisStateCluster(t *testing.T) {
	t.Parallel()
	addrs := testredis.StartCluster(t)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { _ = rdb.Close() })
	statetest.Run(t, func(t *testing.T) state.Store {
		return NewState(rdb, testredis.Prefix(t, rdb, "redisstore"))
	}, statetest.Options{AdvanceLimiter: advanceLimiter})
	// Concurrent per-event calls share pipelines on the cluster too (a
	// client of its own: the test hooks it).
	t.Run("Coalesce", func(t *testing.T) {
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
		t.Cleanup(func() { _ = c.Close() })
		testCoalesceRoundTrips(t, c, testredis.Prefix(t, c, "redisstore"))
	})
	// The held-request hub's records and pub/sub on the cluster too.
	t.Run("HoldHub", func(t *testing.T) {
		st := NewState(rdb, testredis.Prefix(t, rdb, "redisstore"))
		statetest.RunHoldHub(t, func(t *testing.T) state.HoldHub {
			hub, err := st.NewHoldHub(nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = hub.Close() })
			return hub
		})
	})
}

func TestHoldHub(t *testing.T) {
	t.Parallel()
	rdb, prefix := testRedis(t)
	st := NewState(rdb, prefix)
	statetest.RunHoldHub(t, func(t *testing.T) state.HoldHub {
		hub, err := st.NewHoldHub(nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = hub.Close() })
		return hub
	})
}

// TestAllowUsesServerClock: the caller's clock does not move a shared
// bucket (replicas' clocks may disagree); only the server's does.
func TestAllowUsesServerClock(t *testing.T) {
	t.Parallel()
	rdb, prefix := testRedis(t)
	st := NewState(rdb, prefix)
	ctx := context.Background()
	lim := state.RateLimit{Rate: 0.01, Burst: 1}
	now := time.Now()
	steps := []struct {
		name    string
		callers time.Time
		advance time.Duration
		want    bool
	}{
		{"first token", now, 0, true},
		{"empty", now, 0, false},
		{"caller's clock a day ahead", now.Add(24 * time.Hour), 0, false},
		{"caller's clock behind", now.Add(-time.Hour), 0, false},
		{"server clock past one token", now, 110 * time.Second, true},
	}
	for _, s := range steps {
		advanceLimiter(st, s.advance)
		ok, _, err := st.Allow(ctx, "k", lim, s.callers)
		if err != nil || ok != s.want {
			t.Fatalf("%s: Allow = %v, %v; want %v", s.name, ok, err, s.want)
		}
	}
}
